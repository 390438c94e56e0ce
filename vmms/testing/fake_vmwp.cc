// A stand-in for vmwp that speaks the worker contract (worker.proto) without
// KVM, so that vmms's supervision can be tested on any machine.
//
// What it does is chosen by the VM's kernel command line
// (WorkerConfig.cmdline), one word:
//
//   poweroff      ready; console "hello\n"; exit report GUEST_POWER_OFF;
//                 exits 0 at once.
//   serve         ready; console "booted\n"; uses its disks (UseDisks: an NBD
//                 handshake for each NBD disk, a flushed block at the first
//                 and last sector of each writable one, a console line
//                 each); serves WorkerService until Stop, then exit report
//                 STOP_REQUESTED.
//   reboot        a guest that resets twice, then serves: as vmwp does on a
//                 guest reset, the worker writes boot N to the console log,
//                 becomes ready and exits with REBOOT_REQUESTED "fake reset",
//                 counting its boots in the CMOS RAM it hands on
//                 (PersistentDeviceState, as //guest:reboot_once does), so
//                 vmms starts a fresh worker; the third boot serves like serve.
//                 A fresh start (no persistent state) truncates the log, a
//                 continued one (continue_console_log) appends.
//   reboot-loop   every boot resets at once (REBOOT_REQUESTED), for vmms's
//                 reboot-loop guard.
//   serve-deaf    ready, then sleeps without serving or handling Stop (vmms
//                 must SIGKILL it).
//   guest-crash   ready; exit report GUEST_CRASHED "triple fault".
//   worker-error  no ready byte; exit report WORKER_ERROR
//                 (FAILED_PRECONDITION); exits 1.
//   die-early     no ready byte, no report; exits 3.
//   segv          ready, then killed by SIGSEGV without a report.
//   never-ready   sleeps without ever reporting ready.
//   shutdown-obeys    like serve, and ShutdownGuest powers the guest off
//                     (exit report GUEST_POWER_OFF) 50 ms later.
//   shutdown-ignores  like serve, and ShutdownGuest is accepted but the guest
//                     never powers off.
//   serve-slow    like serve, but GetStatus takes 5 s (a hung worker for
//                 vmms's deadlines).
//   serve-disks-late  like serve, but uses its disks only 11 s after it
//                 became ready (a slow worker: later than qemu-nbd's 10 s
//                 limit for a client's NBD handshake).
//
// Save and restore (issue 14), in every serving mode: SaveState takes the two
// descriptors vmms handed to WorkerConfig.handoff_socket_path, writes
// "fake-saved vcpus=N memory=M" to the state file and "fake-memory" to the
// memory file (mode save-slow: after 3 s, so that a test can kill it during
// the save; save-fails: FAILED_PRECONDITION "a VSP refused to quiesce", the
// VM goes on), answers, and exits with SAVED. With WorkerConfig.restore it
// reads the state file first: a vcpus or memory that differs from the config
// ends it like vmwp (WORKER_ERROR, FAILED_PRECONDITION "vcpus: the saved VM
// had 1, its configuration now says 2"); else it appends "restored\n" to the
// console instead of "booted\n" and serves.
//
// Every serving mode pauses and resumes (Pause/Resume, GetStatus.paused);
// ShutdownGuest is FAILED_PRECONDITION "guest offers no shutdown channel"
// except in the shutdown-* modes.
//
// Every serving mode also uses each network adapter's TAP device minimally:
// one broadcast frame out at start, then it counts the frames it reads, and
// GetStatus reports them (WorkerStatus.nics).
//
// While serving, StreamConsole sends "booted\n", then (follow) "tick N\n"
// every 50 ms and "echo: <bytes>\n" for console input received through
// WriteConsole.
//
// It also checks the descriptor contract: the kvm descriptor is open, every
// network adapter's tap_fd is the TAP device the config names, and nothing
// the config does not name leaked in; a violation is reported as
// WORKER_ERROR. Started sandboxed (SandboxConfig not disabled), it waits for
// the cgroup-joined byte like vmwp but confines nothing. Files go where
// WorkerConfig says (console_log_path, exit_report_path).
#include <dirent.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/fd_handoff.h"
#include "base/scoped_fd.h"
#include "proto/hvstack/internal/worker.grpc.pb.h"

