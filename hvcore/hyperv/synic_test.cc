#include "hvcore/hyperv/synic.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"

namespace hvcore::hyperv {
namespace {

using Injection = RecordingInjector::Injection;
using testing::ElementsAre;
using testing::IsEmpty;

constexpr uint64_t kRamSize = 0x100000;
constexpr uint64_t kSimp = 0x20000;
constexpr uint64_t kSiefp = 0x21000;
constexpr uint32_t kVp = 3;
constexpr uint8_t kVector = 0xF3;  // Linux's HYPERVISOR_CALLBACK_VECTOR

class SynicTest : public testing::Test {
 protected:
  SynicTest() : ram_(kRamSize), synic_(kVp, ram_, injector_, 4) {}

  // What Linux's hv_synic_enable_regs does, for `sint`.
  void EnableLikeLinux(uint32_t sint, uint64_t sint_flags = 0) {
    ASSERT_FALSE(synic_.WriteMsr(kMsrSimp, kSimp | 1).inject_gp);
    ASSERT_FALSE(synic_.WriteMsr(kMsrSiefp, kSiefp | 1).inject_gp);
    ASSERT_FALSE(
        synic_.WriteMsr(kMsrSint0 + sint, kVector | sint_flags).inject_gp);
    ASSERT_FALSE(synic_.WriteMsr(kMsrScontrol, 1).inject_gp);
  }

  HvMessage Slot(uint32_t sint) {
    HvMessage m;
    std::memcpy(&m, ram_.data() + kSimp + sint * kMessageSize, sizeof(m));
    return m;
  }
  // The guest's side of the protocol: free the slot, EOM if it was flagged.
  void GuestConsume(uint32_t sint) {
    HvMessage m = Slot(sint);
    uint32_t none = kMessageTypeNone;
    std::memcpy(ram_.data() + kSimp + sint * kMessageSize, &none, 4);
    if (m.message_flags & kMessageFlagPending) {
      EXPECT_FALSE(synic_.WriteMsr(kMsrEom, 0).inject_gp);
    }
  }
  std::vector<uint8_t> Payload(uint8_t first, size_t size) {
    std::vector<uint8_t> p(size);
    std::iota(p.begin(), p.end(), first);
    return p;
  }

  ByteArrayGuestRam ram_;
  RecordingInjector injector_;
  Synic synic_;
};

TEST_F(SynicTest, ResetValues) {
  EXPECT_EQ(synic_.ReadMsr(kMsrScontrol).value, 0u);
  EXPECT_EQ(synic_.ReadMsr(kMsrSversion).value, 1u);
  EXPECT_EQ(synic_.ReadMsr(kMsrSiefp).value, 0u);
  EXPECT_EQ(synic_.ReadMsr(kMsrSimp).value, 0u);
  EXPECT_EQ(synic_.ReadMsr(kMsrEom).value, 0u);
  for (uint32_t i = 0; i < kSintCount; ++i) {
    EXPECT_EQ(synic_.ReadMsr(kMsrSint0 + i).value, 0x10000u) << i;
  }
  EXPECT_TRUE(Synic::IsSynicMsr(kMsrSint15));
  EXPECT_FALSE(Synic::IsSynicMsr(0x40000085));
  EXPECT_FALSE(Synic::IsSynicMsr(0x400000A0));
}

TEST_F(SynicTest, InvalidWritesAreGp) {
  EXPECT_TRUE(synic_.WriteMsr(kMsrSversion, 1).inject_gp);
  // SINT: vectors 0-15 only while masked (polling does not count as masked).
  EXPECT_TRUE(synic_.WriteMsr(kMsrSint0, 0x0F).inject_gp);
  EXPECT_TRUE(synic_.WriteMsr(kMsrSint0, kSintPolling | 0x0F).inject_gp);
  EXPECT_FALSE(synic_.WriteMsr(kMsrSint0, kSintMasked | 0x0F).inject_gp);
  EXPECT_FALSE(
      synic_.WriteMsr(kMsrSint0, kSintAutoEoi | kSintPolling | 0x10).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrSint0).value,
            kSintAutoEoi | kSintPolling | 0x10);
  // Pages enabled outside RAM.
  EXPECT_TRUE(synic_.WriteMsr(kMsrSimp, kRamSize | 1).inject_gp);
  EXPECT_TRUE(synic_.WriteMsr(kMsrSiefp, 0xFFFFFFFFFFFFF001ull).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrSimp).value, 0u);
  // A disabled page may name any address.
  EXPECT_FALSE(synic_.WriteMsr(kMsrSimp, kRamSize).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrSimp).value, kRamSize);
}

