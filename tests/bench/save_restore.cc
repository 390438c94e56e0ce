// Save and restore of a whole VM (issue 14), next to plain file I/O of the
// same number of bytes in the same run:
//  - save: the real vmwp binary runs //guest:touch, which fills half of its
//    RAM with a pattern; WorkerService.SaveState writes the state and memory
//    files (the worker's paused time: pause, quiesce, capture, memory file
//    with its fdatasync, state file with its fdatasync). Reference: write +
//    fdatasync of the same bytes to a fresh file in the same directory.
//  - restore: a fresh vmwp starts from the files (WorkerConfig.restore),
//    memory read eagerly or mapped copy-on-write; measured from the spawn to
//    its ready byte (sent right before the VPs run: as close to the guest's
//    first instruction as the worker can tell) and by the worker itself
//    (restore_us: its start to ready, without exec and dynamic linking).
//    The guest must then tick on with its pattern intact. Reference: reading
//    the same bytes from the plain file into fresh anonymous memory.
//  - the memory file alone, in this process (vid::LoadMemoryFile): eager
//    load, map, and map + reading one byte of every written page (what the
//    guest's page faults pay later when RAM was mapped).
// Saves run as checkpoints of the running VM (stop_after=false) except the
// last; each restore round runs both modes on the same files.
//
//   bazel run -c opt //tests/bench:save_restore [-- --sizes_mib=256,1024
//     --rounds=3 --dir=/var/tmp]
//
// Needs /dev/kvm; without it the binary re-runs itself inside kvmbox
// (tests/kvmbox), whose CPU is emulated: compare the ratios, not the
// absolute figures. Files are in the page cache when read (right after their
// writing, as a restore right after a save finds them).

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/fd_handoff.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "tests/kvmbox/kvmbox.h"
#include "vid/guest_memory.h"
#include "vid/memory_file.h"

ABSL_FLAG(std::vector<std::string>, sizes_mib,
          std::vector<std::string>({"256", "1024"}),
          "guest RAM sizes in MiB; the guest fills half of each");
ABSL_FLAG(int, rounds, 3, "saves and restores (per mode) per size");
ABSL_FLAG(std::string, dir, "/var/tmp",
          "where the state, memory and reference files go");
ABSL_FLAG(bool, memory_only, false,
          "only the memory file part, in this process, without KVM (runs on "
          "the host, not in kvmbox): vid::WriteMemoryFile and LoadMemoryFile "
          "of a GuestMemory half filled here");

extern char** environ;

namespace {

using hvstack::internal::RestoreSource;
using hvstack::internal::WorkerConfig;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The worker running now, killed if the benchmark gives up.
pid_t g_worker = -1;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "save_restore: %s\n", why.c_str());
  if (g_worker > 0) ::kill(g_worker, SIGKILL);
  std::exit(1);
}

struct Worker {
  pid_t pid = -1;
  int ready = -1;
  absl::Time spawned;
};

// One VM's worth of files and workers, in `dir`.
class Vm {
 public:
  Vm(std::string dir, uint64_t memory_mib) : dir_(std::move(dir)) {
    config_.set_vm_name(absl::StrCat("bench-", memory_mib));
    config_.set_vm_uuid("00000000-0000-0000-0000-0000000b5a5e");
    config_.set_vcpus(1);
    config_.set_memory_mib(memory_mib);
    config_.set_kernel_path(hvtest::Runfile("guest/touch.elf"));
    config_.set_cmdline(
        absl::StrCat("touch_mib=", memory_mib / 2, " from_mib=16 tick_ms=50"));
    config_.set_runtime_dir(dir_);
    config_.set_socket_path(dir_ + "/worker.sock");
    config_.set_handoff_socket_path(dir_ + "/handoff.sock");
    config_.set_console_log_path(dir_ + "/console.log");
    config_.set_kvm_fd(-1);
    config_.set_kvm_device_path("/dev/kvm");
  }
  ~Vm() { Kill(); }

