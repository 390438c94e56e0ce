// VM creation to the first guest instruction, in process (no vmms/vmwp; see
// start_latency for the whole stack): vid::Partition::Create (guest memory,
// KVM VM, in-kernel irqchip + PIT + GSI routing, VPs with CPUID and MSRs) ->
// device registration -> code written -> PrepareBootVp (64-bit boot state) ->
// Run() -> the guest's first instruction, `out 0x80, al`, reaches the port
// handler. Next to it, the same with bare ioctls (VM, 64 MiB, one vCPU,
// real mode, no irqchip: what tests/bench/kvm_reference does, minus exec).
//
//   bazel run -c opt //tests/bench:vm_create -- [runs]
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/time/clock.h"
#include "hvcore/kvm_system.h"
#include "vid/partition.h"

namespace {

[[noreturn]] void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
  std::exit(1);
}

constexpr uint64_t kMemory = 64 << 20;

struct FirstExit : vid::PortIoHandler {
  vid::Partition* p = nullptr;
  absl::Time at;
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t, uint32_t) override {
    at = absl::Now();
    p->RequestStop("first instruction reached");
  }
};

struct Sample {
  double create_ms, prepare_ms, first_exit_ms, total_ms;
};

Sample RunVid(const hvcore::KvmSystem& kvm, uint32_t vcpus) {
  absl::Time t0 = absl::Now();
  auto p =
      vid::Partition::Create({.vcpus = vcpus, .memory_bytes = kMemory}, kvm);
  if (!p.ok()) Die("create", p.status());
  absl::Time t1 = absl::Now();
  FirstExit port;
  port.p = p->get();
  (void)(*p)->io().RegisterPortIo("post", 0x80, 1, &port);
  const std::vector<uint8_t> code = {0xE6, 0x80, 0xF4};  // out 0x80, al; hlt
  if (auto s = (*p)->memory().Write(0x100000, code); !s.ok()) Die("write", s);
  if (auto s = (*p)->PrepareBootVp(0x100000); !s.ok()) Die("prepare", s);
  absl::Time t2 = absl::Now();
  absl::StatusOr<vid::RunOutcome> outcome = (*p)->Run();
  if (!outcome.ok()) Die("run", outcome.status());
  if (outcome->kind != vid::RunOutcome::Kind::kStopped) {
    std::fprintf(stderr, "unexpected end: %s\n", outcome->detail.c_str());
    std::exit(1);
  }
  return {absl::ToDoubleMilliseconds(t1 - t0),
          absl::ToDoubleMilliseconds(t2 - t1),
          absl::ToDoubleMilliseconds(port.at - t2),
          absl::ToDoubleMilliseconds(port.at - t0)};
}

// Bare ioctls, as tests/bench/kvm_reference.cc (without exec). Total ms.
double RunBare(int kvm) {
  absl::Time t0 = absl::Now();
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0 || ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) {
    std::perror("bare VM");
    std::exit(1);
  }
  void* ram = mmap(nullptr, kMemory, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  kvm_userspace_memory_region region = {};
  region.memory_size = kMemory;
  region.userspace_addr = reinterpret_cast<uint64_t>(ram);
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    std::perror("bare region");
    std::exit(1);
  }
  const uint8_t code[] = {0xe6, 0x80, 0xf4};  // out 0x80, al; hlt
  std::memcpy(static_cast<uint8_t*>(ram) + 0x1000, code, sizeof(code));
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  auto* run = static_cast<kvm_run*>(
      mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0));
  kvm_sregs sregs;
  ioctl(vcpu, KVM_GET_SREGS, &sregs);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  ioctl(vcpu, KVM_SET_SREGS, &sregs);
  kvm_regs regs = {};
  regs.rip = 0x1000;
  regs.rflags = 0x2;
  ioctl(vcpu, KVM_SET_REGS, &regs);
  if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
    std::fprintf(stderr, "bare: no port exit\n");
    std::exit(1);
  }
  absl::Time t1 = absl::Now();
  munmap(run, run_size);
  close(vcpu);
  close(vm);
  munmap(ram, kMemory);
  return absl::ToDoubleMilliseconds(t1 - t0);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 21;
  absl::Time o0 = absl::Now();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  if (!kvm.ok()) Die("open /dev/kvm", kvm.status());
  double open_ms = absl::ToDoubleMilliseconds(absl::Now() - o0);
  std::printf(
      "KvmSystem::Open (checks, CPUID, MSR list): %.3f ms (once per "
      "worker)\n",
      open_ms);
  RunVid(**kvm, 1);  // warm-up
  RunBare((*kvm)->fd());
  for (uint32_t vcpus : {1u, 4u}) {
    std::vector<double> create, prepare, first, total, bare;
    for (int i = 0; i < runs; ++i) {
      Sample s = RunVid(**kvm, vcpus);
      create.push_back(s.create_ms);
      prepare.push_back(s.prepare_ms);
      first.push_back(s.first_exit_ms);
      total.push_back(s.total_ms);
      bare.push_back(RunBare((*kvm)->fd()));
    }
    std::printf(
        "\n%u VP(s), 64 MiB, median of %d runs (min..max total):\n"
        "  vid::Partition::Create          %.3f ms\n"
        "  register + write + PrepareBootVp %.3f ms\n"
        "  Run() to first guest instruction %.3f ms\n"
        "  total, creation to first exit    %.3f ms (%.3f..%.3f)\n"
        "  bare ioctls (1 vCPU, real mode)  %.3f ms\n",
        vcpus, runs, Median(create), Median(prepare), Median(first),
        Median(total), *std::min_element(total.begin(), total.end()),
        *std::max_element(total.begin(), total.end()), Median(bare));
  }
  return 0;
}
