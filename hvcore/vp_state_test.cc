// Save a running VP and its partition, restore them into a fresh partition,
// and check the guest goes on from exactly where it was (issue 14).

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/boot_layout.h"
#include "hvcore/kvm_system.h"
#include "hvcore/partition.h"
#include "hvcore/virtual_processor.h"

namespace hvcore {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 2 << 20;
constexpr uint64_t kCodeAddress = 0x100000;
constexpr uint64_t kCr4Osfxsr = 1ull << 9;

// Counts in RBX and, separately, in XMM0 (so the FPU/SSE state must come
// back too), and reports both on every round:
//   loop: inc rbx; movq rax, xmm0; inc rax; movq xmm0, rax;
//         out 0x80, eax; mov eax, ebx; out 0x81, eax; jmp loop
const std::vector<uint8_t> kCounter = {
    0x48, 0xFF,
    0xC3,  // inc rbx
    0x66, 0x48,
    0x0F, 0x7E,
    0xC0,  // movq rax, xmm0
    0x48, 0xFF,
    0xC0,  // inc rax
    0x66, 0x48,
    0x0F, 0x6E,
    0xC0,                             // movq xmm0, rax
    0xE7, 0x80,                       // out 0x80, eax
    0x89, 0xD8,                       // mov eax, ebx
    0xE7, 0x81,                       // out 0x81, eax
    0xEB, static_cast<uint8_t>(-24),  // jmp loop
};

struct Vm {
  std::unique_ptr<Partition> partition;
  std::unique_ptr<VirtualProcessor> vp;
  uint8_t* ram = nullptr;
  ~Vm() {
    vp.reset();
    partition.reset();
    if (ram != nullptr) ::munmap(ram, kRamSize);
  }
};

class VpStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) {
      GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "
                   << strerror(errno) << ")";
    } else {
      ::close(fd);
    }
    absl::StatusOr<std::unique_ptr<KvmSystem>> kvm = KvmSystem::Open();
    ASSERT_TRUE(kvm.ok()) << kvm.status();
    kvm_ = std::move(*kvm);
  }

  // A partition with the irqchip and one VP, RAM mapped (a copy of `from`
  // if given).
  std::unique_ptr<Vm> MakeVm(const uint8_t* from = nullptr) {
    auto vm = std::make_unique<Vm>();
    absl::StatusOr<std::unique_ptr<Partition>> p =
        Partition::Create(*kvm_, {.vcpu_count = 1, .irqchip = true});
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    vm->partition = std::move(*p);
    void* ram = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(ram, MAP_FAILED);
    vm->ram = static_cast<uint8_t*>(ram);
    if (from != nullptr) std::memcpy(vm->ram, from, kRamSize);
    EXPECT_TRUE(vm->partition->MapUserMemory(0, kRamSize, vm->ram).ok());
    absl::StatusOr<std::unique_ptr<VirtualProcessor>> vp =
        vm->partition->CreateVp(0);
    EXPECT_TRUE(vp.ok()) << vp.status();
    if (!vp.ok()) return nullptr;
    vm->vp = std::move(*vp);
    return vm;
  }

  // Runs until the guest reports RBX (port 0x81); returns it.
  static uint32_t NextCount(VirtualProcessor& vp, uint32_t* xmm = nullptr) {
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<Intercept> exit = vp.Run();
      EXPECT_TRUE(exit.ok()) << exit.status();
      if (!exit.ok()) return 0;
      auto* io = std::get_if<PortIo>(&*exit);
      EXPECT_NE(io, nullptr) << DescribeIntercept(*exit);
      if (io == nullptr) return 0;
      if (io->port == 0x80 && xmm != nullptr) *xmm = io->value;
      if (io->port == 0x81) return io->value;
    }
    return 0;
  }

  std::unique_ptr<KvmSystem> kvm_;
};

