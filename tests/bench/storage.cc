// Host-side storvsp throughput on a raw image, next to the same I/O pattern
// issued directly on the same file in the same run:
//  - 4 KiB random reads and writes at queue depth 32 (IOPS),
//  - 1 MiB sequential reads and writes at queue depth 4 (MB/s).
// storvsp: a guest-side driver (the test peer that speaks vstor as Linux's
// storvsc) writes EXECUTE_SRB packets with GPA-direct buffers into the
// channel's ring, signals, and reads the completions back, keeping QD
// requests in flight; the VMBus server drains on the signalling thread (as a
// VP thread would) and storvsp runs the I/O on its io_uring backend.
// Direct: io_uring with the same depth, and synchronous preadv/pwritev from
// one thread (depth 1). The figure is storvsp / io_uring.
//
//   bazel run -c opt //tests/bench:storage [-- SECONDS_PER_CASE [FILE_MIB [DIR
//   [CASE]]]] (CASE: run only the cases whose name contains it, e.g. "4 KiB
//   random read")
//
// Each case runs the three sides in turn in BENCH_SLICES (10) slices of
// SECONDS_PER_CASE / slices each, summed: on a loaded machine the load
// changes between slices hit all sides alike. BENCH_STORVSP_ONLY=1 runs only
// the storvsp side (to profile it with `perf record -g`); its ratios are
// then meaningless.
//
// The image lives in DIR (default /var/tmp), is written fully first (no
// holes) and is mostly in the page cache: the figures are the I/O path's
// cost, not the disk's.

#include <fcntl.h>
#include <liburing.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/storage/storvsp.h"
#include "vmwp/vsp/storage/uring_backend.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace vsp::storage;

struct Case {
  const char* name;
  bool write;
  bool random;
  uint32_t bytes;
  uint32_t depth;
};

struct Figure {
  double ops_per_s = 0;
  double mb_per_s = 0;
  double ops = 0;
  double cpu_us_per_op = 0;  // the process's user + system CPU time per op
  double secs = 0;           // wall time
  double cpu_secs = 0;
};

// Adds a slice's figure to a case's total (rates recomputed).
void Add(Figure& total, const Figure& slice, uint32_t bytes) {
  total.ops += slice.ops;
  total.secs += slice.secs;
  total.cpu_secs += slice.cpu_secs;
  total.ops_per_s = total.ops / total.secs;
  total.mb_per_s = total.ops * double(bytes) / total.secs / 1e6;
  total.cpu_us_per_op = total.cpu_secs * 1e6 / total.ops;
}

// The process's user + system CPU seconds so far. CPU time per operation
// hardly moves with the machine's load (wall-clock throughput does: on a
// shared machine compare these).
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Runs `run` and fills in its CPU time per op.
template <typename F>
Figure Timed(F run) {
  const double cpu = CpuSeconds();
  Figure f = run();
  f.cpu_secs = CpuSeconds() - cpu;
  f.cpu_us_per_op = f.cpu_secs * 1e6 / f.ops;
  return f;
}

class Offsets {
 public:
  Offsets(uint64_t file, const Case& c) : file_(file), c_(c), rng_(42) {}
  uint64_t Next() {
    if (c_.random) {
      return std::uniform_int_distribution<uint64_t>(
                 0, file_ / c_.bytes - 1)(rng_) *
             c_.bytes;
    }
    const uint64_t o = seq_;
    seq_ = (seq_ + c_.bytes) % (file_ / c_.bytes * c_.bytes);
    return o;
  }

 private:
  uint64_t file_;
  Case c_;
  std::mt19937_64 rng_;
  uint64_t seq_ = 0;
};

Figure Make(uint64_t ops, uint32_t bytes, double secs) {
  return {.ops_per_s = ops / secs,
          .mb_per_s = ops * double(bytes) / secs / 1e6,
          .ops = double(ops),
          .secs = secs};
}

