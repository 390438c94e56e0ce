// HvPartition / Synic save and restore (issue 14): a second partition built
// from the saved state and a copy of guest RAM behaves as the first would.

#include <cstring>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/hyperv/saved_state.pb.h"

namespace hvcore::hyperv {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 0x100000;
constexpr uint64_t kTscHz = 2'500'000'000;
constexpr uint64_t kLinuxOsId = 0x8100ull << 48;
constexpr uint64_t kHypercallGpa = 0x30000;
constexpr uint64_t kTscPageGpa = 0x31000;
constexpr uint64_t kSimpGpa = 0x32000;
constexpr uint64_t kSiefpGpa = 0x33000;
constexpr uint32_t kSint = 2;

struct Side {
  Side() : ram(kRamSize) {}
  void Create(uint64_t tsc_at_start) {
    HvPartitionConfig config;
    config.vp_count = 2;
    config.tsc_hz = kTscHz;
    config.tsc_at_start = tsc_at_start;
    absl::StatusOr<std::unique_ptr<HvPartition>> p =
        HvPartition::Create(config, ram, tsc, injector);
    ASSERT_TRUE(p.ok()) << p.status();
    partition = std::move(*p);
  }
  uint64_t Read(uint32_t msr, uint32_t vp = 0) {
    MsrResult r = partition->ReadMsr(vp, msr);
    EXPECT_FALSE(r.inject_gp) << std::hex << msr;
    return r.value;
  }
  void Write(uint32_t msr, uint64_t value, uint32_t vp = 0) {
    EXPECT_FALSE(partition->WriteMsr(vp, msr, value).inject_gp)
        << std::hex << msr;
  }
  uint32_t SlotType(uint32_t sint) {
    uint32_t type;
    std::memcpy(&type, ram.data() + kSimpGpa + sint * 256, 4);
    return type;
  }
  void FreeSlot(uint32_t sint) {
    std::memset(ram.data() + kSimpGpa + sint * 256, 0, 8);
  }
  uint64_t TscPageWord(int i) {
    uint64_t v;
    std::memcpy(&v, ram.data() + kTscPageGpa + 8 * i, 8);
    return v;
  }

  ByteArrayGuestRam ram;
  FakeTsc tsc;
  RecordingInjector injector;
  std::unique_ptr<HvPartition> partition;
};

class HypervStateTest : public testing::Test {
 protected:
  void SetUp() override {
    a_.Create(1000);
    a_.tsc.tsc = 1000 + kTscHz;  // one second after start
    a_.Write(kMsrGuestOsId, kLinuxOsId);
    a_.Write(kMsrHypercall, kHypercallGpa | kMsrPageEnable);
    a_.Write(kMsrReferenceTsc, kTscPageGpa | kMsrPageEnable);
    a_.Write(kMsrVpAssistPage, 0x34000 | kMsrPageEnable, 1);
    a_.Write(kMsrCrashP0 + 2, 0x1234);
    a_.Write(kMsrSimp, kSimpGpa | kMsrPageEnable);
    a_.Write(kMsrSiefp, kSiefpGpa | kMsrPageEnable);
    a_.Write(kMsrSint0 + kSint, 0x52);  // vector 0x52, unmasked
    a_.Write(kMsrScontrol, kScontrolEnable);
    // Three messages: one in the slot, two queued behind it.
    for (uint8_t i = 1; i <= 3; ++i) {
      const uint8_t payload[4] = {i, i, i, i};
      ASSERT_TRUE(a_.partition->PostMessage(0, kSint, 0x100 + i, payload).ok());
    }
    ASSERT_EQ(a_.partition->synic(0).QueuedMessages(kSint), 2u);
    (void)a_.injector.Take();
  }

  // b_ gets a's RAM and the saved state.
  absl::Status Restore(const hvstack::saved::HvPartitionState& state,
                       uint64_t guest_tsc) {
    std::memcpy(b_.ram.data(), a_.ram.data(), kRamSize);
    b_.Create(/*tsc_at_start=*/0);
    b_.tsc.tsc = guest_tsc;
    return b_.partition->RestoreState(state, guest_tsc);
  }