  const std::string& dir() const { return dir_; }
  std::string Console() const { return ReadFile(dir_ + "/console.log"); }

  // Starts vmwp; with `restore_mode`, from the saved files.
  void Start(std::optional<RestoreSource::MemoryLoad> restore_mode) {
    WorkerConfig c = config_;
    c.set_exit_report_path(absl::StrCat(dir_, "/report.", ++starts_));
    std::vector<std::pair<int, int>> inherit;
    int state = -1, memory = -1;
    if (restore_mode.has_value()) {
      state = OpenHigh(dir_ + "/vm.state");
      memory = OpenHigh(dir_ + "/vm.memory");
      c.mutable_restore()->set_state_fd(7);
      c.mutable_restore()->set_memory_fd(8);
      c.mutable_restore()->set_memory_load(*restore_mode);
      c.set_continue_console_log(true);
      inherit = {{state, 7}, {memory, 8}};
    }
    const std::string config_path = dir_ + "/config.pb";
    {
      std::ofstream out(config_path, std::ios::binary | std::ios::trunc);
      if (!c.SerializeToOstream(&out)) Die("cannot write the config");
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) Die("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 4);
    for (const auto& [from, to] : inherit)
      posix_spawn_file_actions_adddup2(&actions, from, to);
    const std::string binary = hvtest::Runfile("vmwp/vmwp");
    const std::string flag = "--config=" + config_path;
    char* argv[] = {const_cast<char*>(binary.c_str()),
                    const_cast<char*>(flag.c_str()),
                    const_cast<char*>("--ready-fd=4"), nullptr};
    // vmwp logs to stderr: into a file, not over the figures.
    const std::string log = dir_ + "/vmwp.stderr";
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    worker_.spawned = absl::Now();
    if (posix_spawn(&worker_.pid, binary.c_str(), &actions, nullptr, argv,
                    environ) != 0) {
      Die("cannot spawn vmwp");
    }
    g_worker = worker_.pid;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (state >= 0) ::close(state);
    if (memory >= 0) ::close(memory);
    worker_.ready = fds[0];
  }

  // Spawn -> ready byte.
  absl::Duration WaitReady() {
    pollfd p = {worker_.ready, POLLIN, 0};
    const int ms = static_cast<int>(
        absl::ToInt64Milliseconds(kvmbox::Scaled(absl::Seconds(60))));
    char byte;
    if (::poll(&p, 1, ms) != 1 || ::read(worker_.ready, &byte, 1) != 1) {
      Die("the worker did not get ready; its log:\n" +
          ReadFile(dir_ + "/vmwp.stderr"));
    }
    const absl::Duration d = absl::Now() - worker_.spawned;
    ::close(worker_.ready);
    worker_.ready = -1;
    return d;
  }

  // Waits for `text` in the console after byte `from`.
  void WaitForConsole(const std::string& text, size_t from,
                      absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
    while (Console().find(text, from) == std::string::npos) {
      if (absl::Now() > deadline) {
        const std::string console = Console();
        Die(absl::StrCat(
            "no \"", text, "\" on the console; its tail:\n",
            console.substr(console.size() > 2000 ? console.size() - 2000 : 0)));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::unique_ptr<hvstack::internal::WorkerService::Stub> Stub() {
    return hvstack::internal::WorkerService::NewStub(grpc::CreateChannel(
        "unix:" + config_.socket_path(), grpc::InsecureChannelCredentials()));
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(absl::ToInt64Milliseconds(
                          kvmbox::Scaled(absl::Seconds(120)))));
    return ctx;
  }

  // SaveState into vm.state / vm.memory (fresh files). `wall`: the RPC.
  hvstack::internal::SaveStateResponse Save(bool stop_after,
                                            absl::Duration* wall) {
    int fds[2];
    int i = 0;
    for (const char* name : {"/vm.state", "/vm.memory"}) {
      const std::string path = dir_ + name;
      ::unlink(path.c_str());
      fds[i] =
          ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fds[i++] < 0) Die("cannot create " + path);
    }
    const std::string token = absl::StrCat("save-", ++saves_);
    absl::Status sent =
        base::SendFdsTo(config_.handoff_socket_path(), token, fds);
    ::close(fds[0]);
    ::close(fds[1]);
    if (!sent.ok()) Die(sent.ToString());
    hvstack::internal::SaveStateRequest request;
    request.set_handoff_token(token);
    request.set_stop_after(stop_after);
    hvstack::internal::SaveStateResponse response;
    auto ctx = Context();
    const absl::Time start = absl::Now();
    grpc::Status s = Stub()->SaveState(ctx.get(), request, &response);
    *wall = absl::Now() - start;
    if (!s.ok()) Die("SaveState: " + s.error_message());
    if (stop_after) WaitExit();
    return response;
  }

  uint64_t RestoreUs() {
    auto ctx = Context();
    hvstack::internal::WorkerStatus status;
    grpc::Status s = Stub()->GetStatus(ctx.get(), {}, &status);
    if (!s.ok() || !status.restored()) Die("GetStatus: " + s.error_message());
    return status.restore_us();
  }

  // The phases of the last restore, from the worker's log line "restore of
  // VM ...: worker start to compose A us, state file B us, guest memory C
  // us, KVM + partition + devices + VMBus D us" (ms each).
  std::vector<double> RestorePhases() {
    const std::string log = ReadFile(dir_ + "/worker.log");
    const size_t at = log.rfind("restore of VM");
    std::vector<double> out;
    if (at == std::string::npos) return out;
    const std::string line = log.substr(at, log.find('\n', at) - at);
    for (const char* key :
         {"compose ", "state file ", "guest memory ", "VMBus "}) {
      const size_t k = line.find(key);
      out.push_back(
          k == std::string::npos
              ? -1
              : std::strtod(line.c_str() + k + std::strlen(key), nullptr) /
                    1000.0);
    }
    return out;
  }

  void Stop() {
    auto ctx = Context();
    hvstack::internal::StopResponse r;
    (void)Stub()->Stop(ctx.get(), {}, &r);
    WaitExit();
  }

 private:
  static int OpenHigh(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("cannot open " + path);
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
    ::close(fd);
    return high;
  }

  void WaitExit() {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(60));
    int status;
    while (::waitpid(worker_.pid, &status, WNOHANG) != worker_.pid) {
      if (absl::Now() > deadline) Die("the worker did not exit");
      absl::SleepFor(absl::Milliseconds(5));
    }
    worker_.pid = -1;
    g_worker = -1;
  }

  void Kill() {
    if (worker_.pid > 0) {
      ::kill(worker_.pid, SIGKILL);
      ::waitpid(worker_.pid, nullptr, 0);
      worker_.pid = -1;
    }
  }

  std::string dir_;
  WorkerConfig config_;
  Worker worker_;
  int starts_ = 0;
  int saves_ = 0;
};

// write + fdatasync of `bytes` non-zero bytes to a fresh file, 8 MiB a call,
// from a buffer of that size (as a save writes guest memory: the source is
// not one hot buffer).
absl::Duration PlainWrite(const std::string& path, uint64_t bytes) {
  static std::vector<uint8_t> source;
  if (source.size() < bytes) {
    source.resize(bytes);
    for (size_t i = 0; i < source.size(); ++i)
      source[i] = static_cast<uint8_t>(i * 7 + 1);
  }
  ::unlink(path.c_str());
  const absl::Time start = absl::Now();
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) Die("cannot create " + path);
  for (uint64_t at = 0; at < bytes;) {
    const ssize_t n = ::pwrite(fd, source.data() + at,
                               std::min<uint64_t>(8 << 20, bytes - at),
                               static_cast<off_t>(at));
    if (n <= 0) Die("write " + path);
    at += static_cast<uint64_t>(n);
  }
  if (::fdatasync(fd) != 0) Die("fdatasync " + path);
  ::close(fd);
  return absl::Now() - start;
}