namespace {

using hvstack::internal::WorkerConfig;
using hvstack::internal::WorkerExitReport;

WorkerConfig config;

void WriteReport(
    WorkerExitReport::Reason reason, const std::string& detail, int code = 0,
    const hvstack::internal::PersistentDeviceState* persistent = nullptr) {
  WorkerExitReport report;
  report.set_reason(reason);
  report.set_detail(detail);
  report.set_status_code(code);
  if (persistent != nullptr) *report.mutable_persistent() = *persistent;
  std::string path = config.exit_report_path();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    report.SerializeToOstream(&out);
  }
  std::rename(tmp.c_str(), path.c_str());
}

void AppendConsole(const std::string& text) {
  std::ofstream out(config.console_log_path(),
                    std::ios::binary | std::ios::app);
  out << text;
}

// Returns a description of the first violation of the descriptor contract, or
// "": the kvm descriptor is open, and besides 0-2 only the descriptors the
// config names are: ready, the sandbox's pipes, each adapter's TAP device
// (which must be the TAP device named in the config, with the flags it says).
std::string CheckDescriptors(int ready_fd) {
  struct stat st;
  if (fstat(config.kvm_fd(), &st) != 0)
    return "kvm_fd " + std::to_string(config.kvm_fd()) + " is not open";
  std::set<int> named = {config.kvm_fd(), ready_fd};
  if (!config.sandbox().disabled()) {
    named.insert(config.sandbox().violation_fd());
    named.insert(config.sandbox().cgroup_joined_fd());
  }
  for (const hvstack::internal::WorkerNic& nic : config.nics()) {
    const std::string which = "nic " + std::to_string(nic.index()) + ": ";
    struct ifreq ifr = {};
    if (ioctl(nic.tap_fd(), TUNGETIFF, &ifr) != 0) {
      return which + "tap_fd " + std::to_string(nic.tap_fd()) +
             " is not a TAP device: " + std::strerror(errno);
    }
    const int want = IFF_TAP | IFF_NO_PI | (nic.vnet_hdr() ? IFF_VNET_HDR : 0);
    if (nic.host_ifname() != ifr.ifr_name ||
        (ifr.ifr_flags & (IFF_TAP | IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)) !=
            want) {
      return which + "tap_fd is " + ifr.ifr_name + " with flags " +
             std::to_string(ifr.ifr_flags) + ", not " + nic.host_ifname();
    }
    if (nic.mac().size() != 6) return which + "MAC is not 6 bytes";
    named.insert(nic.tap_fd());
  }
  for (const auto& d : config.disks()) named.insert(d.fd());
  if (config.has_restore()) {
    named.insert(config.restore().state_fd());
    named.insert(config.restore().memory_fd());
  }
  DIR* dir = opendir("/proc/self/fd");
  std::string problem;
  while (dirent* entry = readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] == '.' || fd == dirfd(dir)) continue;
    if (fd > 2 && named.count(fd) == 0)
      problem = "leaked descriptor " + std::to_string(fd);
  }
  closedir(dir);
  // Each disk: its descriptor as WorkerDisk describes it.
  for (const auto& d : config.disks()) {
    const std::string name = "disk fd " + std::to_string(d.fd());
    if (fstat(d.fd(), &st) != 0) return name + " is not open";
    const int mode = fcntl(d.fd(), F_GETFL) & O_ACCMODE;
    if (d.backend() == hvstack::internal::WorkerDisk::BACKEND_RAW_FILE) {
      if (!S_ISREG(st.st_mode)) return name + " is not a regular file";
      if (static_cast<uint64_t>(st.st_size) != d.size_bytes())
        return name + " size differs from size_bytes";
      if (mode != (d.read_only() ? O_RDONLY : O_RDWR))
        return name + " has the wrong access mode";
    } else if (!S_ISSOCK(st.st_mode)) {
      return name + " is not a socket";
    }
  }
  return problem;
}