// The TLFS marks SCONTROL 63:1, SIMP/SIEFP 11:1 and SINT 15:8, 63:19 RsvdP:
// read/write, "value should be preserved". Newer guests use some of them
// (e.g. SINT bit 20, "proxy"), so they are stored, never a #GP.
TEST_F(SynicTest, RsvdPBitsAreStored) {
  const uint64_t sint = (1ull << 20) | (0xABull << 8) | kSintMasked | kVector;
  EXPECT_FALSE(synic_.WriteMsr(kMsrSint0 + 1, sint).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrSint0 + 1).value, sint);
  EXPECT_FALSE(synic_.WriteMsr(kMsrScontrol, 0xF0).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrScontrol).value, 0xF0u);
  EXPECT_FALSE(synic_.WriteMsr(kMsrSimp, kSimp | 0x802 | 1).inject_gp);
  EXPECT_EQ(synic_.ReadMsr(kMsrSimp).value, kSimp | 0x803);
  // SCONTROL 0xF0 has the enable bit clear: still off.
  EXPECT_EQ(synic_.PostMessage(2, 1, Payload(0, 8)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SynicTest, EnablingAPageClearsIt) {
  std::memset(ram_.data() + kSimp, 0xAB, kPageSize);
  ASSERT_FALSE(synic_.WriteMsr(kMsrSimp, kSimp | 1).inject_gp);
  for (uint64_t i = 0; i < kPageSize; ++i) {
    ASSERT_EQ(ram_.data()[kSimp + i], 0) << i;
  }
}

TEST_F(SynicTest, PostNeedsTheGuestsSynic) {
  EXPECT_EQ(synic_.PostMessage(2, 1, Payload(0, 8)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_FALSE(synic_.WriteMsr(kMsrSimp, kSimp | 1).inject_gp);
  // SIMP without SCONTROL is still off.
  EXPECT_EQ(synic_.PostMessage(2, 1, Payload(0, 8)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(injector_.Take(), IsEmpty());
}

TEST_F(SynicTest, PostDeliversIntoTheSlotAndInterrupts) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 0x42, Payload(1, 240)).ok());
  const HvMessage m = Slot(2);
  EXPECT_EQ(m.message_type, 0x42u);
  EXPECT_EQ(m.payload_size, 240);
  EXPECT_EQ(m.message_flags, 0);
  EXPECT_EQ(m.sender, 0u);
  EXPECT_EQ(m.payload[0], 1);
  EXPECT_EQ(m.payload[239], 240);
  EXPECT_THAT(injector_.Take(), ElementsAre(Injection{kVp, kVector, false}));
  // Other slots untouched.
  EXPECT_EQ(Slot(1).message_type, 0u);
  EXPECT_EQ(Slot(3).message_type, 0u);
}

TEST_F(SynicTest, BadPosts) {
  EnableLikeLinux(2);
  EXPECT_EQ(synic_.PostMessage(2, 1, Payload(0, 241)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(synic_.PostMessage(16, 1, Payload(0, 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(synic_.PostMessage(2, kMessageTypeNone, Payload(0, 1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(injector_.Take(), IsEmpty());
}

TEST_F(SynicTest, BusySlotQueuesAndEomRedeliversInOrder) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(10, 4)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 2, Payload(20, 4)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 3, Payload(30, 4)).ok());
  EXPECT_EQ(synic_.QueuedMessages(2), 2u);
  // One interrupt: the two others wait; the busy slot is flagged pending.
  EXPECT_EQ(injector_.Take().size(), 1u);
  EXPECT_EQ(Slot(2).message_type, 1u);
  EXPECT_EQ(Slot(2).message_flags, kMessageFlagPending);

  // The guest frees the slot and writes EOM: message 2 arrives, still
  // flagged because message 3 waits behind it.
  GuestConsume(2);
  EXPECT_EQ(Slot(2).message_type, 2u);
  EXPECT_EQ(Slot(2).payload[0], 20);
  EXPECT_EQ(Slot(2).message_flags, kMessageFlagPending);
  EXPECT_EQ(injector_.Take().size(), 1u);

  GuestConsume(2);
  EXPECT_EQ(Slot(2).message_type, 3u);
  EXPECT_EQ(Slot(2).payload[0], 30);
  EXPECT_EQ(Slot(2).message_flags, 0);  // nothing else waits
  EXPECT_EQ(synic_.QueuedMessages(2), 0u);
  EXPECT_EQ(injector_.Take().size(), 1u);

  GuestConsume(2);  // no EOM needed: the flag was clear
  EXPECT_EQ(Slot(2).message_type, 0u);
  EXPECT_THAT(injector_.Take(), IsEmpty());
}

TEST_F(SynicTest, NewPostDoesNotOvertakeQueuedMessages) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 2, Payload(0, 1)).ok());
  // The guest frees the slot but has not written EOM yet when the host
  // posts again: message 2 must go first.
  uint32_t none = 0;
  std::memcpy(ram_.data() + kSimp + 2 * kMessageSize, &none, 4);
  ASSERT_TRUE(synic_.PostMessage(2, 3, Payload(0, 1)).ok());
  EXPECT_EQ(Slot(2).message_type, 2u);
  EXPECT_EQ(Slot(2).message_flags, kMessageFlagPending);
  GuestConsume(2);
  EXPECT_EQ(Slot(2).message_type, 3u);
}

TEST_F(SynicTest, QueueIsBounded) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());  // in the slot
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok()) << i;
  }
  EXPECT_EQ(synic_.PostMessage(2, 1, Payload(0, 1)).code(),
            absl::StatusCode::kResourceExhausted);
  // Other SINTs have their own queue and slot.
  ASSERT_FALSE(synic_.WriteMsr(kMsrSint0 + 5, 0x50).inject_gp);
  EXPECT_TRUE(synic_.PostMessage(5, 1, Payload(0, 1)).ok());
}

