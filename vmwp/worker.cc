#include "vmwp/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "base/fd_handoff.h"
#include "base/scoped_fd.h"
#include "hvcore/kvm_system.h"
#include "kernel_probe/guest_layout.h"
#include "kernel_probe/kernel_image.h"
#include "vid/partition.h"
#include "vmwp/boot/boot_vp.h"
#include "vmwp/console/console.h"
#include "vmwp/devices/acpi_pm1_event.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/cmos_rtc.h"
#include "vmwp/devices/i8042.h"
#include "vmwp/devices/uart16550.h"
#include "vmwp/exit_report.h"
#include "vmwp/guest_crash.h"
#include "vmwp/saved_vm.h"
#include "vmwp/service/worker_events.h"
#include "vmwp/service/worker_service.h"
#include "vmwp/state_file.h"
#include "vmwp/vmbus_host.h"

namespace vmwp {

using kernel_probe::CheckKernelFitsMemory;
using kernel_probe::KernelImageInfo;
using kernel_probe::kMaxGuestMemoryBytes;
using kernel_probe::ProbeKernelImage;

namespace {

using hvstack::internal::WorkerConfig;
using hvstack::internal::WorkerExitReport;

constexpr char kDefaultKvmDevice[] = "/dev/kvm";
// How long console streams may take to send their last output once the VM has
// ended.
constexpr absl::Duration kStreamDrainTimeout = absl::Seconds(2);
// gRPC's Shutdown waits out the grace while any client connection stays open
// (vmms keeps some), not only while calls are in flight: keep it short.
constexpr absl::Duration kServerShutdownGrace = absl::Milliseconds(200);

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

constexpr uint32_t kCom1Gsi = 4;
constexpr uint32_t kKeyboardGsi = 1;
constexpr uint32_t kAuxGsi = 12;

// Starts and stops the partition. Stop requests (RPC, signals) may arrive at
// any moment, including before the partition exists; they are remembered and
// honoured when it is set.
class RunControl {
 public:
  void SetPartition(vid::Partition* partition) {
    absl::MutexLock lock(&mu_);
    partition_ = partition;
    if (partition_ != nullptr && stop_reason_.has_value())
      partition_->RequestStop(*stop_reason_);
  }

  void RequestStop(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    if (!stop_reason_.has_value()) stop_reason_ = reason;
    if (partition_ != nullptr) partition_->RequestStop(reason);
  }

  // From a device on a VP thread (the i8042 reset line).
  void RequestReboot(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    if (partition_ != nullptr) partition_->RequestReboot(reason);
  }

  std::optional<std::string> stop_reason() {
    absl::MutexLock lock(&mu_);
    return stop_reason_;
  }

  // Holds the partition's VPs (vmms's PauseVm). Under mu_ so that the
  // partition cannot go away (the boot ending) meanwhile; the wait is for VP
  // threads to leave KVM_RUN, milliseconds.
  absl::Status Pause() {
    absl::MutexLock lock(&mu_);
    if (stop_reason_.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the VM is stopping (", *stop_reason_, ")"));
    }
    if (partition_ == nullptr) {
      return absl::FailedPreconditionError(
          "the VM's boot has ended (the worker is exiting); try again");
    }
    return partition_->Pause();
  }

  absl::Status Resume() {
    absl::MutexLock lock(&mu_);
    if (partition_ != nullptr) partition_->Resume();
    return absl::OkStatus();
  }

  bool paused() {
    absl::MutexLock lock(&mu_);
    return partition_ != nullptr && partition_->paused();
  }

  std::vector<hvstack::internal::VpRuntime> VpStats() {
    std::vector<hvstack::internal::VpRuntime> out;
    absl::MutexLock lock(&mu_);
    if (partition_ == nullptr) return out;
    for (const vid::VpStats& s : partition_->GetVpStats()) {
      hvstack::internal::VpRuntime& vp = out.emplace_back();
      vp.set_index(s.vp);
      vp.set_cpu_time_ns(s.cpu_time_ns);
      vp.set_total_exits(s.total_exits);
      for (size_t k = 0; k < s.exits.size(); ++k) {
        if (s.exits[k] != 0) {
          (*vp.mutable_exits_by_reason())[std::string(
              hvcore::kInterceptNames[k])] = s.exits[k];
        }
      }
    }
    return out;
  }

  // Whether `outcome` of the current partition is a guest reset (the i8042
  // reset line, a KVM reset event or a triple fault, as vid reports them).
  static bool IsReboot(const vid::RunOutcome& outcome) {
    return outcome.kind == vid::RunOutcome::Kind::kReboot;
  }