Figure Preadv(int fd, uint64_t file, const Case& c, double seconds) {
  std::vector<uint8_t> buf(c.bytes, 0x5A);
  Offsets off(file, c);
  uint64_t ops = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    for (int i = 0; i < 16; ++i) {
      iovec v{buf.data(), buf.size()};
      const ssize_t n = c.write ? pwritev(fd, &v, 1, off.Next())
                                : preadv(fd, &v, 1, off.Next());
      if (n != static_cast<ssize_t>(c.bytes)) std::abort();
      ++ops;
    }
  }
  return Make(ops, c.bytes,
              std::chrono::duration<double>(Clock::now() - start).count());
}

Figure Uring(int fd, uint64_t file, const Case& c, double seconds) {
  io_uring ring;
  if (io_uring_queue_init(64, &ring, 0) != 0) std::abort();
  std::vector<uint8_t> buf(size_t{c.bytes} * c.depth, 0x5A);
  std::vector<iovec> iov(c.depth);
  for (uint32_t i = 0; i < c.depth; ++i) {
    iov[i] = {buf.data() + size_t{i} * c.bytes, c.bytes};
  }
  std::vector<uint32_t> free_slots;
  for (uint32_t i = 0; i < c.depth; ++i) free_slots.push_back(i);
  Offsets off(file, c);
  uint64_t ops = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  uint32_t in_flight = 0;
  bool stopping = false;
  while (!stopping || in_flight > 0) {
    while (!stopping && !free_slots.empty()) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      // One buffer: READ/WRITE, as storvsp's backend issues one-buffer
      // requests.
      if (c.write) {
        io_uring_prep_write(sqe, fd, iov[s].iov_base, c.bytes, off.Next());
      } else {
        io_uring_prep_read(sqe, fd, iov[s].iov_base, c.bytes, off.Next());
      }
      io_uring_sqe_set_data(sqe, reinterpret_cast<void*>(uintptr_t{s}));
      ++in_flight;
    }
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res != static_cast<int>(c.bytes)) std::abort();
      free_slots.push_back(static_cast<uint32_t>(cqe->user_data));
      ++n;
    }
    io_uring_cq_advance(&ring, n);
    in_flight -= n;
    ops += n;
    if (Clock::now() >= end) stopping = true;
  }
  io_uring_queue_exit(&ring);
  return Make(ops, c.bytes,
              std::chrono::duration<double>(Clock::now() - start).count());
}

// storvsp: the guest peer, the VMBus server and the controller in-process.
class StorvspRig {
 public:
  static constexpr uint64_t kRingPage = 16;
  static constexpr uint64_t kRingPages = 66;  // 32 + 1 each way
  static constexpr uint64_t kBufferPage = 128;

  StorvspRig(const std::string& path, uint64_t file) : file_(file) {
    // 32 MiB of guest RAM: 4 x 1 MiB buffers and rings.
    guest_ = std::make_unique<vmbus::testing::FakeGuest>(8192);
    server_ = std::make_unique<vmbus::VmbusServer>(
        guest_->memory, *guest_, vmbus::VmbusServer::Options{});
    guest_->server = server_.get();
    std::vector<StorageController::Lun> luns(1);
    auto b =
        UringFileBackend::Create(base::ScopedFd(open(path.c_str(), O_RDWR)),
                                 {.name = path, .size_bytes = file});
    if (!b.ok()) Die(b.status());
    luns[0].backend = *std::move(b);
    auto c = StorageController::Create(guest_->memory, {}, std::move(luns));
    if (!c.ok()) Die(c.status());
    controller_ = *std::move(c);
    if (!controller_->Start(nullptr).ok()) std::abort();
    relid_ = *server_->AddVsp(controller_->primary());
    guest_->Connect(vmbus::kVersionWin10V5_3);
    guest_->RequestOffers();
    guest_->CreateGpadl(
        relid_, 0xE1E10,
        vmbus::testing::FakeGuest::Pages(kRingPage, kRingPages));
    guest_->InitRings(kRingPage, kRingPages, kRingPages / 2);
    guest_->Open(relid_, 0xE1E10, kRingPages / 2, 1);
    for (uint32_t op : {kOpBeginInitialization, kOpQueryProtocolVersion,
                        kOpQueryProperties, kOpEndInitialization}) {
      VstorPacket p{};
      p.operation = op;
      p.version.major_minor = kVersionWin10;
      guest_->out->Write(vmbus::kPacketDataInband, 1, 1,
                         {reinterpret_cast<uint8_t*>(&p), sizeof(p)});
      Signal();
      while (!guest_->in->Read()) {
      }
    }
  }
  ~StorvspRig() {
    controller_->Stop();
    server_.reset();
  }