TEST_F(SynicTest, QueuedMessagesSurviveADisabledPage) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 2, Payload(0, 1)).ok());
  injector_.Take();
  // TLFS: with the SIM page disabled "the message remains queued"; new posts
  // find no target.
  ASSERT_FALSE(synic_.WriteMsr(kMsrSimp, kSimp).inject_gp);
  EXPECT_EQ(synic_.QueuedMessages(2), 1u);
  EXPECT_EQ(synic_.PostMessage(2, 3, Payload(0, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  // Re-enabling gives an empty page, which takes the queued message at once.
  ASSERT_FALSE(synic_.WriteMsr(kMsrSimp, (kSimp + kPageSize) | 1).inject_gp);
  EXPECT_EQ(synic_.QueuedMessages(2), 0u);
  HvMessage m;
  std::memcpy(&m, ram_.data() + kSimp + kPageSize + 2 * kMessageSize,
              sizeof(m));
  EXPECT_EQ(m.message_type, 2u);
  EXPECT_THAT(injector_.Take(), ElementsAre(Injection{kVp, kVector, false}));
}

TEST_F(SynicTest, MaskedSintGetsTheMessageButNoInterrupt) {
  EnableLikeLinux(2, kSintMasked);
  ASSERT_TRUE(synic_.PostMessage(2, 7, Payload(0, 1)).ok());
  EXPECT_EQ(Slot(2).message_type, 7u);
  // TLFS: "If ... the SINTx is masked, the interrupt is lost."
  EXPECT_THAT(injector_.Take(), IsEmpty());
  ASSERT_FALSE(synic_.WriteMsr(kMsrSint0 + 2, kVector).inject_gp);
  EXPECT_THAT(injector_.Take(), IsEmpty());
}

TEST_F(SynicTest, EnablingTheSynicDeliversWhatWaits) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 2, Payload(0, 1)).ok());
  ASSERT_FALSE(synic_.WriteMsr(kMsrScontrol, 0).inject_gp);
  GuestConsume(2);  // EOM with the SynIC off moves nothing
  EXPECT_EQ(Slot(2).message_type, 0u);
  EXPECT_EQ(synic_.QueuedMessages(2), 1u);
  injector_.Take();
  ASSERT_FALSE(synic_.WriteMsr(kMsrScontrol, 1).inject_gp);
  EXPECT_EQ(Slot(2).message_type, 2u);
  EXPECT_EQ(injector_.Take().size(), 1u);
}