 private:
  absl::Mutex mu_;
  vid::Partition* partition_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::optional<std::string> stop_reason_ ABSL_GUARDED_BY(mu_);
};

// Console input goes to the current boot's UART; between boots it is dropped.
class ConsoleInputRouter {
 public:
  size_t Push(std::string_view bytes) {
    absl::MutexLock lock(&mu_);
    if (uart_ == nullptr) {
      dropped_ += bytes.size();
      return 0;
    }
    return uart_->PushInput(bytes);
  }
  void Attach(Uart16550* uart) {
    absl::MutexLock lock(&mu_);
    if (uart_ != nullptr) dropped_ += uart_->input_dropped();
    uart_ = uart;
  }
  uint64_t dropped() {
    absl::MutexLock lock(&mu_);
    return dropped_ + (uart_ != nullptr ? uart_->input_dropped() : 0);
  }

 private:
  absl::Mutex mu_;
  Uart16550* uart_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

// The reason of the last shutdown the guest acknowledged through the shutdown
// IC: the power-off that follows is "guest shut down: <reason>".
class ShutdownRecord {
 public:
  void Set(std::string reason) {
    absl::MutexLock lock(&mu_);
    reason_ = std::move(reason);
  }
  std::optional<std::string> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(reason_, std::nullopt);
  }

