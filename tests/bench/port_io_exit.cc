// Port-I/O exit round trip: guest OUT -> KVM_EXIT_IO -> handler -> KVM_RUN.
//
// The same guest code (long mode: `out 0x80, al; dec ecx; jnz` N times, then
// the ACPI power-off write) runs, in the same process and interleaved round by
// round:
//   vid  - vid::Partition::Run(): VP thread, hvcore::VirtualProcessor::Run(),
//          intercept decoding, per-VP stats, IoDispatcher lookup, a device
//          handler (a no-op port);
//   raw  - a bare KVM_RUN loop on an identical partition (same vid::Partition
//          set-up: in-kernel irqchip, PIT, CPUID, MSRs), checking exit_reason
//          and the port, nothing else;
//   bare - the bare loop on a partition without the in-kernel irqchip (what
//          host-facts.md's "~9 us per exit" was measured with).
// Each figure is the median over rounds of wall time / port exits, so it
// includes the ~3 guest instructions per iteration (emulated on kvm_pvm).
//
//   bazel run -c opt //tests/bench:port_io_exit -- [iterations] [rounds]
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "hvcore/kvm_system.h"
#include "hvcore/partition.h"
#include "hvcore/virtual_processor.h"
#include "vid/partition.h"

namespace {

[[noreturn]] void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
  std::exit(1);
}

constexpr uint64_t kCode = 0x100000;

std::vector<uint8_t> GuestCode(uint32_t n) {
  return {
      0xB9,
      uint8_t(n),
      uint8_t(n >> 8),
      uint8_t(n >> 16),
      uint8_t(n >> 24),
      0xE6,
      0x80,  // 1: out 0x80, al
      0xFF,
      0xC9,  // dec ecx
      0x75,
      0xFA,  // jnz 1b
      0x66,
      0xBA,
      0x04,
      0x06,  // mov dx, 0x604
      0x66,
      0xB8,
      0x00,
      0x34,  // mov ax, 0x3400
      0x66,
      0xEF,  // out dx, ax
      0xF4,  // hlt
  };
}

struct NullPort : vid::PortIoHandler {
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t, uint32_t) override {}
};
struct PowerPort : vid::PortIoHandler {
  vid::Partition* p;
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t size, uint32_t v) override {
    if (size == 2 && v == 0x3400) p->RequestPowerOff();
  }
};

// Returns microseconds per port exit.
double RunVid(const hvcore::KvmSystem& kvm, uint32_t n) {
  auto p = vid::Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, kvm);
  if (!p.ok()) Die("create", p.status());
  NullPort null_port;
  PowerPort power;
  power.p = p->get();
  (void)(*p)->io().RegisterPortIo("post", 0x80, 1, &null_port);
  (void)(*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power);
  if (auto s = (*p)->memory().Write(kCode, GuestCode(n)); !s.ok())
    Die("write", s);
  if (auto s = (*p)->PrepareBootVp(kCode); !s.ok()) Die("prepare", s);
  absl::Time start = absl::Now();
  absl::StatusOr<vid::RunOutcome> outcome = (*p)->Run();
  absl::Duration took = absl::Now() - start;
  if (!outcome.ok()) Die("run", outcome.status());
  if (outcome->kind != vid::RunOutcome::Kind::kPowerOff) {
    std::fprintf(stderr, "vid run ended: %s\n", outcome->detail.c_str());
    std::exit(1);
  }
  uint64_t exits = (*p)->GetVpStats()[0].exits[0];
  return absl::ToDoubleMicroseconds(took) / exits;
}

