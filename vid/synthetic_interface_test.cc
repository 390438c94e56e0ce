// The Hyper-V synthetic interface in vid's run loop, on this host's real KVM:
// an enlightened partition runs a tiny long-mode guest (hand-assembled, the
// source is beside the bytes) that reads the Hyper-V CPUID leaves, sets its
// OS id and hypercall page by WRMSR, calls HvPostMessage and an unknown
// hypercall through the page, reads TIME_REF_COUNT and VP_INDEX, enables its
// SynIC and waits for a message the host posts into SINT 2's slot.

#include "vid/synthetic_interface.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hvcore/hyperv/hypercall_page.h"
#include "hvcore/hyperv/tlfs.h"
#include "vid/partition.h"
#include "vid/test_guest.h"

namespace vid {
namespace {

#define SKIP_WITHOUT_KVM()                                         \
  do {                                                             \
    if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) { \
      GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "   \
                   << strerror(errno) << ")";                      \
    } else {                                                       \
      ::close(fd);                                                 \
    }                                                              \
  } while (0)

constexpr uint64_t kCode = 0x100000;
constexpr uint64_t kResults = 0x200000;
constexpr uint64_t kInput = 0x310000;  // HvPostMessage input page
constexpr uint32_t kMessageSint = 2;

// Assembled with GNU as (--64, Intel syntax):
//   mov esp, 0x280000
//   mov eax, 0x40000000; cpuid; mov [0x200000..0x20000c], eax/ebx/ecx/edx
//   wrmsr GUEST_OS_ID = 0x8100000000000000 (Linux)
//   wrmsr HYPERCALL = 0x300001 (page at 0x300000, enabled)
//   rcx = 0x5c (HvPostMessage), rdx = 0x310000, r8 = 0; call 0x300000
//   mov [0x200010], rax
//   rcx = 0xffff (no such call), rdx = r8 = 0; call 0x300000
//   mov [0x200018], rax
//   rdmsr TIME_REF_COUNT -> [0x200020]; rdmsr VP_INDEX -> [0x200028]
//   wrmsr SIMP = 0x320001; wrmsr SINT2 = 0x50 (unmasked); wrmsr SCONTROL = 1
//   mov dword [0x200030], 1       ; "SynIC ready"
//   wait: cmp dword [0x320200], 0; je wait   (SINT 2's slot, interrupts off)
//   [0x200034] = message type, [0x200038] = first 8 payload bytes
//   out 0x604, 0x3400 (ACPI S5: power off); hlt
constexpr uint8_t kGuest[] = {
    0xbc, 0x00, 0x00, 0x28, 0x00, 0xb8, 0x00, 0x00, 0x00, 0x40, 0x0f, 0xa2,
    0x89, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0x89, 0x1c, 0x25, 0x04, 0x00,
    0x20, 0x00, 0x89, 0x0c, 0x25, 0x08, 0x00, 0x20, 0x00, 0x89, 0x14, 0x25,
    0x0c, 0x00, 0x20, 0x00, 0xb9, 0x00, 0x00, 0x00, 0x40, 0x31, 0xc0, 0xba,
    0x00, 0x00, 0x00, 0x81, 0x0f, 0x30, 0xb9, 0x01, 0x00, 0x00, 0x40, 0xb8,
    0x01, 0x00, 0x30, 0x00, 0x31, 0xd2, 0x0f, 0x30, 0xb9, 0x5c, 0x00, 0x00,
    0x00, 0xba, 0x00, 0x00, 0x31, 0x00, 0x45, 0x31, 0xc0, 0xb8, 0x00, 0x00,
    0x30, 0x00, 0xff, 0xd0, 0x48, 0x89, 0x04, 0x25, 0x10, 0x00, 0x20, 0x00,
    0xb9, 0xff, 0xff, 0x00, 0x00, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0xb8, 0x00,
    0x00, 0x30, 0x00, 0xff, 0xd0, 0x48, 0x89, 0x04, 0x25, 0x18, 0x00, 0x20,
    0x00, 0xb9, 0x20, 0x00, 0x00, 0x40, 0x0f, 0x32, 0x89, 0x04, 0x25, 0x20,
    0x00, 0x20, 0x00, 0x89, 0x14, 0x25, 0x24, 0x00, 0x20, 0x00, 0xb9, 0x02,
    0x00, 0x00, 0x40, 0x0f, 0x32, 0x89, 0x04, 0x25, 0x28, 0x00, 0x20, 0x00,
    0xb9, 0x83, 0x00, 0x00, 0x40, 0xb8, 0x01, 0x00, 0x32, 0x00, 0x31, 0xd2,
    0x0f, 0x30, 0xb9, 0x92, 0x00, 0x00, 0x40, 0xb8, 0x50, 0x00, 0x00, 0x00,
    0x31, 0xd2, 0x0f, 0x30, 0xb9, 0x80, 0x00, 0x00, 0x40, 0xb8, 0x01, 0x00,
    0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30, 0xc7, 0x04, 0x25, 0x30, 0x00, 0x20,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x83, 0x3c, 0x25, 0x00, 0x02, 0x32, 0x00,
    0x00, 0x74, 0xf6, 0x8b, 0x04, 0x25, 0x00, 0x02, 0x32, 0x00, 0x89, 0x04,
    0x25, 0x34, 0x00, 0x20, 0x00, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x02, 0x32,
    0x00, 0x48, 0x89, 0x04, 0x25, 0x38, 0x00, 0x20, 0x00, 0x66, 0xba, 0x04,
    0x06, 0x66, 0xb8, 0x00, 0x34, 0x66, 0xef, 0xf4};

class CapturePort final : public hvcore::hyperv::MessagePortHandler {
 public:
  hvcore::hyperv::HvStatus OnMessage(
      uint32_t vp, uint32_t message_type,
      std::span<const uint8_t> payload) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    type_ = message_type;
    payload_.assign(payload.begin(), payload.end());
    return hvcore::hyperv::kHvStatusSuccess;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string payload() {
    absl::MutexLock lock(&mu_);
    return std::string(payload_.begin(), payload_.end());
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t type_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint8_t> payload_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
T Read(GuestMemory& m, uint64_t gpa) {
  absl::StatusOr<T> v = m.ReadObject<T>(gpa);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : T{};
}

struct EnlightenedVm {
  std::unique_ptr<testing::PowerOffPort> power;
  std::unique_ptr<Partition> partition;
};

absl::StatusOr<EnlightenedVm> MakeVm(bool enlightened) {
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open("/dev/kvm");
  if (!kvm.ok()) return kvm.status();
  EnlightenedVm vm;
  absl::StatusOr<std::unique_ptr<Partition>> p = Partition::Create(
      {.vcpus = 1, .memory_bytes = 8 << 20, .enlightened = enlightened}, **kvm);
  if (!p.ok()) return p.status();
  vm.partition = *std::move(p);
  vm.power = std::make_unique<testing::PowerOffPort>(vm.partition.get());
  if (absl::Status s = vm.partition->io().RegisterPortIo("pm1a_cnt", 0x604, 2,
                                                         vm.power.get());
      !s.ok())
    return s;
  GuestMemory& m = vm.partition->memory();
  if (absl::Status s = m.Write(kCode, kGuest); !s.ok()) return s;
  hvcore::hyperv::HvPostMessageInput in{};
  in.connection_id = 4;
  in.message_type = 1;
  in.payload_size = 5;
  std::memcpy(in.payload, "hello", 5);
  if (absl::Status s = m.WriteObject(kInput, in); !s.ok()) return s;
  if (absl::Status s = vm.partition->PrepareBootVp(kCode); !s.ok()) return s;
  return vm;
}

TEST(SyntheticInterfaceTest, EnlightenedGuestUsesMsrsHypercallsAndSynic) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<EnlightenedVm> vm = MakeVm(/*enlightened=*/true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  Partition& p = *vm->partition;
  ASSERT_NE(p.hyperv(), nullptr);
  auto port = std::make_shared<CapturePort>();
  ASSERT_TRUE(p.hyperv()->connections().RegisterMessagePort(4, port).ok());
  // No KVM paravirtual leaves: Linux would pick KVM over Hyper-V.
  for (const kvm_cpuid_entry2& e : p.hv_partition().guest_cpuid()) {
    if (e.function >= 0x40000000 && e.function < 0x50000000) {
      EXPECT_LE(e.function, 0x4000000Au) << std::hex << e.function;
    }
  }

  // The host posts once the guest's SynIC takes messages (FailedPrecondition
  // until then), as VMBus does.
  std::thread host([&p] {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    const uint8_t payload[] = {'v', 'm', 'b', 'u', 's', '!', '!', '!'};
    while (absl::Now() < deadline) {
      absl::Status s = p.hyperv()->PostMessage(0, kMessageSint, 1, payload);
      if (s.ok()) return;
      ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  absl::StatusOr<RunOutcome> outcome = p.Run();
  host.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << outcome->detail;

  GuestMemory& m = p.memory();
  EXPECT_EQ(Read<uint32_t>(m, kResults), 0x4000000Au);
  char vendor[13] = {};
  ASSERT_TRUE(
      m.Read(kResults + 4, {reinterpret_cast<uint8_t*>(vendor), 12}).ok());
  EXPECT_STREQ(vendor, "Microsoft Hv");
  EXPECT_EQ(Read<uint64_t>(m, kResults + 0x10), 0u);  // HV_STATUS_SUCCESS
  EXPECT_EQ(port->calls(), 1);
  EXPECT_EQ(port->payload(), "hello");
  EXPECT_EQ(Read<uint64_t>(m, kResults + 0x18) & 0xFFFF,
            uint64_t{hvcore::hyperv::kHvStatusInvalidHypercallCode});
  // TIME_REF_COUNT counts 100 ns from VM creation; only its sanity is
  // checkable here (well under a minute of guest time has passed).
  const uint64_t ref = Read<uint64_t>(m, kResults + 0x20);
  EXPECT_GT(ref, 0u);
  EXPECT_LT(ref, 600'000'000u);
  EXPECT_EQ(Read<uint32_t>(m, kResults + 0x28), 0u);  // VP_INDEX
  EXPECT_EQ(Read<uint32_t>(m, kResults + 0x34), 1u);  // message type
  EXPECT_EQ(Read<uint64_t>(m, kResults + 0x38), 0x2121217375626d76u);

  std::vector<VpStats> stats = p.GetVpStats();
  // GUEST_OS_ID, HYPERCALL, SIMP, SINT2, SCONTROL.
  EXPECT_EQ(stats[0].exits[11], 5u);
  EXPECT_EQ(stats[0].exits[10], 2u);  // TIME_REF_COUNT, VP_INDEX
  const hvcore::hyperv::HvStatsSnapshot hs = p.hyperv()->stats();
  EXPECT_FALSE(hs.ToString().empty());
}

TEST(SyntheticInterfaceTest,
     UnenlightenedGuestSeesKvmAndGetsGpOnSyntheticMsrs) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<EnlightenedVm> vm = MakeVm(/*enlightened=*/false);
  ASSERT_TRUE(vm.ok()) << vm.status();
  Partition& p = *vm->partition;
  EXPECT_EQ(p.hyperv(), nullptr);
  absl::StatusOr<RunOutcome> outcome = p.Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  // KVM's signature at 0x40000000; WRMSR GUEST_OS_ID is a #GP, and with no
  // IDT that is a triple fault.
  char vendor[13] = {};
  ASSERT_TRUE(p.memory()
                  .Read(kResults + 4, {reinterpret_cast<uint8_t*>(vendor), 12})
                  .ok());
  EXPECT_EQ(std::string(vendor, 9), "KVMKVMKVM");
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kReboot) << outcome->detail;
}

TEST(SyntheticInterfaceTest, HypercallPortIsReserved) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<EnlightenedVm> vm = MakeVm(/*enlightened=*/true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  testing::PowerOffPort other(vm->partition.get());
  absl::Status s = vm->partition->io().RegisterPortIo(
      "device", hvcore::hyperv::kDefaultHypercallPort, 1, &other);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace vid