 private:
  absl::Mutex mu_;
  std::optional<std::string> reason_ ABSL_GUARDED_BY(mu_);
};

// The VM's one boot in this worker: a partition and the devices it dispatches
// to (a guest reset ends the worker; vmms starts the next one). Members are
// destroyed in reverse order: VMBus first (while the partition's SynIC and the
// memory it uses still exist; the VPs have stopped), then the partition (no VP
// thread dispatches to a device any more), then the devices.
struct Boot {
  std::unique_ptr<Uart16550> com1;
  std::unique_ptr<I8042> i8042;
  std::unique_ptr<CmosRtc> rtc;
  std::unique_ptr<AcpiPm1Event> pm1_event;
  std::unique_ptr<AcpiPowerPort> power;
  std::unique_ptr<vid::Partition> partition;
  // Enlightened VMs only.
  std::unique_ptr<VmbusHost> vmbus;
};

// What lives as long as the worker: KVM, the console (ring + log), the
// service, and what a PC keeps across a reset (the CMOS RTC's RAM and clock,
// handed over by the previous worker through vmms).
// Members are destroyed in reverse order: the server first, then the current
// boot, then the console the devices wrote to.
struct Vm {
  std::function<absl::Status(uint32_t)> on_vp_thread_start;
  std::function<absl::Status()> on_device_thread_start;
  std::unique_ptr<hvcore::KvmSystem> kvm;
  std::unique_ptr<Console> console;
  ConsoleInputRouter input;
  RunControl control;
  WorkerEventLog events;
  std::optional<CmosRtc::Persistent> rtc_state;
  // The guest's own crash reports (enlightened VMs): holds the VPs and acts
  // per the VM's policy (vmwp/guest_crash.h).
  GuestCrashMonitor crash_monitor;
  ShutdownRecord shutdown;
  // The service's way to the current boot's VMBus; detached before a boot is
  // destroyed.
  IntegrationControl integration;
  std::unique_ptr<Boot> boot;
  std::unique_ptr<WorkerServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::atomic<bool> running{false};
  // Issue 14: where vmms hands over the files of a save; one save at a time;
  // set once a save that ends the worker was written.
  std::optional<base::FdHandoffListener> handoff;
  absl::Mutex save_mu;
  std::atomic<bool> saved{false};
  // A restore: this worker continues a saved VM; how long it took from the
  // worker's start to the ready byte.
  bool restored = false;
  absl::Time started = absl::Now();
  std::atomic<int64_t> restore_us{0};
};

// Kernel (bzImage, vmlinux/PVH or ELF), initrd, command line, ACPI tables,
// zero page or PVH start_info, e820 (logged), boot VP: vmwp/boot.
absl::Status SetUpGuest(const WorkerConfig& config, vid::Partition& p) {
  if (absl::StatusOr<BootImage> boot = BootGuest(config, p); !boot.ok())
    return boot.status();
  return absl::OkStatus();
}

VmParts PartsOf(Boot& boot) {
  return VmParts{.partition = boot.partition.get(),
                 .com1 = boot.com1.get(),
                 .i8042 = boot.i8042.get(),
                 .rtc = boot.rtc.get(),
                 .pm1_event = boot.pm1_event.get(),
                 .power = boot.power.get(),
                 .vmbus = boot.vmbus.get()};
}

absl::Status RegisterPorts(vid::Partition& p, const char* name, uint16_t port,
                           uint16_t count, vid::PortIoHandler* handler) {
  return p.io().RegisterPortIo(name, port, count, handler);
}

// A partition with its devices, the guest loaded, ready to Run().
// With `saved` (a restore): the partition is rebuilt from the saved state
// with `memory` as its RAM, the kernel is not loaded, and the devices and
// VMBus get their state back.
absl::StatusOr<std::unique_ptr<Boot>> BuildBoot(
    const WorkerConfig& config, Vm& vm,
    const hvstack::saved::SavedVm* saved = nullptr,
    std::unique_ptr<vid::GuestMemory> memory = nullptr) {
  auto boot = std::make_unique<Boot>();
  const vid::PartitionConfig partition_config{
      .vcpus = config.vcpus(),
      .memory_bytes = config.memory_mib() << 20,
      .enlightened = config.enlightened(),
      .crash_handler = &vm.crash_monitor,
      .on_vp_thread_start = vm.on_vp_thread_start};
  absl::StatusOr<std::unique_ptr<vid::Partition>> partition =
      saved != nullptr
          ? vid::Partition::Restore(partition_config, *vm.kvm,
                                    saved->partition(), std::move(memory))
          : vid::Partition::Create(partition_config, *vm.kvm);
  if (!partition.ok()) {
    return Annotate(partition.status(), saved != nullptr
                                            ? "cannot restore the partition"
                                            : "cannot create the partition");
  }
  boot->partition = *std::move(partition);
  vid::Partition* p = boot->partition.get();
  spdlog::info(
      "partition: {} VP(s), {} MiB{}", p->vp_count(), config.memory_mib(),
      config.enlightened() ? ", enlightened (Hyper-V interface, VMBus)" : "");

  // Interrupt lines (ISA IRQs = GSIs 0-15 through the in-kernel PIC and
  // IOAPIC). vid logs ioctl failures, rate-limited; a device cannot do better.
  absl::StatusOr<vid::InterruptLine> com1_irq = p->GetInterruptLine(kCom1Gsi);
  absl::StatusOr<vid::InterruptLine> kbd_irq =
      p->GetInterruptLine(kKeyboardGsi);
  absl::StatusOr<vid::InterruptLine> aux_irq = p->GetInterruptLine(kAuxGsi);
  for (const auto* line : {&com1_irq, &kbd_irq, &aux_irq}) {
    if (!line->ok()) return Annotate(line->status(), "interrupt line");
  }
  auto drive = [](vid::InterruptLine line) {
    return [line](bool level) mutable { (void)line.Set(level); };
  };

  Console* console = vm.console.get();
  RunControl* control = &vm.control;
  boot->com1 = std::make_unique<Uart16550>(
      [console](std::string_view b) { console->Write(b); });
  boot->com1->SetInterruptLine(drive(*com1_irq));
  boot->i8042 = std::make_unique<I8042>([control] {
    spdlog::info("guest pulsed the i8042 reset line");
    control->RequestReboot(
        "guest pulsed the i8042 reset line (keyboard controller reset)");
  });
  boot->i8042->SetInterruptLines(drive(*kbd_irq), drive(*aux_irq));
  boot->rtc = vm.rtc_state.has_value()
                  ? std::make_unique<CmosRtc>(*vm.rtc_state)
                  : std::make_unique<CmosRtc>();
  boot->pm1_event = std::make_unique<AcpiPm1Event>();
  boot->power = std::make_unique<AcpiPowerPort>([p] {
    spdlog::info("guest wrote ACPI S5 (power off) to PM1a_CNT");
    p->RequestPowerOff("guest requested ACPI S5 power off");
  });
  for (absl::Status s : {
           RegisterPorts(*p, "com1", boot->com1->base(), Uart16550::kPortCount,
                         boot->com1.get()),
           RegisterPorts(*p, "i8042_data", I8042::kDataPort, 1,
                         boot->i8042.get()),
           RegisterPorts(*p, "i8042_cmd", I8042::kCommandPort, 1,
                         boot->i8042.get()),
           RegisterPorts(*p, "cmos_rtc", CmosRtc::kIndexPort,
                         CmosRtc::kPortCount, boot->rtc.get()),
           RegisterPorts(*p, "pm1a_evt", AcpiPm1Event::kPm1aEventPort,
                         AcpiPm1Event::kPortCount, boot->pm1_event.get()),
           RegisterPorts(*p, "pm1a_cnt", AcpiPowerPort::kPm1aControlPort, 2,
                         boot->power.get()),
       }) {
    if (!s.ok()) return s;
  }
  if (saved == nullptr) {
    if (absl::Status s = SetUpGuest(config, *p); !s.ok()) return s;
  }
  if (!config.enlightened() && config.disks_size() > 0) {
    return absl::InvalidArgumentError(
        "the VM has disks but no VMBus (it is not enlightened): its SCSI "
        "controller is a VMBus device");
  }
  if (!config.enlightened() && config.nics_size() > 0) {
    return absl::InvalidArgumentError(
        "the VM has network adapters but no VMBus (it is not enlightened): "
        "its network adapters are VMBus devices");
  }
  if (config.enlightened()) {
    absl::StatusOr<std::unique_ptr<VmbusHost>> vmbus = VmbusHost::Create(
        *p, {.on_thread_start = vm.on_device_thread_start,
             .on_heartbeat_change =
                 [events = &vm.events](
                     hvstack::internal::GuestIntegration::Heartbeat state,
                     uint64_t sequence) {
                   hvstack::internal::WorkerEvent event;
                   event.mutable_heartbeat()->set_state(state);
                   event.mutable_heartbeat()->set_sequence(sequence);
                   events->Publish(std::move(event));
                 },
             .disks = config.disks(),
             .nics = config.nics(),
             .vm_uuid = config.vm_uuid()});
    if (!vmbus.ok()) return Annotate(vmbus.status(), "cannot set up VMBus");
    boot->vmbus = *std::move(vmbus);
  }
  if (saved != nullptr) {
    if (absl::Status s = RestoreParts(PartsOf(*boot), *saved); !s.ok())
      return Annotate(s, "cannot restore the saved state");
  }
  return boot;
}

// What the current boot's VMBus and synthetic interface did, for the log.
void LogBootEnd(Boot& boot) {
  if (hvcore::hyperv::HvPartition* hv = boot.partition->hyperv())
    spdlog::info("hyperv: {}", hv->stats().ToString());
}

// WorkerService.SaveState (issue 14): pause, quiesce VMBus, take every
// part's state, write the state and memory files vmms handed over, then end
// the worker (stop_after) or let the VM go on as it was.
absl::StatusOr<hvstack::internal::SaveStateResponse> SaveVm(
    Vm& vm, const WorkerConfig& config,
    const hvstack::internal::SaveStateRequest& request) {
  absl::MutexLock save_lock(&vm.save_mu);
  if (vm.saved.load()) {
    return absl::FailedPreconditionError(
        "the VM was saved already; the worker is ending");
  }
  if (!vm.handoff.has_value()) {
    return absl::FailedPreconditionError(
        "this worker has no handoff socket: it cannot receive the files of a "
        "save");
  }
  absl::StatusOr<std::vector<base::ScopedFd>> fds =
      vm.handoff->Take(request.handoff_token(), absl::Seconds(10));
  if (!fds.ok()) return fds.status();
  if (fds->size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a save needs 2 descriptors (state file, memory file); got ",
        fds->size()));
  }
  const absl::Time start = absl::Now();
  const bool was_paused = vm.control.paused();
  // Heartbeats stop being judged first (as for Pause).
  vm.integration.OnPause();
  if (absl::Status s = vm.control.Pause(); !s.ok()) {
    if (!was_paused) vm.integration.OnResume();
    return s;
  }
  VmbusHost* vmbus = vm.boot->vmbus.get();
  const absl::Duration quiesce =
      request.quiesce_timeout_ms() != 0
          ? absl::Milliseconds(request.quiesce_timeout_ms())
          : absl::Seconds(10);
  // Whatever fails from here leaves the VM as it was.
  auto undo = [&](absl::Status s, bool unquiesce) {
    if (unquiesce && vmbus != nullptr) vmbus->Unquiesce();
    if (!was_paused) {
      (void)vm.control.Resume();
      vm.integration.OnResume();
    }
    spdlog::warn("save of VM {} failed: {}", config.vm_name(), s.ToString());
    return s;
  };
  if (vmbus != nullptr) {
    if (absl::Status s = vmbus->Quiesce(absl::Now() + quiesce); !s.ok())
      return undo(s, /*unquiesce=*/false);
  }
  vid::SaveId id;
  if (::getrandom(id.data(), id.size(), 0) != static_cast<ssize_t>(id.size()))
    return undo(absl::ErrnoToStatus(errno, "getrandom"), true);
  absl::StatusOr<hvstack::saved::SavedVm> state =
      CaptureVm(PartsOf(*vm.boot), config, id);
  if (!state.ok()) return undo(state.status(), true);
  const absl::Time captured = absl::Now();
  absl::StatusOr<vid::MemorySaveStats> memory =
      vm.boot->partition->SaveMemory((*fds)[1].get(), id);
  if (!memory.ok()) return undo(memory.status(), true);
  const absl::Time memory_done = absl::Now();
  if (absl::Status s = WriteStateFile((*fds)[0].get(), *state); !s.ok())
    return undo(s, true);
  hvstack::internal::SaveStateResponse response;
  response.set_state_bytes(state->ByteSizeLong());
  response.set_memory_pages_written(memory->pages_written);
  response.set_memory_pages_total(memory->pages_total);
  response.set_vm_state_us(absl::ToInt64Microseconds(captured - start));
  response.set_memory_us(absl::ToInt64Microseconds(memory_done - captured));
  if (request.stop_after()) {
    vm.saved.store(true);
    spdlog::info("VM {} saved ({} of {} memory pages written); ending",
                 config.vm_name(), memory->pages_written, memory->pages_total);
    vm.control.RequestStop("the VM was saved");
  } else {
    if (vmbus != nullptr) vmbus->Unquiesce();
    if (!was_paused) {
      (void)vm.control.Resume();
      vm.integration.OnResume();
    }
    spdlog::info("VM {} state taken ({} of {} memory pages); it goes on",
                 config.vm_name(), memory->pages_written, memory->pages_total);
  }
  response.set_paused_us(absl::ToInt64Microseconds(absl::Now() - start));
  return response;
}