  Figure Run(const Case& c, double seconds) {
    Offsets off(file_, c);
    const uint32_t pages_per = c.bytes / 4096;
    uint64_t ops = 0;
    uint32_t in_flight = 0;
    bool stopping = false;
    std::vector<uint32_t> free_slots;
    for (uint32_t i = 0; i < c.depth; ++i) free_slots.push_back(i);
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (!stopping || in_flight > 0) {
      bool queued = false;
      while (!stopping && !free_slots.empty()) {
        const uint32_t s = free_slots.back();
        free_slots.pop_back();
        const uint64_t lba = off.Next() / 512;
        const uint32_t blocks = c.bytes / 512;
        VstorPacket p{};
        p.operation = kOpExecuteSrb;
        p.flags = kRequestCompletionFlag;
        VmscsiRequest& srb = p.vm_srb;
        srb.length = sizeof(VmscsiRequest);
        srb.cdb_length = 16;
        srb.cdb[0] = c.write ? 0x8A : 0x88;
        for (int i = 0; i < 8; ++i)
          srb.cdb[2 + i] = uint8_t(lba >> (56 - 8 * i));
        for (int i = 0; i < 4; ++i)
          srb.cdb[10 + i] = uint8_t(blocks >> (24 - 8 * i));
        srb.data_transfer_length = c.bytes;
        srb.data_in = c.write ? kWriteType : kReadType;
        ext_.resize(16 + 8 * pages_per);  // every byte written below
        const uint32_t h[4] = {0, 1, c.bytes, 0};
        std::memcpy(ext_.data(), h, 16);
        for (uint32_t i = 0; i < pages_per; ++i) {
          const uint64_t pfn = kBufferPage + uint64_t{s} * pages_per + i;
          std::memcpy(ext_.data() + 16 + 8 * i, &pfn, 8);
        }
        if (!guest_->out->WriteExtended(
                vmbus::kPacketDataUsingGpaDirect, 1, s + 1, ext_,
                {reinterpret_cast<uint8_t*>(&p), sizeof(p)})) {
          free_slots.push_back(s);
          break;
        }
        ++in_flight;
        queued = true;
      }
      if (queued) Signal();
      uint32_t got = 0;
      while (guest_->in->Read(reply_)) {
        VstorPacket r;
        if (reply_.data.size() < sizeof(r)) std::abort();
        std::memcpy(&r, reply_.data.data(), sizeof(r));
        if (r.vm_srb.srb_status != kSrbStatusSuccess) std::abort();
        free_slots.push_back(static_cast<uint32_t>(reply_.trans_id - 1));
        ++got;
      }
      if (got == 0 && !queued) {
        // Completions of I/O that did not finish during submission come
        // from the backend's thread.
        std::this_thread::yield();
        Signal();  // as the guest's pending_send_sz signal would
      }
      in_flight -= got;
      ops += got;
      if (Clock::now() >= end) stopping = true;
    }
    return Make(ops, c.bytes,
                std::chrono::duration<double>(Clock::now() - start).count());
  }

 private:
  [[noreturn]] static void Die(const absl::Status& s) {
    std::fprintf(stderr, "storage bench: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  void Signal() {
    server_->OnSignalEvent(0, vmbus::VmbusServer::ConnectionIdForRelid(relid_),
                           0);
  }

  uint64_t file_;
  std::unique_ptr<vmbus::testing::FakeGuest> guest_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<StorageController> controller_;
  uint32_t relid_ = 0;
  // The guest's buffers, reused (its costs are not storvsp's).
  std::vector<uint8_t> ext_;
  vmbus::testing::GuestPacket reply_;
};

}  // namespace

