#include "hvcore/hyperv/hv_partition.h"

#include <cstring>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/hypercall_control.h"

namespace hvcore::hyperv {
namespace {

constexpr uint64_t kRamSize = 0x100000;
constexpr uint64_t kTscHz = 2'500'000'000;
constexpr uint64_t kLinuxOsId = 0x8100ull << 48;
constexpr uint64_t kHypercallGpa = 0x30000;
constexpr uint64_t kTscPageGpa = 0x31000;
constexpr HypercallCaller kKernel64{.cpl = 0, .long_mode = true};

class HvPartitionTest : public testing::Test {
 protected:
  HvPartitionTest() : ram_(kRamSize) {
    HvPartitionConfig config;
    config.vp_count = 2;
    config.tsc_hz = kTscHz;
    config.tsc_at_start = 1000;
    absl::StatusOr<std::unique_ptr<HvPartition>> p =
        HvPartition::Create(config, ram_, tsc_, injector_, &crashes_);
    EXPECT_TRUE(p.ok()) << p.status();
    partition_ = std::move(*p);
  }

  uint64_t Read(uint32_t msr, uint32_t vp = 0) {
    MsrResult r = partition_->ReadMsr(vp, msr);
    EXPECT_FALSE(r.inject_gp) << std::hex << msr;
    return r.value;
  }
  bool WriteGp(uint32_t msr, uint64_t value, uint32_t vp = 0) {
    return partition_->WriteMsr(vp, msr, value).inject_gp;
  }
  void Fill(uint64_t gpa, uint8_t byte) {
    std::memset(ram_.data() + gpa, byte, kPageSize);
  }
  bool PageIs(uint64_t gpa, const std::array<uint8_t, kPageSize>& bytes) {
    return std::memcmp(ram_.data() + gpa, bytes.data(), kPageSize) == 0;
  }
  std::array<uint8_t, kPageSize> Filled(uint8_t byte) {
    std::array<uint8_t, kPageSize> a;
    a.fill(byte);
    return a;
  }

  ByteArrayGuestRam ram_;
  FakeTsc tsc_;
  RecordingInjector injector_;
  RecordingCrashHandler crashes_;
  std::unique_ptr<HvPartition> partition_;
};

TEST(HvPartitionCreateTest, RejectsBadConfig) {
  ByteArrayGuestRam ram(0x10000);
  FakeTsc tsc;
  RecordingInjector injector;
  HvPartitionConfig config;
  config.tsc_hz = kTscHz;
  config.vp_count = 0;
  EXPECT_FALSE(HvPartition::Create(config, ram, tsc, injector).ok());
  config.vp_count = 1;
  config.tsc_hz = 1'000'000;
  EXPECT_FALSE(HvPartition::Create(config, ram, tsc, injector).ok());
}

TEST_F(HvPartitionTest, ResetValues) {
  EXPECT_EQ(Read(kMsrGuestOsId), 0u);
  EXPECT_EQ(Read(kMsrHypercall), 0u);
  EXPECT_EQ(Read(kMsrVpIndex, 0), 0u);
  EXPECT_EQ(Read(kMsrVpIndex, 1), 1u);
  EXPECT_EQ(Read(kMsrReferenceTsc), 0u);
  EXPECT_EQ(Read(kMsrTscFrequency), kTscHz);
  EXPECT_EQ(Read(kMsrApicFrequency), 1'000'000'000u);
  EXPECT_EQ(Read(kMsrVpAssistPage), 0u);
  EXPECT_EQ(Read(kMsrScontrol, 1), 0u);
  EXPECT_EQ(Read(kMsrSversion, 1), 1u);
  EXPECT_EQ(Read(kMsrSint0 + 4, 1), kSintMasked);
}

TEST_F(HvPartitionTest, TimeRefCountFollowsTheGuestTsc) {
  tsc_.tsc = 1000;  // tsc_at_start
  EXPECT_EQ(Read(kMsrTimeRefCount), 0u);
  tsc_.tsc = 1000 + 3 * kTscHz;  // three seconds later
  const uint64_t t = Read(kMsrTimeRefCount);
  EXPECT_GE(t + 1, 30'000'000u);
  EXPECT_LE(t, 30'000'001u);
}

TEST_F(HvPartitionTest, ReadOnlyAndUnimplementedMsrsAreGp) {
  for (uint32_t msr : {kMsrVpIndex, kMsrTimeRefCount, kMsrTscFrequency,
                       kMsrApicFrequency, kMsrSversion}) {
    EXPECT_TRUE(WriteGp(msr, 0)) << std::hex << msr;
  }
  // HV_X64_MSR_RESET, VP_RUNTIME, EOI/ICR/TPR, STIMER0, GUEST_IDLE, CRASH_P0,
  // the end of the range.
  for (uint32_t msr :
       {0x40000003u, 0x40000010u, 0x40000070u, 0x40000071u, 0x40000072u,
        0x400000B0u, 0x400000F0u, 0x40000106u, 0x40000118u, 0x400001FFu}) {
    EXPECT_TRUE(partition_->ReadMsr(0, msr).inject_gp) << std::hex << msr;
    EXPECT_TRUE(WriteGp(msr, 0)) << std::hex << msr;
  }
  EXPECT_TRUE(partition_->ReadMsr(2, kMsrVpIndex).inject_gp);  // no VP 2
  EXPECT_TRUE(HvPartition::HandlesMsr(0x40000000));
  EXPECT_TRUE(HvPartition::HandlesMsr(0x400001FF));
  EXPECT_FALSE(HvPartition::HandlesMsr(0x40000200));
  EXPECT_FALSE(HvPartition::HandlesMsr(0x3FFFFFFF));
  EXPECT_FALSE(HvPartition::HandlesMsr(0x4B564D00));  // KVM's own PV MSRs
  const HvStatsSnapshot stats = partition_->stats();
  EXPECT_GE(stats.msr_gp, 23u);
  EXPECT_EQ(stats.gp_msrs.front(), kMsrVpIndex);
}

TEST_F(HvPartitionTest, HypercallPageNeedsTheGuestOsId) {
  Fill(kHypercallGpa, 0x11);
  EXPECT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1));
  // TLFS: "the enable bit will remain zero even if a one is written to it".
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa);
  EXPECT_TRUE(PageIs(kHypercallGpa, Filled(0x11)));
}