absl::Status Compose(const WorkerConfig& config, Vm& vm,
                     SignalWatcher* signals) {
  const uint64_t memory_bytes = config.memory_mib() << 20;
  // A restore reads the saved state first: a file that is damaged or does
  // not fit this configuration fails before anything else is built.
  std::optional<hvstack::saved::SavedVm> saved;
  std::unique_ptr<vid::GuestMemory> saved_memory;
  // Where a restore's time goes (logged): the state file and its checks,
  // guest memory, then the partition, devices and VMBus.
  const absl::Time compose_start = absl::Now();
  absl::Time state_read = compose_start, memory_loaded = compose_start;
  if (config.has_restore()) {
    absl::StatusOr<hvstack::saved::SavedVm> state =
        ReadStateFile(config.restore().state_fd());
    if (!state.ok()) return state.status();
    if (state->vm_uuid() != config.vm_uuid()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the state file belongs to VM ", state->vm_uuid(),
                       ", not to ", config.vm_uuid()));
    }
    if (absl::Status s = CheckSavedConfig(state->config(), config); !s.ok())
      return s;
    absl::StatusOr<vid::SaveId> id = SaveIdOf(*state);
    if (!id.ok()) return id.status();
    state_read = absl::Now();
    const bool eager = config.restore().memory_load() ==
                       hvstack::internal::RestoreSource::MEMORY_LOAD_EAGER;
    absl::StatusOr<std::unique_ptr<vid::GuestMemory>> memory =
        vid::LoadMemoryFile(config.restore().memory_fd(), memory_bytes, *id,
                            eager ? vid::GuestMemory::LoadMode::kEager
                                  : vid::GuestMemory::LoadMode::kMapPrivate);
    if (!memory.ok()) return memory.status();
    memory_loaded = absl::Now();
    saved_memory = *std::move(memory);
    saved = *std::move(state);
    spdlog::info("restoring VM {} saved at {} (memory {})", config.vm_name(),
                 absl::FormatTime(absl::FromUnixMicros(saved->saved_at_us())),
                 eager ? "read eagerly" : "mapped copy-on-write");
  } else {
    // The kernel is checked first: it is cheap and the most likely mistake.
    absl::StatusOr<KernelImageInfo> image =
        ProbeKernelImage(config.kernel_path());
    if (!image.ok()) return image.status();
    if (absl::Status s =
            CheckKernelFitsMemory(config.kernel_path(), *image, memory_bytes);
        !s.ok()) {
      return s;
    }
  }

  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm = OpenKvm(config);
  if (!kvm.ok()) return kvm.status();
  vm.kvm = *std::move(kvm);

  absl::StatusOr<std::unique_ptr<ConsoleLogFile>> log_file =
      ConsoleLogFile::Create(config.console_log_path(),
                             ConsoleLogFile::kDefaultMaxBytes,
                             config.continue_console_log());
  if (!log_file.ok()) return log_file.status();
  vm.console = std::make_unique<Console>(*std::move(log_file));

  if (config.has_persistent()) {
    CmosRtc::Persistent saved;
    const std::string& ram = config.persistent().cmos_ram();
    std::copy_n(ram.begin(), std::min(ram.size(), saved.ram.size()),
                saved.ram.begin());
    saved.offset = absl::Microseconds(config.persistent().rtc_offset_us());
    vm.rtc_state = saved;
  }
  absl::StatusOr<std::unique_ptr<Boot>> boot =
      BuildBoot(config, vm, saved.has_value() ? &*saved : nullptr,
                std::move(saved_memory));
  if (!boot.ok()) return boot.status();
  vm.boot = *std::move(boot);
  vm.restored = saved.has_value();
  if (vm.restored) {
    const absl::Time built = absl::Now();
    spdlog::info(
        "restore of VM {}: worker start to compose {} us, state file {} us, "
        "guest memory {} us, KVM + partition + devices + VMBus {} us",
        config.vm_name(), absl::ToInt64Microseconds(compose_start - vm.started),
        absl::ToInt64Microseconds(state_read - compose_start),
        absl::ToInt64Microseconds(memory_loaded - state_read),
        absl::ToInt64Microseconds(built - memory_loaded));
  }
  if (!config.handoff_socket_path().empty()) {
    absl::StatusOr<base::FdHandoffListener> handoff =
        base::FdHandoffListener::Create(config.handoff_socket_path());
    if (!handoff.ok()) return handoff.status();
    vm.handoff.emplace(*std::move(handoff));
  }
  vm.input.Attach(vm.boot->com1.get());
  vm.control.SetPartition(vm.boot->partition.get());
  vm.integration.Attach(vm.boot->vmbus.get());

  RunControl* control = &vm.control;
  IntegrationControl* integration = &vm.integration;
  vid::Partition* partition = vm.boot->partition.get();
  vm.crash_monitor.SetAction(config.on_guest_crash());
  vm.crash_monitor.SetActions({
      .hold_vps =
          [partition, integration] {
            // A held guest cannot answer heartbeats.
            integration->OnPause();
            partition->RequestPause();
          },
      .end =
          [partition](const std::string& detail) {
            partition->RequestCrash(detail);
          },
      .reboot =
          [partition](const std::string& detail) {
            partition->RequestReboot(detail);
          },
      .publish =
          [events =
               &vm.events](const hvstack::internal::GuestCrashReport& report) {
            hvstack::internal::WorkerEvent event;
            *event.mutable_guest_crashed() = report;
            events->Publish(std::move(event));
          },
  });
  GuestCrashMonitor* crash_monitor = &vm.crash_monitor;
  ShutdownRecord* shutdown = &vm.shutdown;
  vm.service = std::make_unique<WorkerServiceImpl>(
      config.vm_uuid(), &vm.console->ring(),
      WorkerServiceImpl::Hooks{
          .stop =
              [control] {
                spdlog::info("stop requested over WorkerService");
                control->RequestStop("stop requested by vmms");
              },
          .running = [&vm] { return vm.running.load(); },
          .console_input =
              [&vm](std::string_view bytes) { return vm.input.Push(bytes); },
          .console_input_dropped = [&vm] { return vm.input.dropped(); },
          .integration = [integration] { return integration->Status(); },
          .shutdown_guest =
              [integration, shutdown](bool reboot, const std::string& reason) {
                spdlog::info("guest {} requested over WorkerService: {}",
                             reboot ? "restart" : "shutdown", reason);
                absl::Status s = integration->With([&](VmbusHost& host) {
                  return host.ShutdownGuest(reboot, reason);
                });
                if (s.ok() && !reboot) shutdown->Set(reason);
                if (!s.ok() &&
                    s.code() == absl::StatusCode::kFailedPrecondition &&
                    absl::StrContains(s.message(), "has no VMBus")) {
                  return absl::FailedPreconditionError(
                      "guest offers no shutdown channel (the VM has no "
                      "VMBus); stop the VM instead");
                }
                return s;
              },
          .kvp_get = [integration](uint32_t pool, const std::string& key)
              -> absl::StatusOr<std::string> {
            std::string value;
            absl::Status s = integration->With([&](VmbusHost& host) {
              absl::StatusOr<std::string> v = host.GetKvp(pool, key);
              if (v.ok()) value = *v;
              return v.status();
            });
            if (!s.ok()) return s;
            return value;
          },
          .kvp_set =
              [integration](uint32_t pool, const std::string& key,
                            const std::string& value) {
                return integration->With([&](VmbusHost& host) {
                  return host.SetKvp(pool, key, value);
                });
              },
          .kvp_list = [integration](uint32_t pool)
              -> absl::StatusOr<std::map<std::string, std::string>> {
            std::map<std::string, std::string> items;
            absl::Status s = integration->With([&](VmbusHost& host) {
              absl::StatusOr<std::map<std::string, std::string>> v =
                  host.ListKvp(pool);
              if (v.ok()) items = *std::move(v);
              return v.status();
            });
            if (!s.ok()) return s;
            return items;
          },
          .pause =
              [control, integration] {
                // Heartbeats stop being judged first: a held guest cannot
                // answer.
                integration->OnPause();
                absl::Status s = control->Pause();
                if (!s.ok()) integration->OnResume();
                spdlog::info("pause requested over WorkerService: {}",
                             s.ToString());
                return s;
              },
          .resume =
              [control, integration, crash_monitor] {
                spdlog::info("resume requested over WorkerService");
                // A guest held after its crash runs on: a crash after this
                // is a new one. Re-armed before the VPs run, or a guest that
                // reports again at once would be counted as a repeat of the
                // old crash and never held again.
                crash_monitor->OnResume();
                absl::Status s = control->Resume();
                // The guest's clock stood still while paused: a SYNC time
                // sample, as Hyper-V sends after a resume.
                if (s.ok()) integration->OnResume();
                return s;
              },
          .paused = [control] { return control->paused(); },
          .vp_stats = [control] { return control->VpStats(); },
          .nic_status =
              [integration] {
                std::vector<hvstack::internal::WorkerNicStatus> nics;
                (void)integration->With([&](VmbusHost& host) {
                  nics = host.NicStatus();
                  return absl::OkStatus();
                });
                return nics;
              },
          .set_nic_link =
              [integration](uint32_t index, bool connected) {
                spdlog::info(
                    "network adapter {} link {} requested over "
                    "WorkerService",
                    index, connected ? "up" : "down");
                return integration->With([&](VmbusHost& host) {
                  return host.SetNicLink(index, connected);
                });
              },
          .set_guest_crash_action =
              [crash_monitor](hvstack::internal::GuestCrashAction action) {
                spdlog::info("guest crash action set to {} over WorkerService",
                             hvstack::internal::GuestCrashAction_Name(action));
                crash_monitor->SetAction(action);
              },
          .last_guest_crash = [crash_monitor] { return crash_monitor->last(); },
          .save_state =
              [&vm, &config](const hvstack::internal::SaveStateRequest& r) {
                return SaveVm(vm, config, r);
              },
          .restore_status =
              [&vm](hvstack::internal::WorkerStatus& status) {
                status.set_restored(vm.restored);
                status.set_restore_us(
                    static_cast<uint64_t>(vm.restore_us.load()));
              },
      },
      &vm.events);
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartWorkerServer(config.socket_path(), vm.service.get());
  if (!server.ok()) return server.status();
  vm.server = *std::move(server);
  spdlog::info("serving WorkerService on unix:{}", config.socket_path());

  signals->SetHandler([control](int sig) {
    spdlog::info("signal {} ({}): stopping the VM", sig, strsignal(sig));
    control->RequestStop(absl::StrCat("worker received signal ", sig));
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
  // Files the worker writes; vmms names them, older configs get the
  // runtime-dir defaults.
  if (config.console_log_path().empty())
    config.set_console_log_path(
        absl::StrCat(config.runtime_dir(), "/console.log"));
  if (config.exit_report_path().empty())
    config.set_exit_report_path(
        absl::StrCat(config.runtime_dir(), "/", kExitReportFile));
  if (config.socket_path().empty() ||
      config.socket_path().size() >= sizeof(sockaddr_un{}.sun_path)) {
    return bad(absl::StrFormat("socket_path \"%s\" must be 1 to %d bytes",
                               config.socket_path(),
                               sizeof(sockaddr_un{}.sun_path) - 1));
  }
  return config;
}

WorkerExitReport RunWorker(const WorkerConfig& config, int ready_fd,
                           SignalWatcher* signals, const WorkerHooks& hooks) {
  Vm vm;
  vm.on_vp_thread_start = hooks.on_vp_thread_start;
  vm.on_device_thread_start = hooks.on_device_thread_start;
  absl::Status composed = Compose(config, vm, signals);
  if (composed.ok() && hooks.before_ready) {
    composed = hooks.before_ready();
    if (!composed.ok()) composed = Annotate(composed, "sandbox lock-down");
  }
  if (absl::Status s = composed; !s.ok()) {
    spdlog::error("cannot start VM {}: {}", config.vm_name(), s.ToString());
    signals->ClearHandler();
    if (ready_fd >= 0) ::close(ready_fd);  // EOF without a byte: "gave up".
    return ErrorReport(s);
  }

  // Device threads start after the lock-down: a thread with a filter of its
  // own would keep the process filter (TSYNC) from covering it.
  if (vm.boot->vmbus != nullptr) vm.boot->vmbus->StartTimer();
  vm.running.store(true);
  if (vm.restored) {
    vm.restore_us.store(absl::ToInt64Microseconds(absl::Now() - vm.started));
    spdlog::info("VM {} restored in {} us (worker start to ready)",
                 config.vm_name(), vm.restore_us.load());
  }
  SignalReady(ready_fd);
  spdlog::info("VM {} running", config.vm_name());
  if (hooks.after_ready) hooks.after_ready();
  // A guest reset ends this worker: vmms starts a fresh one (the sandbox
  // forbids building a new partition here), so Run() is called once.
  absl::StatusOr<vid::RunOutcome> outcome = vm.boot->partition->Run();
  uint64_t exits = 0;
  for (const vid::VpStats& s : vm.boot->partition->GetVpStats())
    exits += s.total_exits;
  LogBootEnd(*vm.boot);
  if (outcome.ok() && RunControl::IsReboot(*outcome)) {
    if (std::optional<std::string> stop = vm.control.stop_reason()) {
      outcome = vid::RunOutcome{vid::RunOutcome::Kind::kStopped, *stop};
    }
  }
  vm.running.store(false);
  vm.crash_monitor.SetActions({});
  signals->ClearHandler();
  vm.control.SetPartition(nullptr);
  vm.integration.Detach();
  if (std::optional<std::string> reason = vm.shutdown.Take();
      reason.has_value() && outcome.ok() &&
      outcome->kind == vid::RunOutcome::Kind::kPowerOff) {
    outcome->detail = absl::StrCat("guest shut down: ", *reason);
  }

  spdlog::info("VPs stopped; closing console streams and WorkerService");
  // End console and event streams (followers get the last output and a clean
  // end of stream), cancel console input, then stop serving.
  vm.console->Close();
  vm.events.Close();
  if (!vm.service->WaitForStreamsToEnd(kStreamDrainTimeout)) {
    spdlog::warn("console streams did not end within {} ms; cancelling them",
                 absl::ToInt64Milliseconds(kStreamDrainTimeout));
  }
  vm.service->EndInputStreams();
  // Every call has ended or been cancelled; the grace lets the ended ones send
  // what they wrote last (see EndInputStreams).
  vm.server->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(
                          absl::ToInt64Milliseconds(kServerShutdownGrace)));
  if (ConsoleLogFile* log = vm.console->log_file();
      log != nullptr && !log->status().ok()) {
    spdlog::warn("console log: {}", log->status().ToString());
  }
  if (const uint64_t dropped = vm.input.dropped(); dropped > 0)
    spdlog::info("console input: {} byte(s) dropped", dropped);

  WorkerExitReport report;
  if (!outcome.ok()) {
    spdlog::error("VM {} could not run: {}", config.vm_name(),
                  outcome.status().ToString());
    return ErrorReport(outcome.status());
  }
  spdlog::info("VM {} ended: {}: {} ({} intercepts)", config.vm_name(),
               std::string(vid::RunOutcomeKindName(outcome->kind)),
               outcome->detail, exits);
  report = OutcomeReport(*outcome);
  if (vm.saved.load()) {
    report.set_reason(WorkerExitReport::SAVED);
    report.set_detail("the VM was saved");
    return report;
  }
  // The guest's crash report ended this worker: vmms records it with the
  // state (it may have missed the event).
  if (std::optional<hvstack::internal::GuestCrashReport> crash =
          vm.crash_monitor.last();
      crash.has_value() &&
      ((report.reason() == WorkerExitReport::GUEST_CRASHED &&
        crash->action() == hvstack::internal::GUEST_CRASH_ACTION_END) ||
       (report.reason() == WorkerExitReport::REBOOT_REQUESTED &&
        crash->action() == hvstack::internal::GUEST_CRASH_ACTION_REBOOT))) {
    *report.mutable_guest_crash() = *crash;
  }
  if (report.reason() == WorkerExitReport::REBOOT_REQUESTED) {
    // What a PC keeps across a reset goes to the next worker.
    const CmosRtc::Persistent saved = vm.boot->rtc->Save();
    report.mutable_persistent()->set_cmos_ram(
        std::string(saved.ram.begin(), saved.ram.end()));
    report.mutable_persistent()->set_rtc_offset_us(
        absl::ToInt64Microseconds(saved.offset));
  }
  return report;
}

}  // namespace vmwp
