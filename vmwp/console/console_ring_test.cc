#include "vmwp/console/console_ring.h"

#include <gtest/gtest.h>

#include <thread>

#include "absl/time/clock.h"

namespace vmwp {
namespace {

TEST(ConsoleRingTest, ReadsBackWhatWasAppended) {
  ConsoleRing ring(64);
  ring.Append("hello ");
  ring.Append("world");
  ConsoleRing::Chunk c = ring.Read(0, 100);
  EXPECT_EQ(c.data, "hello world");
  EXPECT_EQ(c.offset, 0u);
  EXPECT_EQ(c.next_offset, 11u);
  EXPECT_FALSE(c.closed);
  EXPECT_EQ(ring.Read(6, 3).data, "wor");
  EXPECT_EQ(ring.end_offset(), 11u);
}

TEST(ConsoleRingTest, KeepsOnlyTheNewestBytesAndOffsetsKeepGrowing) {
  ConsoleRing ring(8);
  ring.Append("0123456789");
  EXPECT_EQ(ring.start_offset(), 2u);
  EXPECT_EQ(ring.end_offset(), 10u);
  ConsoleRing::Chunk c = ring.Read(0, 100);
  EXPECT_EQ(c.offset, 2u)
      << "a reader that fell behind learns where data resumes";
  EXPECT_EQ(c.data, "23456789");
  ring.Append("abc");
  EXPECT_EQ(ring.Read(0, 100).data, "56789abc");
  EXPECT_EQ(ring.Read(10, 100).data, "abc");
}

TEST(ConsoleRingTest, WrapsAcrossTheEndOfTheBuffer) {
  ConsoleRing ring(5);
  for (int i = 0; i < 7; ++i) ring.Append("xyz");
  EXPECT_EQ(ring.end_offset(), 21u);
  EXPECT_EQ(ring.Read(0, 100).data, "yzxyz");
}

TEST(ConsoleRingTest, HugeAppendKeepsTail) {
  ConsoleRing ring(4);
  ring.Append("ab");
  ring.Append("0123456789");
  EXPECT_EQ(ring.end_offset(), 12u);
  EXPECT_EQ(ring.Read(0, 100).data, "6789");
}

TEST(ConsoleRingTest, ReadBeyondEndIsEmpty) {
  ConsoleRing ring(8);
  ring.Append("ab");
  ConsoleRing::Chunk c = ring.Read(10, 5);
  EXPECT_EQ(c.data, "");
  EXPECT_EQ(c.next_offset, 2u);
}

TEST(ConsoleRingTest, WaitTimesOut) {
  ConsoleRing ring(8);
  const absl::Time start = absl::Now();
  ConsoleRing::Chunk c =
      ring.WaitAndRead(0, 10, absl::Now() + absl::Milliseconds(50));
  EXPECT_TRUE(c.data.empty());
  EXPECT_FALSE(c.closed);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
}

TEST(ConsoleRingTest, WaiterWakesOnAppend) {
  ConsoleRing ring(64);
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    ring.Append("late");
  });
  ConsoleRing::Chunk c = ring.WaitAndRead(0, 10, absl::InfiniteFuture());
  EXPECT_EQ(c.data, "late");
  writer.join();
}

TEST(ConsoleRingTest, WaiterWakesOnClose) {
  ConsoleRing ring(64);
  ring.Append("x");
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    ring.Close();
  });
  ConsoleRing::Chunk c = ring.WaitAndRead(1, 10, absl::InfiniteFuture());
  EXPECT_TRUE(c.data.empty());
  EXPECT_TRUE(c.closed);
  closer.join();
  ring.Append("dropped");
  EXPECT_EQ(ring.end_offset(), 1u);
}

TEST(ConsoleRingTest, ClosedOnlyOnceAllDataIsRead) {
  ConsoleRing ring(64);
  ring.Append("abcd");
  ring.Close();
  ConsoleRing::Chunk c = ring.Read(0, 2);
  EXPECT_FALSE(c.closed);
  c = ring.Read(c.next_offset, 2);
  EXPECT_EQ(c.data, "cd");
  EXPECT_TRUE(c.closed);
}

TEST(ConsoleRingTest, CancelWakesWaiter) {
  ConsoleRing ring(64);
  ConsoleRing::CancelToken cancel(&ring);
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(20));
    cancel.Cancel();
  });
  ConsoleRing::Chunk c =
      ring.WaitAndRead(0, 10, absl::InfiniteFuture(), &cancel);
  EXPECT_TRUE(c.data.empty());
  EXPECT_FALSE(c.closed);
  EXPECT_TRUE(cancel.cancelled());
  canceller.join();
}

}  // namespace
}  // namespace vmwp
