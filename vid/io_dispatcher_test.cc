#include "vid/io_dispatcher.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vid {
namespace {

using ::testing::HasSubstr;

class RecordingPort : public PortIoHandler {
 public:
  uint32_t PortRead(uint16_t port, uint8_t size) override {
    reads.push_back(port);
    return 0x40 + (port & 0xF);
  }
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override {
    writes.push_back({port, value});
  }
  std::vector<uint16_t> reads;
  std::vector<std::pair<uint16_t, uint32_t>> writes;
};

class RecordingMmio : public MmioHandler {
 public:
  void MmioRead(uint64_t gpa, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<uint8_t>(i + 1);
    last_gpa = gpa;
  }
  void MmioWrite(uint64_t gpa, std::span<const uint8_t> data) override {
    last_gpa = gpa;
    last_write.assign(data.begin(), data.end());
  }
  uint64_t last_gpa = 0;
  std::vector<uint8_t> last_write;
};

TEST(IoDispatcherTest, RoutesPortsToTheirHandler) {
  IoDispatcher io;
  RecordingPort com1, com2;
  ASSERT_TRUE(io.RegisterPortIo("com1", 0x3F8, 8, &com1).ok());
  ASSERT_TRUE(io.RegisterPortIo("com2", 0x2F8, 8, &com2).ok());
  io.PortWrite(0x3F8, 1, 'x');
  io.PortWrite(0x2FF, 1, 'y');
  EXPECT_EQ(io.PortRead(0x3FD, 1), 0x4Du);
  ASSERT_EQ(com1.writes.size(), 1u);
  EXPECT_EQ(com1.writes[0], std::make_pair(uint16_t{0x3F8}, uint32_t{'x'}));
  ASSERT_EQ(com2.writes.size(), 1u);
  EXPECT_EQ(com2.writes[0].first, 0x2FF);
  EXPECT_EQ(com1.reads, std::vector<uint16_t>{0x3FD});
}

TEST(IoDispatcherTest, RejectsOverlappingRanges) {
  IoDispatcher io;
  RecordingPort a, b;
  ASSERT_TRUE(io.RegisterPortIo("com1", 0x3F8, 8, &a).ok());
  absl::Status s = io.RegisterPortIo("other", 0x3FF, 2, &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(s.message()), HasSubstr("overlaps 'com1'"));
  EXPECT_FALSE(io.RegisterPortIo("inside", 0x3FA, 1, &b).ok());
  EXPECT_FALSE(io.RegisterPortIo("covering", 0x300, 0x200, &b).ok());
  EXPECT_TRUE(io.RegisterPortIo("below", 0x3F0, 8, &b).ok())
      << "adjacent is fine";
  EXPECT_TRUE(io.RegisterPortIo("above", 0x400, 8, &b).ok())
      << "adjacent is fine";

  RecordingMmio m1, m2;
  ASSERT_TRUE(io.RegisterMmio("ioapic", 0xFEC00000, 0x1000, &m1).ok());
  EXPECT_EQ(io.RegisterMmio("x", 0xFEBFF000, 0x1001, &m2).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(io.RegisterMmio("y", 0xFEC01000, 0x1000, &m2).ok());
}

TEST(IoDispatcherTest, RejectsBadRanges) {
  IoDispatcher io;
  RecordingPort a;
  RecordingMmio m;
  EXPECT_EQ(io.RegisterPortIo("empty", 0x10, 0, &a).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(io.RegisterPortIo("wraps", 0xFFFF, 2, &a).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(io.RegisterPortIo("last", 0xFFFF, 1, &a).ok());
  EXPECT_EQ(io.RegisterPortIo("null", 0x20, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(io.RegisterMmio("wraps", ~0ull - 10, 100, &m).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IoDispatcherTest, UnregisterFreesTheRange) {
  IoDispatcher io;
  RecordingPort a;
  ASSERT_TRUE(io.RegisterPortIo("a", 0x60, 1, &a).ok());
  EXPECT_TRUE(io.UnregisterPortIo(0x60).ok());
  EXPECT_EQ(io.UnregisterPortIo(0x60).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(io.PortRead(0x60, 1), 0xFFu);
  EXPECT_TRUE(a.reads.empty());
}

TEST(IoDispatcherTest, MmioDispatch) {
  IoDispatcher io;
  RecordingMmio m;
  ASSERT_TRUE(io.RegisterMmio("dev", 0xD0000000, 0x1000, &m).ok());
  uint8_t buf[4] = {};
  io.MmioRead(0xD0000010, buf);
  EXPECT_EQ(m.last_gpa, 0xD0000010u);
  EXPECT_EQ(buf[3], 4);
  const uint8_t w[2] = {9, 8};
  io.MmioWrite(0xD0000FFE, w);
  EXPECT_EQ(m.last_write, std::vector<uint8_t>({9, 8}));
}

TEST(IoDispatcherTest, UnhandledReadsAreAllOnesAndCounted) {
  IoDispatcher io;
  EXPECT_EQ(io.PortRead(0x6F0, 1), 0xFFu);
  EXPECT_EQ(io.PortRead(0x6F0, 2), 0xFFFFu);
  EXPECT_EQ(io.PortRead(0x6F0, 4), 0xFFFFFFFFu);
  io.PortWrite(0x6F0, 1, 0);
  uint8_t buf[8] = {};
  io.MmioRead(0xE0000000, buf);
  for (uint8_t b : buf) EXPECT_EQ(b, 0xFF);
  io.MmioWrite(0xE0000000, buf);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kPortRead), 3u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kPortWrite), 1u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kMmioRead), 1u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kMmioWrite), 1u);
}

TEST(IoDispatcherTest, ManyUnhandledAccessesDoNotFloodTheLog) {
  // Not an assertion on log output (spdlog goes to stderr), but exercises the
  // rate limiter's summary path under load; the test log shows 16 lines plus
  // one summary.
  IoDispatcher io;
  for (int i = 0; i < 100000; ++i) io.PortWrite(0x6F0, 1, i);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kPortWrite), 100000u);
}

}  // namespace
}  // namespace vid