TEST_F(SynicTest, PollingSintNeverInterrupts) {
  EnableLikeLinux(2, kSintPolling);
  ASSERT_TRUE(synic_.PostMessage(2, 7, Payload(0, 1)).ok());
  ASSERT_TRUE(synic_.SignalEvent(2, 1).ok());
  EXPECT_EQ(Slot(2).message_type, 7u);
  EXPECT_THAT(injector_.Take(), IsEmpty());
}

TEST_F(SynicTest, AutoEoiIsPassedToTheInjector) {
  EnableLikeLinux(2, kSintAutoEoi);
  ASSERT_TRUE(synic_.PostMessage(2, 7, Payload(0, 1)).ok());
  EXPECT_THAT(injector_.Take(), ElementsAre(Injection{kVp, kVector, true}));
}

TEST_F(SynicTest, EventFlags) {
  EXPECT_EQ(synic_.SignalEvent(2, 5).code(),
            absl::StatusCode::kFailedPrecondition);
  EnableLikeLinux(2);
  ASSERT_FALSE(synic_.WriteMsr(kMsrSint15, 0x40).inject_gp);
  ASSERT_TRUE(synic_.SignalEvent(2, 5).ok());
  ASSERT_TRUE(synic_.SignalEvent(2, 64 + 3).ok());
  ASSERT_TRUE(synic_.SignalEvent(15, 2047).ok());
  uint8_t* flags = ram_.data() + kSiefp;
  EXPECT_EQ(flags[2 * 256 + 0], 1 << 5);
  EXPECT_EQ(flags[2 * 256 + 8], 1 << 3);
  EXPECT_EQ(flags[15 * 256 + 255], 0x80);  // the page's very last bit
  EXPECT_THAT(injector_.Take(), ElementsAre(Injection{kVp, kVector, false},
                                            Injection{kVp, kVector, false},
                                            Injection{kVp, 0x40, false}));
  // Already set: no second interrupt until the guest clears the bit.
  ASSERT_TRUE(synic_.SignalEvent(2, 5).ok());
  EXPECT_THAT(injector_.Take(), IsEmpty());
  flags[2 * 256] = 0;
  ASSERT_TRUE(synic_.SignalEvent(2, 5).ok());
  EXPECT_EQ(injector_.Take().size(), 1u);
  EXPECT_EQ(synic_.SignalEvent(2, 2048).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(synic_.SignalEvent(16, 0).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SynicTest, ResetForgetsEverything) {
  EnableLikeLinux(2);
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());
  ASSERT_TRUE(synic_.PostMessage(2, 1, Payload(0, 1)).ok());
  synic_.Reset();
  EXPECT_EQ(synic_.ReadMsr(kMsrScontrol).value, 0u);
  EXPECT_EQ(synic_.ReadMsr(kMsrSimp).value, 0u);
  EXPECT_EQ(synic_.ReadMsr(kMsrSint0 + 2).value, kSintResetValue);
  EXPECT_EQ(synic_.QueuedMessages(2), 0u);
}

}  // namespace
}  // namespace hvcore::hyperv
