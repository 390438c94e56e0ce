// The ring's signalling decisions under real concurrency: a writer thread and
// a reader thread that sleep until the other side signals, exactly as the
// guest and the host do. A wrong decision (a lost wakeup) shows up as a
// stalled transfer; a wrong copy as a corrupted packet.

#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "vmwp/vmbus/ring_buffer.h"

namespace vmbus {
namespace {

// A counting "interrupt": Signal() from one thread, Wait() in another.
class Doorbell {
 public:
  void Signal() {
    absl::MutexLock lock(&mu_);
    ++pending_;
  }
  // False if nothing arrived within `timeout` (a lost wakeup).
  bool Wait(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pending_ > 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
    pending_ = 0;
    return true;
  }

 private:
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(RingSignalTest, NoLostWakeupsBetweenAWriterAndAReader) {
  FlatGuestPages memory(3);  // 2 data pages: the ring fills up constantly
  std::vector<uint64_t> pfns(3);
  std::iota(pfns.begin(), pfns.end(), 0);
  auto pages = RingPages::FromPfns(memory, pfns);
  ASSERT_TRUE(pages.ok());
  auto writer = RingWriter::Create(*pages);
  auto reader = RingReader::Create(*pages);
  ASSERT_TRUE(writer.ok() && reader.ok());

  constexpr uint64_t kPackets = 100000;
  Doorbell to_reader, to_writer;
  std::atomic<bool> stalled{false};
  std::atomic<uint64_t> received{0};
  const absl::Duration kStall = absl::Seconds(10);

  std::thread reading([&] {
    Packet p;
    uint64_t expect = 0;
    while (expect < kPackets && !stalled) {
      if (!to_reader.Wait(kStall)) {
        stalled = true;
        break;
      }
      for (;;) {
        reader->BeginDrain();
        for (;;) {
          auto got = reader->Next(&p);
          ASSERT_TRUE(got.ok()) << got.status();
          if (!*got) break;
          ASSERT_EQ(p.trans_id, expect);
          const size_t n = 1 + expect % 700;
          ASSERT_GE(p.data().size(), n);
          ASSERT_EQ(p.data()[n - 1], static_cast<uint8_t>(expect));
          ++expect;
        }
        auto signal = reader->Commit();
        ASSERT_TRUE(signal.ok());
        if (*signal) to_writer.Signal();
        auto more = reader->EndDrain();
        ASSERT_TRUE(more.ok());
        if (!*more) break;
      }
      received = expect;
    }
  });

  std::vector<uint8_t> payload(700);
  for (uint64_t i = 0; i < kPackets && !stalled; ++i) {
    const size_t n = 1 + i % 700;
    std::fill(payload.begin(), payload.begin() + n, static_cast<uint8_t>(i));
    for (;;) {
      auto r = writer->Write(kPacketDataInband, 0, i,
                             std::span<const uint8_t>(payload.data(), n));
      ASSERT_TRUE(r.ok()) << r.status();
      if (r->written) {
        if (r->signal_guest) to_reader.Signal();
        break;
      }
      // Full: pending_send_sz is posted; the reader must wake us.
      if (!to_writer.Wait(kStall)) {
        stalled = true;
        break;
      }
    }
  }
  reading.join();
  EXPECT_FALSE(stalled) << "a signal was lost after " << received.load()
                        << " packets";
  EXPECT_EQ(received.load(), kPackets);
}

}  // namespace
}  // namespace vmbus