  Side a_, b_;
};

TEST_F(HypervStateTest, RestoredPartitionContinuesTheGuestsView) {
  hvstack::saved::HvPartitionState state = a_.partition->SaveState(a_.tsc.tsc);
  EXPECT_EQ(state.reference_time(), 10'000'000u);  // 1 s in 100 ns units
  std::string bytes;
  ASSERT_TRUE(state.SerializeToString(&bytes));
  hvstack::saved::HvPartitionState loaded;
  ASSERT_TRUE(loaded.ParseFromString(bytes));
  // The restored guest TSC is what it was (a host that restores IA32_TSC).
  ASSERT_TRUE(Restore(loaded, a_.tsc.tsc).ok());

  for (uint32_t msr :
       {kMsrGuestOsId, kMsrHypercall, kMsrReferenceTsc, kMsrSimp, kMsrSiefp,
        kMsrScontrol, kMsrSint0 + kSint, kMsrCrashP0 + 2}) {
    EXPECT_EQ(b_.Read(msr), a_.Read(msr)) << std::hex << msr;
  }
  EXPECT_EQ(b_.Read(kMsrVpAssistPage, 1), a_.Read(kMsrVpAssistPage, 1));
  EXPECT_EQ(b_.Read(kMsrTimeRefCount), a_.Read(kMsrTimeRefCount));
  // The TSC page tells the same time (its sequence moved on).
  EXPECT_EQ(b_.TscPageWord(1), a_.TscPageWord(1));  // scale
  EXPECT_EQ(b_.TscPageWord(2), a_.TscPageWord(2));  // offset
  EXPECT_NE(b_.TscPageWord(0), a_.TscPageWord(0));  // sequence
  // The queued messages are delivered in order as the guest frees slots.
  EXPECT_EQ(b_.SlotType(kSint), 0x101u);
  EXPECT_EQ(b_.partition->synic(0).QueuedMessages(kSint), 2u);
  b_.FreeSlot(kSint);
  b_.Write(kMsrEom, 0);
  EXPECT_EQ(b_.SlotType(kSint), 0x102u);
  b_.FreeSlot(kSint);
  b_.Write(kMsrEom, 0);
  EXPECT_EQ(b_.SlotType(kSint), 0x103u);
  EXPECT_EQ(b_.injector.Take().size(), 2u);
  // Disabling the hypercall page puts the original RAM back.
  std::array<uint8_t, kPageSize> zero{};
  b_.Write(kMsrHypercall, 0);
  EXPECT_EQ(std::memcmp(b_.ram.data() + kHypercallGpa, zero.data(), kPageSize),
            0);
}

TEST_F(HypervStateTest, ReferenceTimeDoesNotJumpWhenTheGuestTscDid) {
  hvstack::saved::HvPartitionState state = a_.partition->SaveState(a_.tsc.tsc);
  // A host that cannot restore IA32_TSC: the guest TSC is an hour further on.
  const uint64_t later = a_.tsc.tsc + 3600 * kTscHz;
  ASSERT_TRUE(Restore(state, later).ok());
  EXPECT_EQ(b_.Read(kMsrTimeRefCount), 10'000'000u);
  // The guest's own computation from the page agrees.
  const uint64_t page_time =
      ScaleTsc(later, b_.TscPageWord(1)) + b_.TscPageWord(2);
  EXPECT_EQ(page_time, 10'000'000u);
  b_.tsc.tsc = later + kTscHz / 10;
  EXPECT_EQ(b_.Read(kMsrTimeRefCount), 11'000'000u);
}

TEST_F(HypervStateTest, BadStateIsRefusedNamingTheField) {
  const hvstack::saved::HvPartitionState good =
      a_.partition->SaveState(a_.tsc.tsc);
  auto restore = [&](hvstack::saved::HvPartitionState s) {
    Side fresh;
    fresh.Create(0);
    return fresh.partition->RestoreState(s, 0);
  };
  hvstack::saved::HvPartitionState s = good;
  s.set_version(7);
  EXPECT_THAT(restore(s).message(), HasSubstr("format version 7"));
  s = good;
  s.set_vp_count(4);
  EXPECT_THAT(restore(s).message(), HasSubstr("4 VP(s)"));
  s = good;
  s.set_tsc_hz(1'000'000'000);
  EXPECT_THAT(restore(s).message(), HasSubstr("1000000000 Hz"));
  s = good;
  s.set_hypercall(0x7fff0000 | kMsrPageEnable);  // not RAM
  EXPECT_THAT(restore(s).message(), HasSubstr("HYPERCALL"));
  s = good;
  s.mutable_synics(0)->set_sint(3, 0x5);  // vector < 16, unmasked
  EXPECT_THAT(restore(s).message(), HasSubstr("SINT 0x5"));
  s = good;
  s.mutable_synics(0)->mutable_queued(0)->set_payload(std::string(241, 'x'));
  EXPECT_THAT(restore(s).message(), HasSubstr("queued message size"));
  s = good;
  s.mutable_synics(1)->set_simp(0x7fff0000 | kMsrPageEnable);
  EXPECT_THAT(restore(s).message(), HasSubstr("SIMP"));
}

}  // namespace
}  // namespace hvcore::hyperv