// NBD (newstyle fixed handshake, simple replies), as a worker's client
// speaks it: enough to check what vmms handed over.
bool ReadAll(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t got = read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}
bool WriteAll(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t put = write(fd, p, n);
    if (put <= 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}
void Put32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void Put64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t Get64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
// Returns the export's size, or 0 on a failed handshake.
uint64_t NbdHandshake(int fd, const std::string& export_name) {
  unsigned char hello[18];
  if (!ReadAll(fd, hello, sizeof(hello)) ||
      memcmp(hello, "NBDMAGICIHAVEOPT", 16) != 0) {
    return 0;
  }
  std::string msg;
  Put32(&msg, 1);  // NBD_FLAG_C_FIXED_NEWSTYLE
  msg += "IHAVEOPT";
  Put32(&msg, 1);  // NBD_OPT_EXPORT_NAME
  Put32(&msg, static_cast<uint32_t>(export_name.size()));
  msg += export_name;
  unsigned char reply[8 + 2 + 124];
  if (!WriteAll(fd, msg.data(), msg.size()) ||
      !ReadAll(fd, reply, sizeof(reply))) {
    return 0;
  }
  return Get64(reply);
}
// One request (type: 1 write, 3 flush) and its simple reply's error.
bool NbdRequest(int fd, uint16_t type, uint64_t offset,
                const std::string& data) {
  std::string msg;
  Put32(&msg, 0x25609513);
  Put32(&msg, type);  // flags 0 (high half), type (low half)
  Put64(&msg, 7);     // handle
  Put64(&msg, offset);
  Put32(&msg, static_cast<uint32_t>(data.size()));
  msg += data;
  unsigned char reply[16];
  return WriteAll(fd, msg.data(), msg.size()) &&
         ReadAll(fd, reply, sizeof(reply)) && reply[4] == 0 && reply[5] == 0 &&
         reply[6] == 0 && reply[7] == 0;
}

// The disks, as a guest would use them: each gets a console line
// "disk 0:0:N raw|nbd SIZE ro|rw", and each writable one the 512-byte
// block "fake_vmwp <lun>" at its first and its last sector, flushed
// (fdatasync / NBD_CMD_FLUSH) before the line "disk 0:0:N flushed".
void UseDisks() {
  for (const auto& d : config.disks()) {
    int fd = d.fd();
    // Kept open for the worker's life, like vmwp's (qemu-nbd exits and the
    // image's lock ends when it closes).
    static auto* const nbd_connections = new std::vector<base::ScopedFd>;
    base::ScopedFd nbd_connection;
    const std::string address = std::to_string(d.controller()) + ":" +
                                std::to_string(d.target()) + ":" +
                                std::to_string(d.lun());
    uint64_t size = d.size_bytes();
    const bool nbd = d.backend() == hvstack::internal::WorkerDisk::BACKEND_NBD;
    if (nbd) {
      // As the worker does (WorkerDisk.BACKEND_NBD): ask vmms for the
      // connection, then negotiate.
      absl::StatusOr<base::PassedFds> reply =
          base::SendFds(d.fd(), "c", {}).ok() ? base::ReceiveFds(d.fd())
                                              : absl::UnavailableError("send");
      if (reply.ok() && reply->fds.size() == 1) {
        nbd_connection = std::move(reply->fds[0]);
        fd = nbd_connection.get();
      }
      size = nbd_connection ? NbdHandshake(fd, d.nbd_export_name()) : 0;
      nbd_connections->push_back(std::move(nbd_connection));
    }
    AppendConsole("disk " + address + (nbd ? " nbd " : " raw ") +
                  std::to_string(size) + (d.read_only() ? " ro\n" : " rw\n"));
    if (d.read_only() || size < 1024) continue;
    std::string block = "fake_vmwp " + std::to_string(d.lun());
    block.resize(512, '\0');
    bool ok = true;
    for (uint64_t offset : {uint64_t{0}, size - 512}) {
      ok = ok && (nbd ? NbdRequest(fd, 1, offset, block)
                      : pwrite(d.fd(), block.data(), block.size(),
                               static_cast<off_t>(offset)) == 512);
    }
    ok = ok && (nbd ? NbdRequest(fd, 3, 0, "") : fdatasync(d.fd()) == 0);
    if (ok) AppendConsole("disk " + address + " flushed\n");
  }
}
// Each adapter's TAP device as a guest's NIC would use it, minimally: one
// broadcast frame sent at start (from_guest: 1 packet of 60 bytes), then
// every frame read from the device counted (to_guest), until Stop.
class FakeNics {
 public:
  void Start(absl::Notification* stop) {
    for (const hvstack::internal::WorkerNic& nic : config.nics()) {
      std::string frame(6, '\xff');
      frame += nic.mac();
      frame += std::string("\x88\xb5", 2);  // Local experimental EtherType.
      frame.resize(60, 'F');
      std::string out =
          (nic.vnet_hdr() ? std::string(kVnetHdrBytes, '\0') : "") + frame;
      hvstack::internal::WorkerNicStatus& counters = counters_[nic.index()];
      counters.set_index(nic.index());
      counters.set_link_up(true);
      if (write(nic.tap_fd(), out.data(), out.size()) ==
          static_cast<ssize_t>(out.size())) {
        counters.set_from_guest_packets(1);
        counters.set_from_guest_bytes(frame.size());
      } else {
        counters.set_from_guest_drops(1);
      }
    }
    reader_ = std::thread([this, stop] { Read(stop); });
  }
  void Join() {
    if (reader_.joinable()) reader_.join();
  }
  void Fill(hvstack::internal::WorkerStatus* status) {
    absl::MutexLock lock(&mu_);
    for (const auto& [index, counters] : counters_)
      *status->add_nics() = counters;
  }

 private:
  static constexpr size_t kVnetHdrBytes = 10;
  void Read(absl::Notification* stop) {
    std::vector<pollfd> fds;
    for (const hvstack::internal::WorkerNic& nic : config.nics())
      fds.push_back({nic.tap_fd(), POLLIN, 0});
    char buf[65536];
    while (!stop->HasBeenNotified() && !fds.empty()) {
      if (poll(fds.data(), fds.size(), 50) <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        const hvstack::internal::WorkerNic& nic = config.nics(i);
        ssize_t n;
        while ((n = read(fds[i].fd, buf, sizeof(buf))) > 0) {
          const size_t header = nic.vnet_hdr() ? kVnetHdrBytes : 0;
          absl::MutexLock lock(&mu_);
          hvstack::internal::WorkerNicStatus& c = counters_[nic.index()];
          c.set_to_guest_packets(c.to_guest_packets() + 1);
          c.set_to_guest_bytes(c.to_guest_bytes() + n - header);
        }
      }
    }
  }
  absl::Mutex mu_;
  std::map<uint32_t, hvstack::internal::WorkerNicStatus> counters_
      ABSL_GUARDED_BY(mu_);
  std::thread reader_;
};

FakeNics fake_nics;

class FakeWorkerService final
    : public hvstack::internal::WorkerService::Service {
 public:
  FakeWorkerService(absl::Notification* stop, std::string mode)
      : stop_(stop), mode_(std::move(mode)) {}
  grpc::Status GetStatus(grpc::ServerContext*,
                         const hvstack::internal::GetStatusRequest*,
                         hvstack::internal::WorkerStatus* status) override {
    if (mode_ == "serve-slow") absl::SleepFor(absl::Seconds(5));
    status->set_vm_uuid(config.vm_uuid());
    status->set_running(true);
    absl::MutexLock lock(&mu_);
    status->set_paused(paused_);
    status->set_console_bytes(7);  // "booted\n"
    hvstack::internal::VpRuntime* vp = status->add_vps();
    vp->set_index(0);
    vp->set_cpu_time_ns(1000);
    vp->set_total_exits(3);
    (*vp->mutable_exits_by_reason())["port_io"] = 3;
    fake_nics.Fill(status);
    return grpc::Status::OK;
  }
  grpc::Status Pause(grpc::ServerContext*,
                     const hvstack::internal::PauseRequest*,
                     hvstack::internal::PauseResponse*) override {
    absl::MutexLock lock(&mu_);
    paused_ = true;
    return grpc::Status::OK;
  }
  grpc::Status Resume(grpc::ServerContext*,
                      const hvstack::internal::ResumeRequest*,
                      hvstack::internal::ResumeResponse*) override {
    absl::MutexLock lock(&mu_);
    paused_ = false;
    return grpc::Status::OK;
  }
  grpc::Status ShutdownGuest(
      grpc::ServerContext*, const hvstack::internal::ShutdownGuestRequest*,
      hvstack::internal::ShutdownGuestResponse*) override {
    if (mode_ == "shutdown-obeys") {
      absl::MutexLock lock(&mu_);
      power_off_ = true;
      std::thread([this] {
        absl::SleepFor(absl::Milliseconds(50));
        if (!stop_->HasBeenNotified()) stop_->Notify();
      }).detach();
      return grpc::Status::OK;
    }
    if (mode_ == "shutdown-ignores") return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "guest offers no shutdown channel");
  }
  bool powered_off() {
    absl::MutexLock lock(&mu_);
    return power_off_;
  }
  grpc::Status Stop(grpc::ServerContext*, const hvstack::internal::StopRequest*,
                    hvstack::internal::StopResponse*) override {
    if (!stop_->HasBeenNotified()) stop_->Notify();
    return grpc::Status::OK;
  }
  grpc::Status StreamConsole(
      grpc::ServerContext* context,
      const hvstack::internal::ConsoleRequest* request,
      grpc::ServerWriter<hvstack::internal::ConsoleData>* writer) override {
    hvstack::internal::ConsoleData data;
    data.set_data("booted\n");
    writer->Write(data);
    if (!request->follow()) return grpc::Status::OK;
    for (int i = 0; !stop_->HasBeenNotified() && !context->IsCancelled(); ++i) {
      std::string text = "tick " + std::to_string(i) + "\n";
      {
        absl::MutexLock lock(&mu_);
        if (!input_.empty()) text += "echo: " + input_ + "\n";
        input_.clear();
      }
      data.set_data(text);
      if (!writer->Write(data)) break;
      stop_->WaitForNotificationWithTimeout(absl::Milliseconds(50));
    }
    return grpc::Status::OK;
  }
  grpc::Status WriteConsole(
      grpc::ServerContext*,
      grpc::ServerReader<hvstack::internal::ConsoleInput>* reader,
      hvstack::internal::ConsoleInputSummary* summary) override {
    hvstack::internal::ConsoleInput input;
    while (reader->Read(&input)) {
      absl::MutexLock lock(&mu_);
      input_ += input.data();
      summary->set_accepted(summary->accepted() + input.data().size());
    }
    return grpc::Status::OK;
  }
  grpc::Status SaveState(
      grpc::ServerContext*, const hvstack::internal::SaveStateRequest* request,
      hvstack::internal::SaveStateResponse* response) override {
    if (handoff_ == nullptr) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "no handoff socket");
    }
    absl::StatusOr<std::vector<base::ScopedFd>> fds =
        handoff_->Take(request->handoff_token(), absl::Seconds(10));
    if (!fds.ok() || fds->size() != 2) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the save's descriptors did not come");
    }
    if (mode_ == "save-fails") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "a VSP refused to quiesce");
    }
    if (mode_ == "save-slow") absl::SleepFor(absl::Seconds(3));
    const std::string state = absl::StrCat("fake-saved vcpus=", config.vcpus(),
                                           " memory=", config.memory_mib());
    const std::string memory = "fake-memory";
    if (!WriteAll((*fds)[0].get(), state.data(), state.size()) ||
        !WriteAll((*fds)[1].get(), memory.data(), memory.size()) ||
        fdatasync((*fds)[0].get()) != 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "cannot write");
    }
    response->set_state_bytes(state.size());
    response->set_memory_pages_written(1);
    response->set_memory_pages_total(config.memory_mib() * 256);
    response->set_paused_us(1000);
    {
      absl::MutexLock lock(&mu_);
      saved_ = true;
    }
    std::thread([this] {
      absl::SleepFor(absl::Milliseconds(50));
      if (!stop_->HasBeenNotified()) stop_->Notify();
    }).detach();
    return grpc::Status::OK;
  }
  bool saved() {
    absl::MutexLock lock(&mu_);
    return saved_;
  }
  void set_handoff(base::FdHandoffListener* handoff) { handoff_ = handoff; }
  grpc::Status WatchEvents(
      grpc::ServerContext* context,
      const hvstack::internal::WatchEventsRequest*,
      grpc::ServerWriter<hvstack::internal::WorkerEvent>*) override {
    while (!stop_->HasBeenNotified() && !context->IsCancelled())
      stop_->WaitForNotificationWithTimeout(absl::Milliseconds(50));
    return grpc::Status::OK;
  }

 private:
  absl::Notification* stop_;
  const std::string mode_;
  absl::Mutex mu_;
  std::string input_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool power_off_ ABSL_GUARDED_BY(mu_) = false;
  bool saved_ ABSL_GUARDED_BY(mu_) = false;
  base::FdHandoffListener* handoff_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  int ready_fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--config=", 0) == 0) config_path = arg.substr(9);
    if (arg.rfind("--ready-fd=", 0) == 0)
      ready_fd = std::atoi(arg.c_str() + 11);
  }
  std::ifstream in(config_path, std::ios::binary);
  bool parsed = config.ParseFromIstream(&in);
  in.close();  // Before the descriptor check, which would see it.
  if (!parsed || ready_fd < 0) {
    std::fprintf(stderr, "fake_vmwp: bad arguments\n");
    return 2;
  }
  if (std::string problem = CheckDescriptors(ready_fd); !problem.empty()) {
    WriteReport(WorkerExitReport::WORKER_ERROR, problem, 13);
    return 1;
  }
  // Started in vmms's sandbox: wait until vmms put us into our cgroup, as
  // vmwp does before its lock-down (this stand-in confines nothing itself).
  if (!config.sandbox().disabled() &&
      config.sandbox().cgroup_joined_fd() >= 0) {
    char joined;
    (void)!read(config.sandbox().cgroup_joined_fd(), &joined, 1);
    close(config.sandbox().cgroup_joined_fd());
  }
  const std::string mode = config.cmdline();
  auto ready = [ready_fd] {
    char byte = 1;
    (void)!write(ready_fd, &byte, 1);
    close(ready_fd);
  };
  if (mode == "poweroff") {
    AppendConsole("hello\n");
    ready();
    WriteReport(WorkerExitReport::GUEST_POWER_OFF, "");
    return 0;
  }
  if (mode == "guest-crash") {
    ready();
    WriteReport(WorkerExitReport::GUEST_CRASHED, "triple fault");
    return 0;
  }
  if (mode == "worker-error") {
    WriteReport(WorkerExitReport::WORKER_ERROR, "kernel does not fit", 9);
    return 1;
  }
  if (mode == "reboot" || mode == "reboot-loop") {
    hvstack::internal::PersistentDeviceState persistent = config.persistent();
    const size_t boot = persistent.cmos_ram().size();
    {
      std::ofstream out(config.console_log_path(),
                        config.continue_console_log()
                            ? std::ios::binary | std::ios::app
                            : std::ios::binary | std::ios::trunc);
      out << "boot " << boot << "\n";
    }
    if (mode == "reboot-loop" || boot < 2) {
      ready();
      persistent.mutable_cmos_ram()->push_back('R');
      WriteReport(WorkerExitReport::REBOOT_REQUESTED, "fake reset", 0,
                  &persistent);
      return 0;
    }
  }
  if (mode == "die-early") return 3;
  if (mode == "segv") {
    ready();
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
  }
  if (mode == "never-ready" || mode == "serve-deaf") {
    if (mode == "serve-deaf") ready();
    signal(SIGTERM, SIG_IGN);
    while (true) pause();
  }
  // A restore: the saved "state" must fit this configuration.
  if (config.has_restore()) {
    char buf[256] = {};
    const ssize_t n =
        pread(config.restore().state_fd(), buf, sizeof(buf) - 1, 0);
    unsigned vcpus = 0, memory = 0;
    if (n <= 0 || std::sscanf(buf, "fake-saved vcpus=%u memory=%u", &vcpus,
                              &memory) != 2) {
      WriteReport(WorkerExitReport::WORKER_ERROR,
                  "state file: truncated or not a state file", 15);
      return 1;
    }
    if (vcpus != config.vcpus()) {
      WriteReport(WorkerExitReport::WORKER_ERROR,
                  absl::StrCat("vcpus: the saved VM had ", vcpus,
                               ", its configuration now says ", config.vcpus()),
                  9);
      return 1;
    }
    if (memory != config.memory_mib()) {
      WriteReport(
          WorkerExitReport::WORKER_ERROR,
          absl::StrCat("memory_mib: the saved VM had ", memory,
                       ", its configuration now says ", config.memory_mib()),
          9);
      return 1;
    }
  }
  // serve, and reboot's last boot
  if (config.has_restore()) {
    AppendConsole("restored\n");
  } else if (mode != "reboot") {
    AppendConsole("booted\n");
  }
  const bool disks_late = mode == "serve-disks-late";
  if (!disks_late) UseDisks();
  absl::Notification stop;
  FakeWorkerService service(&stop, mode);
  std::optional<base::FdHandoffListener> handoff;
  if (!config.handoff_socket_path().empty()) {
    absl::StatusOr<base::FdHandoffListener> listener =
        base::FdHandoffListener::Create(config.handoff_socket_path());
    if (listener.ok()) {
      handoff.emplace(*std::move(listener));
      service.set_handoff(&*handoff);
    }
  }
  fake_nics.Start(&stop);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + config.socket_path(),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ready();
  if (disks_late) {
    // Later than qemu-nbd's 10 s handshake limit: the NBD connection must
    // still be good (vmms connects it only when asked).
    absl::SleepFor(absl::Seconds(11));
    UseDisks();
  }
  stop.WaitForNotification();
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(200));
  fake_nics.Join();
  WriteReport(service.saved()         ? WorkerExitReport::SAVED
              : service.powered_off() ? WorkerExitReport::GUEST_POWER_OFF
                                      : WorkerExitReport::STOP_REQUESTED,
              service.saved() ? "the VM was saved" : "");
  return 0;
}