TEST_F(HvPartitionTest, HypercallPageEnableMoveDisable) {
  Fill(kHypercallGpa, 0x11);
  Fill(kHypercallGpa + kPageSize, 0x22);
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  EXPECT_EQ(Read(kMsrGuestOsId), kLinuxOsId);

  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1));
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa | 1);
  EXPECT_TRUE(PageIs(kHypercallGpa, BuildHypercallPage(kDefaultHypercallPort)));

  // Moving it puts the old page's RAM back.
  ASSERT_FALSE(WriteGp(kMsrHypercall, (kHypercallGpa + kPageSize) | 1));
  EXPECT_TRUE(PageIs(kHypercallGpa, Filled(0x11)));
  EXPECT_TRUE(PageIs(kHypercallGpa + kPageSize,
                     BuildHypercallPage(kDefaultHypercallPort)));

  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa + kPageSize));
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa + kPageSize);
  EXPECT_TRUE(PageIs(kHypercallGpa + kPageSize, Filled(0x22)));
}

TEST_F(HvPartitionTest, ClearingTheOsIdDisablesTheHypercallPage) {
  Fill(kHypercallGpa, 0x11);
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1));
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, 0));
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa);
  EXPECT_TRUE(PageIs(kHypercallGpa, Filled(0x11)));
  EXPECT_TRUE(partition_->Hypercall(0, {0x5C, 0, 0}, kKernel64).inject_ud);
}

TEST_F(HvPartitionTest, BadHypercallMsrWrites) {
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  EXPECT_TRUE(WriteGp(kMsrHypercall, kRamSize | 1));
  EXPECT_TRUE(WriteGp(kMsrHypercall, 0xFFFFFFFFFFFFF001ull));
  EXPECT_EQ(Read(kMsrHypercall), 0u);
  // Bits 11:2 are RsvdP: stored and read back, not a #GP.
  EXPECT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 0x800 | 1));
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa | 0x800 | 1);
  EXPECT_TRUE(PageIs(kHypercallGpa, BuildHypercallPage(kDefaultHypercallPort)));
}

TEST_F(HvPartitionTest, LockedHypercallMsrIsImmutableUntilReset) {
  Fill(kHypercallGpa + kPageSize, 0x22);
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | kHypercallLocked | 1));
  // Moving, disabling, unlocking: all ignored.
  EXPECT_FALSE(WriteGp(kMsrHypercall, (kHypercallGpa + kPageSize) | 1));
  EXPECT_FALSE(WriteGp(kMsrHypercall, 0));
  EXPECT_EQ(Read(kMsrHypercall), kHypercallGpa | kHypercallLocked | 1);
  EXPECT_TRUE(PageIs(kHypercallGpa + kPageSize, Filled(0x22)));
  partition_->Reset();
  EXPECT_EQ(Read(kMsrHypercall), 0u);
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  EXPECT_FALSE(WriteGp(kMsrHypercall, (kHypercallGpa + kPageSize) | 1));
  EXPECT_EQ(Read(kMsrHypercall), (kHypercallGpa + kPageSize) | 1);
}

