#include "vmwp/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "base/scoped_fd.h"
#include "hvcore/kvm_system.h"
#include "vid/partition.h"
#include "vmwp/boot/boot_vp.h"
#include "vmwp/console/console.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/uart16550.h"
#include "vmwp/exit_report.h"
#include "vmwp/loader/guest_layout.h"
#include "vmwp/loader/kernel_image.h"
#include "vmwp/service/worker_service.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerConfig;
using hvstack::internal::WorkerExitReport;

constexpr char kDefaultKvmDevice[] = "/dev/kvm";
// How long console streams may take to send their last output once the VM has
// ended.
constexpr absl::Duration kStreamDrainTimeout = absl::Seconds(2);

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// What an inherited descriptor refers to, for error messages: the file it was
// opened from (vmms may have been told to use another device than /dev/kvm),
// else the configured path.
std::string DescribeInheritedFd(int fd, const std::string& configured_path) {
  char target[PATH_MAX];
  const std::string link = absl::StrCat("/proc/self/fd/", fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  std::string name =
      n > 0 ? std::string(target, static_cast<size_t>(n))
            : (configured_path.empty() ? kDefaultKvmDevice : configured_path);
  return absl::StrCat(name, " (inherited fd ", fd, ")");
}

absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> OpenKvm(
    const WorkerConfig& config) {
  if (config.kvm_fd() >= 0) {
    // Inherited from vmms: the sandbox may not be able to open /dev/kvm itself.
    return hvcore::KvmSystem::Adopt(
        base::ScopedFd(config.kvm_fd()),
        DescribeInheritedFd(config.kvm_fd(), config.kvm_device_path()));
  }
  return hvcore::KvmSystem::Open(config.kvm_device_path().empty()
                                     ? kDefaultKvmDevice
                                     : config.kvm_device_path());
}

void SignalReady(int ready_fd) {
  if (ready_fd < 0) return;
  base::ScopedFd fd(ready_fd);
  const char byte = 'R';
  ssize_t n;
  do {
    n = ::write(fd.get(), &byte, 1);
  } while (n < 0 && errno == EINTR);
  // vmms may have gone away; the VM still runs and the exit report still gets
  // written.
  if (n != 1)
    spdlog::warn("cannot write the ready byte to fd {}: {}", ready_fd,
                 strerror(errno));
}

// Everything a running VM consists of. Members are destroyed in reverse order:
// the server first (no RPC touches the VM any more), then the partition (no VP
// thread dispatches to a device any more), then the devices and the console
// they write to.
struct Vm {
  std::unique_ptr<Console> console;
  std::unique_ptr<Uart16550> com1;
  std::unique_ptr<AcpiPowerPort> power;
  std::unique_ptr<vid::Partition> partition;
  std::unique_ptr<WorkerServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::atomic<bool> running{false};
};

absl::Status Compose(const WorkerConfig& config, Vm& vm,
                     SignalWatcher* signals) {
  // The kernel is checked first: it is cheap and the most likely mistake.
  absl::StatusOr<KernelImageInfo> image =
      ProbeKernelImage(config.kernel_path());
  if (!image.ok()) return image.status();
  const uint64_t memory_bytes = config.memory_mib() << 20;
  if (absl::Status s =
          CheckKernelFitsMemory(config.kernel_path(), *image, memory_bytes);
      !s.ok()) {
    return s;
  }

  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm = OpenKvm(config);
  if (!kvm.ok()) return kvm.status();
  absl::StatusOr<std::unique_ptr<vid::Partition>> partition =
      vid::Partition::Create(
          {.vcpus = config.vcpus(), .memory_bytes = memory_bytes}, **kvm);
  if (!partition.ok())
    return Annotate(partition.status(), "cannot create the partition");
  vm.partition = *std::move(partition);
  vid::Partition* p = vm.partition.get();
  spdlog::info("partition: {} VP(s), {} MiB", p->vp_count(),
               config.memory_mib());

  absl::StatusOr<std::unique_ptr<ConsoleLogFile>> log_file =
      ConsoleLogFile::Create(absl::StrCat(config.runtime_dir(), "/console.log"),
                             ConsoleLogFile::kDefaultMaxBytes);
  if (!log_file.ok()) return log_file.status();
  vm.console = std::make_unique<Console>(*std::move(log_file));
  Console* console = vm.console.get();
  vm.com1 = std::make_unique<Uart16550>(
      [console](std::string_view b) { console->Write(b); });
  vm.power = std::make_unique<AcpiPowerPort>([p] {
    spdlog::info("guest wrote ACPI S5 (power off) to PM1a_CNT");
    p->RequestPowerOff("guest requested ACPI S5 power off");
  });
  if (absl::Status s = p->io().RegisterPortIo(
          "com1", vm.com1->base(), Uart16550::kPortCount, vm.com1.get());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = p->io().RegisterPortIo(
          "pm1a_cnt", AcpiPowerPort::kPm1aControlPort, 2, vm.power.get());
      !s.ok()) {
    return s;
  }

  // Kernel (bzImage, vmlinux/PVH or ELF), initrd, command line, ACPI tables,
  // zero page or PVH start_info, e820 (logged), boot VP: vmwp/boot.
  if (absl::StatusOr<BootImage> boot = BootGuest(config, *p); !boot.ok())
    return boot.status();

  vm.service = std::make_unique<WorkerServiceImpl>(
      config.vm_uuid(), &console->ring(),
      WorkerServiceImpl::Hooks{
          .stop =
              [p] {
                spdlog::info("stop requested over WorkerService");
                p->RequestStop("stop requested by vmms");
              },
          .running = [&vm] { return vm.running.load(); },
      });
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartWorkerServer(config.socket_path(), vm.service.get());
  if (!server.ok()) return server.status();
  vm.server = *std::move(server);
  spdlog::info("serving WorkerService on unix:{}", config.socket_path());

  signals->SetHandler([p](int sig) {
    spdlog::info("signal {} ({}): stopping the VM", sig, strsignal(sig));
    p->RequestStop(absl::StrCat("worker received signal ", sig));
  });
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WorkerConfig> ReadWorkerConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker config ", path, ": cannot open: ", strerror(errno)));
  }
  WorkerConfig config;
  if (!config.ParseFromIstream(&in)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker config ", path, ": not a serialized WorkerConfig"));
  }
  auto bad = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker config ", path, ": ", problem));
  };
  if (config.runtime_dir().empty()) return bad("runtime_dir is empty");
  if (config.kernel_path().empty()) return bad("kernel_path is empty");
  if (config.vcpus() == 0) return bad("vcpus is 0");
  // vid maps RAM with 2 MiB pages and accepts at most 1 TiB.
  if (config.memory_mib() == 0 || config.memory_mib() % 2 != 0 ||
      config.memory_mib() > (kMaxGuestMemoryBytes >> 20)) {
    return bad(absl::StrFormat(
        "memory_mib %d must be an even number of MiB between 2 and %d",
        config.memory_mib(), kMaxGuestMemoryBytes >> 20));
  }
  if (config.socket_path().empty() ||
      config.socket_path().size() >= sizeof(sockaddr_un{}.sun_path)) {
    return bad(absl::StrFormat("socket_path \"%s\" must be 1 to %d bytes",
                               config.socket_path(),
                               sizeof(sockaddr_un{}.sun_path) - 1));
  }
  return config;
}

