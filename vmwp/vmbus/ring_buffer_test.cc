#include "vmwp/vmbus/ring_buffer.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "vid/guest_memory.h"
#include "vmwp/vmbus/test_guest_ring.h"
#include "vmwp/vmbus/vid_guest_pages.h"

namespace vmbus {
namespace {

using testing::GuestRing;

// The value of an ok StatusOr (a failed expectation otherwise).
template <typename T>
T Val(absl::StatusOr<T> s) {
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : T{};
}

// A ring of `data_pages` data pages at guest page 0 of flat guest memory.
struct Fixture {
  explicit Fixture(uint32_t data_pages)
      : memory(data_pages + 1),
        guest(memory.base(), memory.base() + kPageSize,
              data_pages * kPageSize) {
    guest.Init();
  }
  RingPages Pages() {
    std::vector<uint64_t> pfns(memory.pages());
    std::iota(pfns.begin(), pfns.end(), 0);
    return *RingPages::FromPfns(memory, pfns);
  }
  FlatGuestPages memory;
  GuestRing guest;
};

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(RingBufferTest, ReadsWhatTheGuestWrote) {
  Fixture f(1);
  auto reader = RingReader::Create(f.Pages());
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto a = Bytes(13, 1), b = Bytes(64, 2);
  EXPECT_EQ(f.guest.Write(kPacketDataInband, 1, 42, a), true);  // was empty
  EXPECT_EQ(f.guest.Write(kPacketCompletion, 0, 43, b), false);
  Packet p;
  ASSERT_EQ(Val(reader->Next(&p)), true);
  EXPECT_EQ(p.type, kPacketDataInband);
  EXPECT_EQ(p.flags, 1);
  EXPECT_EQ(p.trans_id, 42u);
  // Payload is padded to 8 bytes on the wire.
  ASSERT_EQ(p.data().size(), 16u);
  EXPECT_EQ(0, std::memcmp(p.data().data(), a.data(), a.size()));
  ASSERT_EQ(Val(reader->Next(&p)), true);
  EXPECT_EQ(p.trans_id, 43u);
  EXPECT_EQ(std::vector<uint8_t>(p.data().begin(), p.data().end()), b);
  EXPECT_EQ(Val(reader->Next(&p)), false);
  EXPECT_EQ(f.guest.header()->read_index, 0u);  // not yet published
  ASSERT_TRUE(reader->Commit().ok());
  EXPECT_EQ(f.guest.header()->read_index, f.guest.header()->write_index);
}

TEST(RingBufferTest, WrapsAroundBothWays) {
  Fixture f(1);
  auto reader = RingReader::Create(f.Pages());
  ASSERT_TRUE(reader.ok());
  // Odd sizes so that descriptors, payloads and trailers all straddle the end.
  for (int i = 0; i < 500; ++i) {
    auto payload = Bytes(1 + (i * 37) % 900, static_cast<uint8_t>(i));
    ASSERT_TRUE(f.guest.Write(kPacketDataInband, 0, i, payload).has_value());
    Packet p;
    ASSERT_EQ(Val(reader->Next(&p)), true) << i;
    ASSERT_EQ(p.trans_id, static_cast<uint64_t>(i));
    ASSERT_EQ(0, std::memcmp(p.data().data(), payload.data(), payload.size()));
    ASSERT_TRUE(reader->Commit().ok());
  }
  // And host -> guest over the same ring memory, now with the guest reading.
  Fixture g(1);
  auto writer = RingWriter::Create(g.Pages());
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 500; ++i) {
    auto payload = Bytes(1 + (i * 53) % 1000, static_cast<uint8_t>(i));
    auto r = writer->Write(kPacketDataInband, 0, i, payload);
    ASSERT_TRUE(r.ok() && r->written) << i;
    auto p = g.guest.Read();
    ASSERT_TRUE(p.has_value());
    ASSERT_EQ(p->trans_id, static_cast<uint64_t>(i));
    ASSERT_EQ(0, std::memcmp(p->data.data(), payload.data(), payload.size()));
  }
}

TEST(RingBufferTest, WriterSignalsOnlyWhenRingWasEmptyAndUnmasked) {
  Fixture f(2);
  auto writer = RingWriter::Create(f.Pages());
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ(f.guest.header()->feature_bits & kRingFeatPendingSendSz, 1u);
  auto r = writer->Write(kPacketDataInband, 0, 1, Bytes(8, 0));
  EXPECT_TRUE(r->written && r->signal_guest);
  r = writer->Write(kPacketDataInband, 0, 2, Bytes(8, 0));
  EXPECT_TRUE(r->written && !r->signal_guest);  // not empty before
  f.guest.Read();
  f.guest.Read();
  f.guest.header()->interrupt_mask = 1;  // guest is draining
  r = writer->Write(kPacketDataInband, 0, 3, Bytes(8, 0));
  EXPECT_TRUE(r->written && !r->signal_guest);
}

TEST(RingBufferTest, FullRingSetsPendingSendSizeAndNeverFillsCompletely) {
  Fixture f(1);
  auto writer = RingWriter::Create(f.Pages());
  ASSERT_TRUE(writer.ok());
  int written = 0;
  for (;; ++written) {
    auto r = writer->Write(kPacketDataInband, 0, written, Bytes(100, 0));
    ASSERT_TRUE(r.ok());
    if (!r->written) break;
  }
  // 100 + 16 -> 120 bytes, + 8 trailer = 128; 4096 / 128 = 32 but a ring is
  // never filled completely: 31 fit.
  EXPECT_EQ(written, 31);
  EXPECT_EQ(f.guest.header()->pending_send_sz, 128u);
  EXPECT_GT(f.guest.BytesToWrite(), 0u);
  f.guest.Read();
  auto r = writer->Write(kPacketDataInband, 0, 99, Bytes(100, 0));
  EXPECT_TRUE(r->written);
  EXPECT_EQ(f.guest.header()->pending_send_sz, 0u);
}

TEST(RingBufferTest, ReaderSignalsWhenPendingSendSizeBecomesAvailable) {
  Fixture f(1);
  auto reader = RingReader::Create(f.Pages());
  ASSERT_TRUE(reader.ok());
  while (f.guest.Write(kPacketDataInband, 0, 0, Bytes(200, 0)).has_value()) {
  }
  // The blocked guest announces that it needs 1000 bytes.
  f.guest.header()->pending_send_sz = 1000;
  Packet p;
  int signals = 0;
  while (*reader->Next(&p)) {
    auto s = reader->Commit();
    ASSERT_TRUE(s.ok());
    signals += *s;
    if (*s) {
      EXPECT_GT(f.guest.BytesToWrite(), 1000u);
    }
  }
  EXPECT_EQ(signals, 1);  // exactly when the free space crossed 1000
  f.guest.header()->feature_bits = 0;  // a guest that polls instead
  f.guest.Write(kPacketDataInband, 0, 0, Bytes(200, 0));
  ASSERT_TRUE(*reader->Next(&p));
  EXPECT_EQ(Val(reader->Commit()), false);
}

TEST(RingBufferTest, DrainProtocolReportsLateArrivals) {
  Fixture f(1);
  auto reader = RingReader::Create(f.Pages());
  reader->BeginDrain();
  EXPECT_EQ(f.guest.header()->interrupt_mask, 1u);
  EXPECT_EQ(f.guest.Write(kPacketDataInband, 0, 0, Bytes(8, 0)), false);
  EXPECT_EQ(Val(reader->EndDrain()), true);
  EXPECT_EQ(f.guest.header()->interrupt_mask, 0u);
}

// --- malformed rings: every case is an error, then the reader stays broken.

struct Malformed {
  const char* name;
  PacketDescriptor desc;
  size_t extra_bytes;  // written after the descriptor
};

class MalformedTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedTest, BreaksTheReader) {
  Fixture f(1);
  auto reader = RingReader::Create(f.Pages(), /*max_packet_size=*/1024);
  ASSERT_TRUE(reader.ok());
  std::vector<uint8_t> raw(sizeof(PacketDescriptor) + GetParam().extra_bytes);
  std::memcpy(raw.data(), &GetParam().desc, sizeof(PacketDescriptor));
  f.guest.WriteRaw(raw);
  Packet p;
  auto r = reader->Next(&p);
  ASSERT_FALSE(r.ok()) << GetParam().name;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  // Even after the guest "fixes" the ring, the channel stays broken.
  f.guest.header()->write_index = 0;
  EXPECT_EQ(reader->Next(&p).status(), r.status());
  EXPECT_EQ(reader->Commit().status(), r.status());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedTest,
    ::testing::Values(
        Malformed{"zero length", {kPacketDataInband, 2, 0, 0, 0}, 8},
        Malformed{"len8 below descriptor", {kPacketDataInband, 2, 1, 0, 0}, 8},
        Malformed{
            "offset8 below descriptor", {kPacketDataInband, 1, 3, 0, 0}, 16},
        Malformed{"offset8 past len8", {kPacketDataInband, 4, 3, 0, 0}, 16},
        Malformed{"oversized", {kPacketDataInband, 2, 200, 0, 0}, 2000},
        Malformed{"crosses write index", {kPacketDataInband, 2, 10, 0, 0}, 16},
        Malformed{"invalid type", {0, 2, 2, 0, 0}, 8},
        Malformed{"unknown type", {0x77, 2, 2, 0, 0}, 8},
        Malformed{"huge len8", {kPacketDataInband, 2, 0xffff, 0, 0}, 8},
        Malformed{
            "descriptor only, no trailer", {kPacketDataInband, 2, 2, 0, 0}, 0}),
    [](const auto& info) {
      std::string s = info.param.name;
      for (char& c : s) c = isalnum(c) ? c : '_';
      return s;
    });