TEST_F(HvPartitionTest, HypercallNeedsThePageAndCpl0) {
  const HypercallArgs unknown{0x7777, 0, 0};
  EXPECT_TRUE(partition_->Hypercall(0, unknown, kKernel64).inject_ud);
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1));
  EXPECT_TRUE(partition_->Hypercall(0, unknown, {.cpl = 3, .long_mode = true})
                  .inject_ud);
  // Real mode, or 32-bit code whose registers our 64-bit page misreads.
  EXPECT_TRUE(partition_->Hypercall(0, unknown, {.cpl = 0, .long_mode = false})
                  .inject_ud);
  EXPECT_TRUE(partition_->Hypercall(5, unknown, kKernel64).inject_ud);
  const HypercallOutcome out = partition_->Hypercall(1, unknown, kKernel64);
  EXPECT_FALSE(out.inject_ud);
  EXPECT_EQ(out.result, HypercallResult(kHvStatusInvalidHypercallCode));
}

TEST_F(HvPartitionTest, ReferenceTscPage) {
  Fill(kTscPageGpa, 0xEE);
  ASSERT_FALSE(WriteGp(kMsrReferenceTsc, kTscPageGpa | 1));
  EXPECT_EQ(Read(kMsrReferenceTsc), kTscPageGpa | 1);
  HvReferenceTscPage page;
  std::memcpy(&page, ram_.data() + kTscPageGpa, sizeof(page));
  EXPECT_NE(page.tsc_sequence, 0u);
  EXPECT_NE(page.tsc_sequence, 0xFFFFFFFFu);
  EXPECT_EQ(page.tsc_scale, partition_->clock().scale());
  EXPECT_EQ(page.tsc_offset, partition_->clock().offset());
  // The guest's formula and the MSR agree.
  for (uint64_t t :
       {uint64_t{1000}, uint64_t{123456789}, 1000 + 86400 * kTscHz}) {
    tsc_.tsc = t;
    const uint64_t from_page =
        static_cast<uint64_t>(
            (static_cast<unsigned __int128>(t) * page.tsc_scale) >> 64) +
        static_cast<uint64_t>(page.tsc_offset);
    EXPECT_EQ(from_page, Read(kMsrTimeRefCount)) << t;
  }
  // Rewriting publishes a new sequence.
  const uint32_t first = page.tsc_sequence;
  ASSERT_FALSE(WriteGp(kMsrReferenceTsc, kTscPageGpa | 1));
  std::memcpy(&page, ram_.data() + kTscPageGpa, sizeof(page));
  EXPECT_NE(page.tsc_sequence, first);
  EXPECT_NE(page.tsc_sequence, 0u);

  EXPECT_TRUE(WriteGp(kMsrReferenceTsc, kRamSize | 1));
  EXPECT_EQ(Read(kMsrReferenceTsc), kTscPageGpa | 1);
  ASSERT_FALSE(WriteGp(kMsrReferenceTsc, 0));
  EXPECT_EQ(Read(kMsrReferenceTsc), 0u);
}

TEST_F(HvPartitionTest, VpAssistPageIsStoredPerVp) {
  ASSERT_FALSE(WriteGp(kMsrVpAssistPage, 0x40000 | 1, 1));
  EXPECT_EQ(Read(kMsrVpAssistPage, 1), 0x40001u);
  EXPECT_EQ(Read(kMsrVpAssistPage, 0), 0u);
  EXPECT_TRUE(WriteGp(kMsrVpAssistPage, kRamSize | 1, 1));
  EXPECT_EQ(Read(kMsrVpAssistPage, 1), 0x40001u);
}