// Reads `path` whole into fresh anonymous memory (as an eager restore fills
// guest RAM), 8 MiB a call.
absl::Duration PlainRead(const std::string& path, uint64_t bytes,
                         bool huge_pages = false) {
  const absl::Time start = absl::Now();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot open " + path);
  void* buf = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (buf == MAP_FAILED) Die("mmap");
  if (huge_pages) (void)::madvise(buf, bytes, MADV_HUGEPAGE);
  auto* p = static_cast<uint8_t*>(buf);
  for (uint64_t at = 0; at < bytes;) {
    const ssize_t n =
        ::pread(fd, p + at, std::min<uint64_t>(8 << 20, bytes - at),
                static_cast<off_t>(at));
    if (n <= 0) Die("read " + path);
    at += static_cast<uint64_t>(n);
  }
  ::close(fd);
  const absl::Duration d = absl::Now() - start;
  ::munmap(buf, bytes);
  return d;
}

struct MemoryLoad {
  absl::Duration eager, map, map_and_touch;
};

// vid::LoadMemoryFile on the saved memory file, in this process.
MemoryLoad LoadMemoryFileInProcess(const std::string& path,
                                   uint64_t memory_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot open " + path);
  vid::MemoryFileHeader header{};
  if (::pread(fd, &header, sizeof(header), 0) != sizeof(header))
    Die("memory file header");
  vid::SaveId id;
  std::memcpy(id.data(), header.save_id, id.size());
  MemoryLoad out;
  auto load = [&](vid::GuestMemory::LoadMode mode, bool touch) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<vid::GuestMemory>> m =
        vid::LoadMemoryFile(fd, memory_bytes, id, mode);
    if (!m.ok()) Die(m.status().ToString());
    if (touch) {
      // One byte of every page the file holds data for: what the guest's
      // first touches cost after a restore by mapping.
      const uint8_t* base = (*m)->host_base();
      uint64_t sum = 0;
      for (uint64_t off = 0; off < memory_bytes;) {
        off_t data =
            ::lseek(fd, static_cast<off_t>(off + vid::kMemoryFileHeaderSize),
                    SEEK_DATA);
        if (data < 0) break;
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        const uint64_t b =
            static_cast<uint64_t>(data) - vid::kMemoryFileHeaderSize;
        const uint64_t e = std::min<uint64_t>(
            static_cast<uint64_t>(hole) - vid::kMemoryFileHeaderSize,
            memory_bytes);
        for (uint64_t a = b; a < e; a += vid::GuestMemory::kPageSize)
          sum += *reinterpret_cast<const volatile uint8_t*>(base + a);
        off = e;
      }
      if (sum == 1) std::fprintf(stderr, " ");  // keeps the reads
    }
    return absl::Now() - start;  // before `m` is unmapped
  };
  out.eager = load(vid::GuestMemory::LoadMode::kEager, false);
  out.map = load(vid::GuestMemory::LoadMode::kMapPrivate, false);
  out.map_and_touch = load(vid::GuestMemory::LoadMode::kMapPrivate, true);
  ::close(fd);
  return out;
}