TEST_F(VpStateTest, RestoredVpContinuesWithTheNextCount) {
  std::unique_ptr<Vm> a = MakeVm();
  ASSERT_NE(a, nullptr);
  std::memcpy(a->ram + kCodeAddress, kCounter.data(), kCounter.size());
  ASSERT_TRUE(a->vp
                  ->SetupLongMode(std::span<uint8_t>(a->ram, kRamSize),
                                  kCodeAddress, kBootZeroPageAddress)
                  .ok());
  absl::StatusOr<kvm_sregs> sregs = a->vp->GetSregs();
  ASSERT_TRUE(sregs.ok());
  sregs->cr4 |= kCr4Osfxsr;
  ASSERT_TRUE(a->vp->SetSregs(*sregs).ok());
  uint32_t count = 0, xmm = 0;
  for (int i = 0; i < 7; ++i) count = NextCount(*a->vp, &xmm);
  ASSERT_EQ(count, 7u);
  ASSERT_EQ(xmm, 7u);

  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid = a->vp->GetCpuid();
  ASSERT_TRUE(cpuid.ok());
  absl::StatusOr<hvstack::saved::VpState> vp_state = a->vp->SaveState();
  ASSERT_TRUE(vp_state.ok()) << vp_state.status();
  absl::StatusOr<hvstack::saved::PartitionState> state =
      a->partition->SaveState(*cpuid);
  ASSERT_TRUE(state.ok()) << state.status();
  *state->add_vps() = *vp_state;
  EXPECT_EQ(state->vcpu_count(), 1u);
  EXPECT_FALSE(state->vps(0).msrs().empty());
  // Through the wire format, as on disk.
  std::string bytes;
  ASSERT_TRUE(state->SerializeToString(&bytes));
  hvstack::saved::PartitionState loaded;
  ASSERT_TRUE(loaded.ParseFromString(bytes));

  std::unique_ptr<Vm> b = MakeVm(a->ram);
  ASSERT_NE(b, nullptr);
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid_b = b->vp->GetCpuid();
  ASSERT_TRUE(cpuid_b.ok());
  absl::Status compatible = b->partition->CheckCompatible(loaded, *cpuid_b);
  ASSERT_TRUE(compatible.ok()) << compatible;
  ASSERT_TRUE(b->partition->RestoreState(loaded).ok());
  absl::Status restored = b->vp->RestoreState(loaded.vps(0));
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ(NextCount(*b->vp, &xmm), 8u);
  EXPECT_EQ(xmm, 8u);
  // The original goes on independently.
  EXPECT_EQ(NextCount(*a->vp, &xmm), 8u);
}

TEST_F(VpStateTest, BadStateIsRefusedNamingWhat) {
  std::unique_ptr<Vm> a = MakeVm();
  ASSERT_NE(a, nullptr);
  absl::StatusOr<hvstack::saved::VpState> good = a->vp->SaveState();
  ASSERT_TRUE(good.ok()) << good.status();

  hvstack::saved::VpState truncated = *good;
  truncated.set_sregs(truncated.sregs().substr(0, 100));
  absl::Status s = a->vp->RestoreState(truncated);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("segment registers has 100 bytes"));

  hvstack::saved::VpState synthetic = *good;
  hvstack::saved::Msr* m = synthetic.add_msrs();
  m->set_index(0x40000001);
  s = a->vp->RestoreState(synthetic);
  EXPECT_THAT(s.message(), HasSubstr("synthetic range"));

  hvstack::saved::VpState other = *good;
  other.set_index(3);
  EXPECT_THAT(a->vp->RestoreState(other).message(), HasSubstr("vp3"));
}

TEST_F(VpStateTest, CompatibilityNamesTheField) {
  std::unique_ptr<Vm> a = MakeVm();
  ASSERT_NE(a, nullptr);
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid = a->vp->GetCpuid();
  ASSERT_TRUE(cpuid.ok());
  absl::StatusOr<hvstack::saved::PartitionState> state =
      a->partition->SaveState(*cpuid);
  ASSERT_TRUE(state.ok()) << state.status();
  absl::StatusOr<hvstack::saved::VpState> vp = a->vp->SaveState();
  ASSERT_TRUE(vp.ok());
  *state->add_vps() = *vp;
  absl::Status compatible = a->partition->CheckCompatible(*state, *cpuid);
  EXPECT_TRUE(compatible.ok()) << compatible;

  hvstack::saved::PartitionState v = *state;
  v.set_version(99);
  EXPECT_THAT(a->partition->CheckCompatible(v, *cpuid).message(),
              HasSubstr("format version 99"));
  hvstack::saved::PartitionState n = *state;
  n.set_vcpu_count(2);
  EXPECT_THAT(a->partition->CheckCompatible(n, *cpuid).message(),
              HasSubstr("vcpus: the saved state has 2, the VM now has 1"));
  std::vector<kvm_cpuid_entry2> changed = *cpuid;
  for (kvm_cpuid_entry2& e : changed) {
    if (e.function == 1) e.ecx ^= 1;
  }
  EXPECT_THAT(a->partition->CheckCompatible(*state, changed).message(),
              HasSubstr("CPUID leaf 0x1 index 0 ECX"));
}

}  // namespace
}  // namespace hvcore