// What Linux does on panic (hyperv_report_panic), then with its log
// (hv_kmsg_dump): parameters, then a message page.
TEST_F(HvPartitionTest, GuestCrashReports) {
  EXPECT_EQ(Read(kMsrCrashCtl), kCrashCtlNotify | kCrashCtlNotifyMsg);
  EXPECT_FALSE(partition_->last_guest_crash().has_value());
  const uint64_t params[5] = {0xE, kLinuxOsId, 0xFFFFFFFF81000000ull, 42,
                              0xFFFFC90000003F00ull};
  for (uint32_t i = 0; i < 5; ++i) {
    ASSERT_FALSE(WriteGp(kMsrCrashP0 + i, params[i], 1));
    EXPECT_EQ(Read(kMsrCrashP0 + i), params[i]);
  }
  ASSERT_FALSE(WriteGp(kMsrCrashCtl, kCrashCtlNotify, 1));
  std::vector<GuestCrashReport> got = crashes_.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].vp_index, 1u);
  EXPECT_EQ(got[0].params[2], 0xFFFFFFFF81000000ull);
  EXPECT_EQ(got[0].message, "");

  const std::string log = "Kernel panic - not syncing: VFS: Unable to mount";
  std::memcpy(ram_.data() + 0x40000, log.data(), log.size());
  ASSERT_FALSE(WriteGp(kMsrCrashP0 + 3, 0x40000));
  ASSERT_FALSE(WriteGp(kMsrCrashP0 + 4, log.size()));
  ASSERT_FALSE(WriteGp(kMsrCrashCtl, kCrashCtlNotify | kCrashCtlNotifyMsg));
  got = crashes_.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message, log);
  EXPECT_EQ(partition_->last_guest_crash()->message, log);

  // Hostile: a huge length is cut to a page; a GPA outside RAM gives no text.
  ASSERT_FALSE(WriteGp(kMsrCrashP0 + 4, ~0ull));
  ASSERT_FALSE(WriteGp(kMsrCrashCtl, kCrashCtlNotify | kCrashCtlNotifyMsg));
  EXPECT_EQ(crashes_.Take().at(0).message.size(), kPageSize);
  ASSERT_FALSE(WriteGp(kMsrCrashP0 + 3, kRamSize - 8));
  ASSERT_FALSE(WriteGp(kMsrCrashCtl, kCrashCtlNotify | kCrashCtlNotifyMsg));
  EXPECT_EQ(crashes_.Take().at(0).message, "");
  // CTL without NOTIFY reports nothing.
  ASSERT_FALSE(WriteGp(kMsrCrashCtl, kCrashCtlNotifyMsg));
  EXPECT_TRUE(crashes_.Take().empty());
  partition_->Reset();
  EXPECT_EQ(Read(kMsrCrashP0), 0u);
}

// A guest's VMBus-style round trip: it posts to connection 4 through the
// hypercall path; the host answers into VP 1's SINT 2 message slot.
TEST_F(HvPartitionTest, EndToEndMessageRoundTrip) {
  class EchoPort final : public MessagePortHandler {
   public:
    explicit EchoPort(HvPartition& p) : partition(p) {}
    HvStatus OnMessage(uint32_t vp, uint32_t type,
                       std::span<const uint8_t> payload) override {
      return partition.PostMessage(vp, 2, type + 1, payload).ok()
                 ? kHvStatusSuccess
                 : kHvStatusInsufficientBuffers;
    }
    HvPartition& partition;
  };
  ASSERT_TRUE(
      partition_->connections()
          .RegisterMessagePort(4, std::make_shared<EchoPort>(*partition_))
          .ok());
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId, 1));
  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1, 1));
  ASSERT_FALSE(WriteGp(kMsrSimp, 0x50000 | 1, 1));
  ASSERT_FALSE(WriteGp(kMsrSint0 + 2, 0xF3, 1));
  ASSERT_FALSE(WriteGp(kMsrScontrol, 1, 1));

  HvPostMessageInput in{};
  in.connection_id = 4;
  in.message_type = 1;
  in.payload_size = 3;
  in.payload[0] = 'h';
  in.payload[1] = 'v';
  in.payload[2] = '!';
  std::memcpy(ram_.data() + 0x60000, &in, sizeof(in));
  const HypercallOutcome out =
      partition_->Hypercall(1, {kHvCallPostMessage, 0x60000, 0}, kKernel64);
  ASSERT_FALSE(out.inject_ud);
  EXPECT_EQ(out.result, 0u);

  HvMessage reply;
  std::memcpy(&reply, ram_.data() + 0x50000 + 2 * kMessageSize, sizeof(reply));
  EXPECT_EQ(reply.message_type, 2u);
  EXPECT_EQ(reply.payload_size, 3);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(reply.payload), 3), "hv!");
  EXPECT_THAT(
      injector_.Take(),
      testing::ElementsAre(RecordingInjector::Injection{1, 0xF3, false}));
  EXPECT_EQ(partition_->PostMessage(9, 2, 1, {}).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(HvPartitionTest, ResetClearsEverySyntheticRegister) {
  ASSERT_FALSE(WriteGp(kMsrGuestOsId, kLinuxOsId));
  ASSERT_FALSE(WriteGp(kMsrHypercall, kHypercallGpa | 1));
  ASSERT_FALSE(WriteGp(kMsrReferenceTsc, kTscPageGpa | 1));
  ASSERT_FALSE(WriteGp(kMsrScontrol, 1, 1));
  partition_->Reset();
  EXPECT_EQ(Read(kMsrGuestOsId), 0u);
  EXPECT_EQ(Read(kMsrHypercall), 0u);
  EXPECT_EQ(Read(kMsrReferenceTsc), 0u);
  EXPECT_EQ(Read(kMsrScontrol, 1), 0u);
}

}  // namespace
}  // namespace hvcore::hyperv