TEST(RingBufferTest, IndicesOutsideTheRingAreErrors) {
  Fixture f(1);
  f.guest.header()->read_index = 4096;
  EXPECT_FALSE(RingReader::Create(f.Pages()).ok());
  f.guest.header()->read_index = 0;
  f.guest.header()->write_index = 0x10000000;
  EXPECT_FALSE(RingWriter::Create(f.Pages()).ok());
  f.guest.header()->write_index = 0;

  auto reader = RingReader::Create(f.Pages());
  ASSERT_TRUE(reader.ok());
  f.guest.header()->write_index = 0xFFFFFFF8;
  Packet p;
  EXPECT_EQ(reader->Next(&p).status().code(), absl::StatusCode::kDataLoss);

  Fixture g(1);
  auto reader2 = RingReader::Create(g.Pages());
  g.guest.header()->write_index = 12;  // not 8-byte aligned
  EXPECT_FALSE(reader2->Next(&p).ok());

  Fixture h(1);
  auto writer = RingWriter::Create(h.Pages());
  ASSERT_TRUE(writer.ok());
  h.guest.header()->read_index = 8192;  // hostile guest reader
  auto r = writer->Write(kPacketDataInband, 0, 0, Bytes(8, 0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  h.guest.header()->read_index = 0;
  EXPECT_FALSE(writer->Write(kPacketDataInband, 0, 0, Bytes(8, 0)).ok());
}

TEST(RingBufferTest, WriterRejectsPacketsThatCanNeverFit) {
  Fixture f(1);
  auto writer = RingWriter::Create(f.Pages());
  std::vector<uint8_t> big(writer->max_payload() + 1);
  EXPECT_EQ(writer->Write(kPacketDataInband, 0, 0, big).status().code(),
            absl::StatusCode::kInvalidArgument);
  big.resize(writer->max_payload());
  auto r = writer->Write(kPacketDataInband, 0, 0, big);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->written);
}

TEST(RingBufferTest, ScatteredPagesRoundTrip) {
  // Data pages in reverse guest-physical order: the slow, page-wise path.
  FlatGuestPages memory(6);
  std::vector<uint64_t> pfns = {0, 5, 4, 3, 2, 1};
  GuestRing(memory.base(), memory.base() + kPageSize, 5 * kPageSize).Init();
  auto pages = RingPages::FromPfns(memory, pfns);
  ASSERT_TRUE(pages.ok());
  auto writer = RingWriter::Create(*pages);
  auto reader = RingReader::Create(*pages);
  ASSERT_TRUE(writer.ok() && reader.ok());
  for (int i = 0; i < 300; ++i) {
    auto payload = Bytes(1 + (i * 331) % 6000, static_cast<uint8_t>(i));
    auto r = writer->Write(kPacketDataInband, 0, i, payload);
    ASSERT_TRUE(r.ok() && r->written) << i;
    Packet p;
    ASSERT_EQ(Val(reader->Next(&p)), true);
    ASSERT_EQ(0, std::memcmp(p.data().data(), payload.data(), payload.size()));
    ASSERT_TRUE(reader->Commit().ok());
  }
}

TEST(RingBufferTest, PagesMustBeGuestRam) {
  auto memory = vid::GuestMemory::Create(4 << 20);
  ASSERT_TRUE(memory.ok());
  VidGuestPages pages(**memory);
  std::vector<uint64_t> inside = {10, 11, 12};
  EXPECT_TRUE(RingPages::FromPfns(pages, inside).ok());
  std::vector<uint64_t> outside = {10, 11, 1024};  // 4 MiB: just past RAM
  EXPECT_EQ(RingPages::FromPfns(pages, outside).status().code(),
            absl::StatusCode::kOutOfRange);
  std::vector<uint64_t> absurd = {10, ~0ull};
  EXPECT_FALSE(RingPages::FromPfns(pages, absurd).ok());
  std::vector<uint64_t> one = {10};
  EXPECT_FALSE(RingPages::FromPfns(pages, one).ok());
}

}  // namespace
}  // namespace vmbus