double Median(const std::vector<double>& v) {
  return hvbench::Percentile(v, 0.5);
}

void RunSize(const std::string& base_dir, uint64_t memory_mib, int rounds) {
  const std::string dir = absl::StrCat(base_dir, "/hvstack-save-bench-",
                                       ::getpid(), "-", memory_mib);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    Die("cannot create " + dir);
  Vm vm(dir, memory_mib);
  const uint64_t memory_bytes = memory_mib << 20;

  // Boot, fill.
  vm.Start(std::nullopt);
  const absl::Duration boot_ready = vm.WaitReady();
  const absl::Time fill_start = absl::Now();
  vm.WaitForConsole("touch: done", 0, absl::Minutes(10));
  const absl::Duration fill = absl::Now() - fill_start;
  vm.WaitForConsole("touch: tick 2 ", 0, absl::Seconds(60));

  // Saves, each next to a plain write of the same bytes.
  std::vector<double> save_paused, save_rpc, save_memory, save_state,
      plain_write;
  uint64_t bytes = 0, pages = 0, total_pages = 0, state_bytes = 0;
  for (int r = 0; r < rounds; ++r) {
    absl::Duration rpc;
    const hvstack::internal::SaveStateResponse s =
        vm.Save(/*stop_after=*/r == rounds - 1, &rpc);
    pages = s.memory_pages_written();
    total_pages = s.memory_pages_total();
    state_bytes = s.state_bytes();
    bytes = pages * vid::GuestMemory::kPageSize + state_bytes;
    save_paused.push_back(s.paused_us() / 1000.0);
    save_memory.push_back(s.memory_us() / 1000.0);
    save_state.push_back(s.vm_state_us() / 1000.0);
    save_rpc.push_back(Ms(rpc));
    plain_write.push_back(Ms(PlainWrite(dir + "/plain.bin", bytes)));
  }
  struct stat st {};
  ::stat((dir + "/vm.memory").c_str(), &st);
  const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;

  // Restores: plain read, eager, map; each restored guest must tick on.
  std::vector<double> plain_read, plain_read_4k, eager_ready, eager_us,
      map_ready, map_us;
  std::vector<std::vector<double>> eager_phases, map_phases;
  for (int r = 0; r < rounds; ++r) {
    // Into memory advised as guest RAM is (MADV_HUGEPAGE), and without.
    plain_read.push_back(Ms(PlainRead(dir + "/plain.bin", bytes, true)));
    plain_read_4k.push_back(Ms(PlainRead(dir + "/plain.bin", bytes)));
    for (auto mode :
         {RestoreSource::MEMORY_LOAD_EAGER, RestoreSource::MEMORY_LOAD_MAP}) {
      const size_t from = vm.Console().size();
      vm.Start(mode);
      const double ready = Ms(vm.WaitReady());
      const double us = vm.RestoreUs() / 1000.0;
      const std::vector<double> phases = vm.RestorePhases();
      auto& into =
          mode == RestoreSource::MEMORY_LOAD_EAGER ? eager_phases : map_phases;
      into.resize(phases.size());
      for (size_t i = 0; i < phases.size(); ++i) into[i].push_back(phases[i]);
      vm.WaitForConsole(" ok\r\n", from, absl::Seconds(30));
      const std::string after = vm.Console().substr(from);
      if (after.find("BAD") != std::string::npos ||
          after.find("touch: filling") != std::string::npos) {
        Die("the restored guest lost its memory or booted again:\n" + after);
      }
      vm.Stop();
      (mode == RestoreSource::MEMORY_LOAD_EAGER ? eager_ready : map_ready)
          .push_back(ready);
      (mode == RestoreSource::MEMORY_LOAD_EAGER ? eager_us : map_us)
          .push_back(us);
    }
  }
  std::vector<double> load_eager, load_map, load_map_touch;
  for (int r = 0; r < rounds; ++r) {
    const MemoryLoad l =
        LoadMemoryFileInProcess(dir + "/vm.memory", memory_bytes);
    load_eager.push_back(Ms(l.eager));
    load_map.push_back(Ms(l.map));
    load_map_touch.push_back(Ms(l.map_and_touch));
  }

  const double w = Median(plain_write), rd = Median(plain_read);
  std::printf(
      "\n%llu MiB guest, %llu of %llu pages written (%.1f MiB + %llu bytes of "
      "state; memory file allocates %.1f MiB), %d rounds, medians:\n",
      static_cast<unsigned long long>(memory_mib),
      static_cast<unsigned long long>(pages),
      static_cast<unsigned long long>(total_pages), pages * 4096.0 / (1 << 20),
      static_cast<unsigned long long>(state_bytes), allocated / double(1 << 20),
      rounds);
  std::printf(
      "  boot: spawn -> ready %.1f ms; guest filled its half in %.1f s\n",
      Ms(boot_ready), absl::ToDoubleSeconds(fill));
  std::printf("  plain write + fdatasync of the same bytes   %9.1f ms\n", w);
  std::printf(
      "  save, guest paused (SaveStateResponse)       %9.1f ms  = %.2fx plain "
      "write (target <= 1.5x)\n",
      Median(save_paused), Median(save_paused) / w);
  std::printf(
      "    of which VM state %.1f ms, memory file %.1f ms; SaveState RPC %.1f "
      "ms\n",
      Median(save_state), Median(save_memory), Median(save_rpc));
  std::printf(
      "  plain read into fresh anonymous memory       %9.1f ms (MADV_HUGEPAGE "
      "as guest RAM; without: %.1f ms)\n",
      rd, Median(plain_read_4k));
  std::printf(
      "  restore, eager: spawn -> ready              %9.1f ms  = %.2fx plain "
      "read (target <= 1.2x)\n",
      Median(eager_ready), Median(eager_ready) / rd);
  std::printf(
      "    worker's own start -> ready (restore_us)  %9.1f ms  = %.2fx plain "
      "read\n",
      Median(eager_us), Median(eager_us) / rd);
  std::printf(
      "  restore, mapped copy-on-write: spawn -> ready %7.1f ms  (target <= 10 "
      "ms)\n",
      Median(map_ready));
  std::printf("    worker's own start -> ready (restore_us)  %9.1f ms\n",
              Median(map_us));
  auto phases = [](const std::vector<std::vector<double>>& p) {
    if (p.size() != 4) return std::string("(no phase line in worker.log)");
    return absl::StrFormat(
        "start->compose %.1f, state file %.1f, guest memory %.1f, KVM + "
        "partition + devices + VMBus %.1f ms",
        Median(p[0]), Median(p[1]), Median(p[2]), Median(p[3]));
  };
  std::printf("    eager phases: %s\n", phases(eager_phases).c_str());
  std::printf("    mapped phases: %s\n", phases(map_phases).c_str());
  std::printf(
      "  memory file alone (vid::LoadMemoryFile here): eager %.1f ms = %.2fx "
      "plain read; map %.3f ms; map + first touch of every written page %.1f "
      "ms = %.2fx plain read\n",
      Median(load_eager), Median(load_eager) / rd, Median(load_map),
      Median(load_map_touch), Median(load_map_touch) / rd);
  std::fflush(stdout);
  (void)!std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

// The memory file alone, without KVM: a GuestMemory half filled here (the
// same pattern as //guest:touch), written by vid::WriteMemoryFile and loaded
// back by vid::LoadMemoryFile, next to plain I/O of the same bytes.
void RunMemoryOnly(const std::string& base_dir, uint64_t memory_mib,
                   int rounds) {
  const std::string dir = absl::StrCat(base_dir, "/hvstack-save-bench-",
                                       ::getpid(), "-", memory_mib);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    Die("cannot create " + dir);
  const uint64_t memory_bytes = memory_mib << 20;
  absl::StatusOr<std::unique_ptr<vid::GuestMemory>> memory =
      vid::GuestMemory::Create(memory_bytes);
  if (!memory.ok()) Die(memory.status().ToString());
  const uint64_t begin = 16ull << 20, end = begin + memory_bytes / 2;
  for (uint64_t a = begin; a < end; a += 8) {
    const uint64_t v = a ^ 0x5a5a'0000'c3c3'0000ull;
    std::memcpy((*memory)->host_base() + a, &v, 8);
  }
  const vid::SaveId id{1, 2, 3};
  const std::string path = dir + "/vm.memory";
  std::vector<double> save, write, read, read_huge, eager, map, map_touch;
  uint64_t bytes = 0;
  for (int r = 0; r < rounds; ++r) {
    ::unlink(path.c_str());
    const absl::Time start = absl::Now();
    const int fd =
        ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    absl::StatusOr<vid::MemorySaveStats> stats =
        vid::WriteMemoryFile(**memory, fd, id);
    ::close(fd);
    save.push_back(Ms(absl::Now() - start));
    if (!stats.ok()) Die(stats.status().ToString());
    bytes = stats->pages_written * vid::GuestMemory::kPageSize;
    write.push_back(Ms(PlainWrite(dir + "/plain.bin", bytes)));
    read_huge.push_back(Ms(PlainRead(dir + "/plain.bin", bytes, true)));
    read.push_back(Ms(PlainRead(dir + "/plain.bin", bytes)));
    const MemoryLoad l = LoadMemoryFileInProcess(path, memory_bytes);
    eager.push_back(Ms(l.eager));
    map.push_back(Ms(l.map));
    map_touch.push_back(Ms(l.map_and_touch));
  }
  const double w = Median(write), rd = Median(read_huge);
  std::printf(
      "\n%llu MiB of guest memory, %.1f MiB written, %d rounds, medians:\n",
      static_cast<unsigned long long>(memory_mib), bytes / double(1 << 20),
      rounds);
  std::printf("  plain write + fdatasync                      %9.1f ms\n", w);
  std::printf(
      "  vid::WriteMemoryFile (mincore, zero check, pwrite, fdatasync) %.1f "
      "ms = %.2fx\n",
      Median(save), Median(save) / w);
  std::printf(
      "  plain read into fresh anonymous memory       %9.1f ms (MADV_HUGEPAGE "
      "as guest RAM; without: %.1f ms)\n",
      Median(read_huge), Median(read));
  std::printf(
      "  LoadMemoryFile eager                         %9.1f ms = %.2fx\n",
      Median(eager), Median(eager) / rd);
  std::printf("  LoadMemoryFile map                           %9.3f ms\n",
              Median(map));
  std::printf(
      "  LoadMemoryFile map + first touch of every written page %.1f ms = "
      "%.2fx\n",
      Median(map_touch), Median(map_touch) / rd);
  std::fflush(stdout);
  (void)!std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_memory_only)) {
    std::printf("the memory file alone (vid, no KVM), in %s%s\n",
                absl::GetFlag(FLAGS_dir).c_str(),
                kvmbox::InsideKvmbox() ? " (inside kvmbox)" : "");
    for (const std::string& s : absl::GetFlag(FLAGS_sizes_mib)) {
      RunMemoryOnly(absl::GetFlag(FLAGS_dir),
                    std::strtoull(s.c_str(), nullptr, 10),
                    absl::GetFlag(FLAGS_rounds));
    }
    return 0;
  }
  kvmbox::RunInKvmboxIfNeeded(argc, argv, kvmbox::InSuite::kRun);
  if (::access("/dev/kvm", R_OK | W_OK) != 0)
    Die("needs /dev/kvm (or kvmbox: see tests/kvmbox/README.md)");
  std::printf(
      "save/restore of a whole VM through vmwp (1 vCPU, //guest:touch filling "
      "half of RAM) vs plain file I/O of the same bytes, in %s%s\n",
      absl::GetFlag(FLAGS_dir).c_str(),
      kvmbox::InsideKvmbox() ? " (inside kvmbox: emulated CPU, compare ratios)"
                             : "");
  for (const std::string& s : absl::GetFlag(FLAGS_sizes_mib)) {
    uint64_t mib = std::strtoull(s.c_str(), nullptr, 10);
    if (mib < 64 || mib % 2 != 0) Die("--sizes_mib: even sizes >= 64 MiB");
    RunSize(absl::GetFlag(FLAGS_dir), mib, absl::GetFlag(FLAGS_rounds));
  }
  return 0;
}
