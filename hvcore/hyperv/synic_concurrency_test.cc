// The SynIC's slot protocol under real concurrency: host threads post while
// a "guest" thread consumes the slot the way Linux does (clear message_type,
// full barrier, read the pending flag, EOM if set). Every message must arrive
// exactly once, each sender's messages in order, and nothing may get stuck.

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/synic.h"

namespace hvcore::hyperv {
namespace {

constexpr uint64_t kSimp = 0x1000;
constexpr uint32_t kSint = 2;
constexpr int kSenders = 4;
constexpr uint32_t kPerSender = 3000;

TEST(SynicConcurrencyTest, EveryMessageOnceAndInOrder) {
  ByteArrayGuestRam ram(0x4000);
  RecordingInjector injector;
  Synic synic(0, ram, injector, /*max_queued_per_sint=*/8);
  ASSERT_FALSE(synic.WriteMsr(kMsrSimp, kSimp | 1).inject_gp);
  ASSERT_FALSE(synic.WriteMsr(kMsrSint0 + kSint, 0x50).inject_gp);
  ASSERT_FALSE(synic.WriteMsr(kMsrScontrol, 1).inject_gp);

  std::vector<std::thread> senders;
  std::atomic<uint64_t> retries{0};
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (uint32_t seq = 0; seq < kPerSender; ++seq) {
        const uint32_t payload[2] = {static_cast<uint32_t>(s), seq};
        for (;;) {
          absl::Status st = synic.PostMessage(
              kSint, 1, {reinterpret_cast<const uint8_t*>(payload), 8});
          if (st.ok()) break;
          ASSERT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
          retries.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::yield();
        }
      }
    });
  }

  // The guest.
  auto* header = GuestWord(ram, kSimp + kSint * kMessageSize);
  ASSERT_NE(header, nullptr);
  const uint8_t* body = ram.data() + kSimp + kSint * kMessageSize + 16;
  std::vector<uint32_t> next(kSenders, 0);
  uint32_t received = 0, eoms = 0;
  while (received < kSenders * kPerSender) {
    const uint64_t word = header->load(std::memory_order_acquire);
    if (static_cast<uint32_t>(word) == kMessageTypeNone) {
      std::this_thread::yield();
      continue;
    }
    uint32_t payload[2];
    std::memcpy(payload, body, 8);
    ASSERT_LT(payload[0], static_cast<uint32_t>(kSenders));
    ASSERT_EQ(payload[1], next[payload[0]]) << "sender " << payload[0];
    ++next[payload[0]];
    ++received;
    // Linux's vmbus_signal_eom: message_type = NONE; mb(); if pending, EOM.
    // A 32-bit store into the low half of the header word.
    auto* type = reinterpret_cast<std::atomic<uint32_t>*>(header);
    type->store(kMessageTypeNone, std::memory_order_seq_cst);
    const uint64_t after = header->load(std::memory_order_seq_cst);
    if ((after >> 40) & kMessageFlagPending) {
      ++eoms;
      ASSERT_FALSE(synic.WriteMsr(kMsrEom, 0).inject_gp);
    }
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(synic.QueuedMessages(kSint), 0u);
  EXPECT_EQ(header->load() & 0xFFFFFFFF, kMessageTypeNone);
  EXPECT_GT(eoms, 0u);  // the queue was used
  std::printf("%u messages, %u EOMs, %lu sender retries\n", received, eoms,
              retries.load());
}

}  // namespace
}  // namespace hvcore::hyperv