WorkerExitReport RunWorker(const WorkerConfig& config, int ready_fd,
                           SignalWatcher* signals) {
  Vm vm;
  if (absl::Status s = Compose(config, vm, signals); !s.ok()) {
    spdlog::error("cannot start VM {}: {}", config.vm_name(), s.ToString());
    signals->ClearHandler();
    if (ready_fd >= 0) ::close(ready_fd);  // EOF without a byte: "gave up".
    return ErrorReport(s);
  }

  vm.running.store(true);
  SignalReady(ready_fd);
  spdlog::info("VM {} running", config.vm_name());
  absl::StatusOr<vid::RunOutcome> outcome = vm.partition->Run();
  vm.running.store(false);
  signals->ClearHandler();

  spdlog::info("VPs stopped; closing console streams and WorkerService");
  // End console streams (followers get the last output and a clean end of
  // stream), then stop serving. Other calls are short, so they need no grace
  // period.
  vm.console->Close();
  if (!vm.service->WaitForStreamsToEnd(kStreamDrainTimeout)) {
    spdlog::warn("console streams did not end within {} ms; cancelling them",
                 absl::ToInt64Milliseconds(kStreamDrainTimeout));
  }
  vm.server->Shutdown(std::chrono::system_clock::now());
  if (ConsoleLogFile* log = vm.console->log_file();
      log != nullptr && !log->status().ok()) {
    spdlog::warn("console log: {}", log->status().ToString());
  }

  if (!outcome.ok()) {
    spdlog::error("VM {} could not run: {}", config.vm_name(),
                  outcome.status().ToString());
    return ErrorReport(outcome.status());
  }
  uint64_t exits = 0;
  for (const vid::VpStats& s : vm.partition->GetVpStats())
    exits += s.total_exits;
  spdlog::info("VM {} ended: {}: {} ({} intercepts)", config.vm_name(),
               std::string(vid::RunOutcomeKindName(outcome->kind)),
               outcome->detail, exits);
  return OutcomeReport(*outcome);
}

}  // namespace vmwp