// The bare loop on a vcpu fd. Returns microseconds per port exit.
double RawLoop(int vcpu_fd, size_t run_size) {
  auto* run = static_cast<kvm_run*>(::mmap(
      nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0));
  if (run == MAP_FAILED) {
    std::perror("mmap kvm_run");
    std::exit(1);
  }
  uint64_t exits = 0;
  absl::Time start = absl::Now();
  for (;;) {
    if (::ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      std::perror("KVM_RUN");
      std::exit(1);
    }
    if (run->exit_reason != KVM_EXIT_IO) {
      std::fprintf(stderr, "raw loop: unexpected exit %u\n", run->exit_reason);
      std::exit(1);
    }
    ++exits;
    if (run->io.port == 0x604) break;
  }
  absl::Duration took = absl::Now() - start;
  ::munmap(run, run_size);
  return absl::ToDoubleMicroseconds(took) / exits;
}

double RunRaw(const hvcore::KvmSystem& kvm, uint32_t n, bool own_thread) {
  auto p = vid::Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, kvm);
  if (!p.ok()) Die("create", p.status());
  if (auto s = (*p)->memory().Write(kCode, GuestCode(n)); !s.ok())
    Die("write", s);
  if (auto s = (*p)->PrepareBootVp(kCode); !s.ok()) Die("prepare", s);
  if (!own_thread) return RawLoop((*p)->vp(0).fd(), kvm.vcpu_mmap_size());
  double us = 0;
  std::thread t([&] { us = RawLoop((*p)->vp(0).fd(), kvm.vcpu_mmap_size()); });
  t.join();
  return us;
}

double RunBare(const hvcore::KvmSystem& kvm, uint32_t n) {
  auto hv = hvcore::Partition::Create(kvm, {.irqchip = false});
  if (!hv.ok()) Die("create", hv.status());
  constexpr size_t kRam = 2 << 20;
  void* ram = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (auto s = (*hv)->MapUserMemory(0, kRam, ram); !s.ok())
    Die("map", s.status());
  auto vp = (*hv)->CreateVp(0);
  if (!vp.ok()) Die("vp", vp.status());
  std::vector<uint8_t> code = GuestCode(n);
  std::memcpy(static_cast<uint8_t*>(ram) + kCode, code.data(), code.size());
  if (auto s = (*vp)->SetupLongMode(
          std::span<uint8_t>(static_cast<uint8_t*>(ram), kRam), kCode, 0x7000);
      !s.ok())
    Die("long mode", s);
  double us = RawLoop((*vp)->fd(), kvm.vcpu_mmap_size());
  vp->reset();
  hv->reset();
  ::munmap(ram, kRam);
  return us;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  if (!kvm.ok()) Die("open /dev/kvm", kvm.status());
  std::vector<double> vid_us, raw_us, rawt_us, bare_us;
  // One warm-up round of each (page faults, thread creation, caches).
  RunVid(**kvm, n / 10);
  RunRaw(**kvm, n / 10, false);
  RunRaw(**kvm, n / 10, true);
  RunBare(**kvm, n / 10);
  for (int r = 0; r < rounds; ++r) {
    vid_us.push_back(RunVid(**kvm, n));
    raw_us.push_back(RunRaw(**kvm, n, false));
    rawt_us.push_back(RunRaw(**kvm, n, true));
    bare_us.push_back(RunBare(**kvm, n));
    std::printf(
        "round %d: vid %.2f us  raw %.2f us  raw-thread %.2f us  bare %.2f "
        "us\n",
        r, vid_us.back(), raw_us.back(), rawt_us.back(), bare_us.back());
  }
  double v = Median(vid_us), r = Median(raw_us), rt = Median(rawt_us),
         b = Median(bare_us);
  std::printf(
      "\nport-I/O exit round trip, %u exits per round, median of %d rounds:\n"
      "  vid dispatch (vid::Partition::Run, VP thread)   %.2f us/exit\n"
      "  raw KVM_RUN loop, same set-up, main thread      %.2f us/exit\n"
      "  raw KVM_RUN loop, same set-up, own thread       %.2f us/exit\n"
      "  raw KVM_RUN loop, no in-kernel irqchip          %.2f us/exit\n"
      "  vid / raw = %.3fx, vid / raw-thread = %.3fx (target <= 1.1x)\n",
      n + 1, rounds, v, r, rt, b, v / r, v / rt);
  return 0;
}