int main(int argc, char** argv) {
  // As the installed worker runs (vmwp/main.cc): without absl's debug-only
  // deadlock detector, which Debian's libabsl leaves on. BENCH_DEADLOCK=1
  // keeps it, to see what it costs.
  if (std::getenv("BENCH_DEADLOCK") == nullptr)
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 256;
  const std::string dir = argc > 3 ? argv[3] : "/var/tmp";
  const std::string only = argc > 4 ? argv[4] : "";
  const bool storvsp_only = std::getenv("BENCH_STORVSP_ONLY") != nullptr;
  // Slices per case and side (BENCH_SLICES, default 10).
  const char* slices_env = std::getenv("BENCH_SLICES");
  const int slices = std::max(1, slices_env ? std::atoi(slices_env) : 10);
  const uint64_t file = mib << 20;
  const std::string path = dir + "/hvstack-storage-bench.img";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    std::perror(path.c_str());
    return 1;
  }
  std::vector<uint8_t> chunk(1 << 20, 0xA5);
  for (uint64_t o = 0; o < file; o += chunk.size()) {
    if (pwrite(fd, chunk.data(), chunk.size(), o) != ssize_t(chunk.size())) {
      std::perror("pwrite");
      return 1;
    }
  }
  fdatasync(fd);
  std::printf(
      "storvsp host-side throughput, %llu MiB raw image in %s, %.1f s "
      "per case and side in %d interleaved slices (page-cached; cores: "
      "%ld)\n",
      (unsigned long long)mib, dir.c_str(), seconds, slices,
      sysconf(_SC_NPROCESSORS_ONLN));
  const Case cases[] = {
      {"4 KiB random read, QD32", false, true, 4096, 32},
      {"4 KiB random write, QD32", true, true, 4096, 32},
      {"1 MiB sequential read, QD4", false, false, 1 << 20, 4},
      {"1 MiB sequential write, QD4", true, false, 1 << 20, 4}};
  StorvspRig rig(path, file);
  for (const Case& c : cases) {
    if (!only.empty() && std::string(c.name).find(only) == std::string::npos) {
      continue;
    }
    // Interleaved in short slices, so that load changes on a shared machine
    // hit all three alike. BENCH_STORVSP_ONLY=1 skips the reference sides
    // (for profiling).
    Figure uring, sync, vsp;
    const double slice = seconds / slices;
    for (int i = 0; i < slices; ++i) {
      if (!storvsp_only) {
        Add(uring, Timed([&] { return Uring(fd, file, c, slice); }), c.bytes);
        Add(sync, Timed([&] { return Preadv(fd, file, c, slice); }), c.bytes);
      }
      Add(vsp, Timed([&] { return rig.Run(c, slice); }), c.bytes);
    }
    if (storvsp_only) uring = sync = vsp;
    const bool iops = c.bytes == 4096;
    auto show = [&](const Figure& f) {
      return iops ? f.ops_per_s / 1000 : f.mb_per_s;
    };
    std::printf(
        "%-30s storvsp %9.1f %s | io_uring QD%-2u %9.1f | preadv/pwritev QD1 "
        "%9.1f | storvsp/io_uring %.2fx, storvsp/preadv %.2fx\n",
        c.name, show(vsp), iops ? "kIOPS" : "MB/s ", c.depth, show(uring),
        show(sync), vsp.ops_per_s / uring.ops_per_s,
        vsp.ops_per_s / sync.ops_per_s);
    std::printf(
        "%-30s CPU per op: storvsp %.2f us | io_uring %.2f us | "
        "preadv/pwritev %.2f us | io_uring/storvsp %.2fx\n",
        "", vsp.cpu_us_per_op, uring.cpu_us_per_op, sync.cpu_us_per_op,
        uring.cpu_us_per_op / vsp.cpu_us_per_op);
  }
  std::printf("(target: storvsp >= 0.8x of direct I/O for 4 KiB at QD32)\n");
  close(fd);
  unlink(path.c_str());
  return 0;
}
