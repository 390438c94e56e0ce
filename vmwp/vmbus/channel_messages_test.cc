#include "vmwp/vmbus/channel_messages.h"

#include <cstring>

#include "gtest/gtest.h"
#include "vmwp/vmbus/gpadl.h"

namespace vmbus {
namespace {

template <typename T>
std::vector<uint8_t> Raw(const T& m) {
  return MessageBytes(m);
}

TEST(ChannelMessagesTest, ParsesEachGuestMessage) {
  auto ic = MakeMessage<InitiateContact>(kMsgInitiateContact);
  ic.vmbus_version_requested = kVersionWin10V5_3;
  ic.interrupt_page_or_sint = kVmbusMessageSint;
  auto parsed = ParseGuestMessage(Raw(ic));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(std::holds_alternative<InitiateContact>(*parsed));
  EXPECT_EQ(std::get<InitiateContact>(*parsed).vmbus_version_requested,
            kVersionWin10V5_3);

  auto open = MakeMessage<OpenChannel>(kMsgOpenChannel);
  open.child_relid = 7;
  open.downstream_ringbuffer_pageoffset = 4;
  parsed = ParseGuestMessage(Raw(open));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<OpenChannel>(*parsed).downstream_ringbuffer_pageoffset,
            4u);

  EXPECT_TRUE(
      ParseGuestMessage(Raw(MakeMessage<RequestOffers>(kMsgRequestOffers)))
          .ok());
  EXPECT_TRUE(ParseGuestMessage(Raw(MakeMessage<Unload>(kMsgUnload))).ok());
  EXPECT_TRUE(
      ParseGuestMessage(Raw(MakeMessage<CloseChannel>(kMsgCloseChannel))).ok());
  EXPECT_TRUE(
      ParseGuestMessage(Raw(MakeMessage<GpadlTeardown>(kMsgGpadlTeardown)))
          .ok());
}

TEST(ChannelMessagesTest, RejectsWrongSizes) {
  auto open = Raw(MakeMessage<OpenChannel>(kMsgOpenChannel));
  open.pop_back();
  EXPECT_FALSE(ParseGuestMessage(open).ok());
  open.resize(sizeof(OpenChannel) + 8);
  EXPECT_FALSE(ParseGuestMessage(open).ok());
  auto ic = Raw(MakeMessage<InitiateContact>(kMsgInitiateContact));
  ic.resize(32);
  EXPECT_FALSE(ParseGuestMessage(ic).ok());
  std::vector<uint8_t> tiny = {14, 0, 0};
  EXPECT_FALSE(ParseGuestMessage(tiny).ok());
  std::vector<uint8_t> huge(241, 0);
  huge[0] = kMsgUnload;
  EXPECT_FALSE(ParseGuestMessage(huge).ok());
  auto unload = Raw(MakeMessage<Unload>(kMsgUnload));
  unload.resize(12);
  EXPECT_FALSE(ParseGuestMessage(unload).ok());
}

TEST(ChannelMessagesTest, RejectsUnknownAndHostToGuestTypes) {
  for (uint32_t type : {0u, 18u, 19u, 20u, 25u, 1000u, 0xFFFFFFFFu}) {
    std::vector<uint8_t> m(16, 0);
    std::memcpy(m.data(), &type, 4);
    auto r = ParseGuestMessage(m);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << type;
  }
  for (uint32_t type :
       {kMsgOfferChannel, kMsgVersionResponse, kMsgGpadlCreated,
        kMsgOpenChannelResult, kMsgUnloadResponse, kMsgAllOffersDelivered}) {
    std::vector<uint8_t> m(196, 0);
    std::memcpy(m.data(), &type, 4);
    auto r = ParseGuestMessage(m);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("host-to-guest"), std::string::npos);
  }
}

// GPADL_HEADER as Linux's create_gpadl_header builds it: one range, up to 26
// PFNs in the header, the rest in bodies of up to 28.
std::vector<uint8_t> GpadlHeaderBytes(uint32_t relid, uint32_t handle,
                                      uint32_t byte_count, uint32_t offset,
                                      const std::vector<uint64_t>& pfns,
                                      size_t in_header) {
  GpadlHeader h{};
  h.header.msgtype = kMsgGpadlHeader;
  h.child_relid = relid;
  h.gpadl = handle;
  h.range_buflen = static_cast<uint16_t>(8 + pfns.size() * 8);
  h.rangecount = 1;
  std::vector<uint8_t> out(sizeof(h) + 8 + in_header * 8);
  std::memcpy(out.data(), &h, sizeof(h));
  GpaRangeHeader r{byte_count, offset};
  std::memcpy(out.data() + sizeof(h), &r, 8);
  std::memcpy(out.data() + sizeof(h) + 8, pfns.data(), in_header * 8);
  return out;
}

TEST(GpadlTest, AssemblesHeaderAndBodies) {
  FlatGuestPages memory(100);
  std::vector<uint64_t> pfns;
  for (uint64_t i = 0; i < 60; ++i) pfns.push_back(10 + i);
  auto header =
      ParseGuestMessage(GpadlHeaderBytes(3, 0xE1E10, 60 * 4096, 0, pfns, 26));
  ASSERT_TRUE(header.ok()) << header.status();
  GpadlAssembler a(std::get<GpadlHeaderMessage>(*header));
  EXPECT_FALSE(a.complete());
  for (size_t done = 26; done < pfns.size();) {
    size_t n = std::min<size_t>(28, pfns.size() - done);
    GpadlBody b{};
    b.header.msgtype = kMsgGpadlBody;
    b.gpadl = 0xE1E10;
    std::vector<uint8_t> m(sizeof(b) + n * 8);
    std::memcpy(m.data(), &b, sizeof(b));
    std::memcpy(m.data() + sizeof(b), pfns.data() + done, n * 8);
    auto body = ParseGuestMessage(m);
    ASSERT_TRUE(body.ok()) << body.status();
    ASSERT_TRUE(a.AddBody(std::get<GpadlBodyMessage>(*body)).ok());
    done += n;
  }
  ASSERT_TRUE(a.complete());
  auto gpadl = a.Finish(memory);
  ASSERT_TRUE(gpadl.ok()) << gpadl.status();
  ASSERT_EQ(gpadl->ranges.size(), 1u);
  EXPECT_EQ(gpadl->ranges[0].pfns, pfns);
  EXPECT_EQ(gpadl->child_relid, 3u);
}

absl::Status FinishOne(const std::vector<uint8_t>& header_bytes,
                       GuestPages& memory) {
  auto header = ParseGuestMessage(header_bytes);
  if (!header.ok()) return header.status();
  GpadlAssembler a(std::get<GpadlHeaderMessage>(*header));
  return a.Finish(memory).status();
}

TEST(GpadlTest, RejectsHostileRanges) {
  FlatGuestPages memory(16);
  // Outside RAM.
  EXPECT_EQ(
      FinishOne(GpadlHeaderBytes(1, 1, 8192, 0, {3, 400}, 2), memory).code(),
      absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(
      FinishOne(GpadlHeaderBytes(1, 1, 8192, 0, {3, ~0ull}, 2), memory).ok());
  // Overlapping: a page named twice.
  EXPECT_FALSE(
      FinishOne(GpadlHeaderBytes(1, 1, 3 * 4096, 0, {3, 4, 3}, 3), memory)
          .ok());
  // Byte count needs more PFNs than given / fewer than given.
  EXPECT_FALSE(
      FinishOne(GpadlHeaderBytes(1, 1, 3 * 4096, 0, {3, 4}, 2), memory).ok());
  EXPECT_FALSE(
      FinishOne(GpadlHeaderBytes(1, 1, 4096, 0, {3, 4}, 2), memory).ok());
  // Offset inside the first page only; zero bytes.
  EXPECT_FALSE(
      FinishOne(GpadlHeaderBytes(1, 1, 10, 4096, {3, 4}, 2), memory).ok());
  EXPECT_FALSE(FinishOne(GpadlHeaderBytes(1, 1, 0, 0, {3}, 1), memory).ok());
  // An offset that pushes the range onto a second page needs two PFNs.
  EXPECT_TRUE(
      FinishOne(GpadlHeaderBytes(1, 1, 4096, 8, {3, 4}, 2), memory).ok());
  // Zero ranges.
  auto bytes = GpadlHeaderBytes(1, 1, 4096, 0, {3}, 1);
  bytes[18] = 0;
  EXPECT_FALSE(FinishOne(bytes, memory).ok());
  // Header claims more range bytes than it carries and no body came.
  EXPECT_EQ(
      FinishOne(GpadlHeaderBytes(1, 1, 8192, 0, {3, 4}, 1), memory).code(),
      absl::StatusCode::kFailedPrecondition);
  // More bytes in the header than range_buflen.
  bytes = GpadlHeaderBytes(1, 1, 4096, 0, {3}, 1);
  bytes[16] = 8;
  EXPECT_FALSE(ParseGuestMessage(bytes).ok());
}

TEST(GpadlTest, BodyPastRangeBuflenIsRejected) {
  auto header = ParseGuestMessage(GpadlHeaderBytes(1, 9, 8192, 0, {3, 4}, 1));
  GpadlAssembler a(std::get<GpadlHeaderMessage>(*header));
  GpadlBodyMessage body;
  body.fixed.gpadl = 9;
  body.pfns = {4, 5};
  EXPECT_FALSE(a.AddBody(body).ok());
  body.pfns = {4};
  EXPECT_TRUE(a.AddBody(body).ok());
  EXPECT_TRUE(a.complete());
}

TEST(GuidTest, FormatsLikeLinux) {
  // HV_HEART_BEAT_GUID {57164f39-9115-4e78-ab55-382f3bd5422d}
  Guid g = Guid::FromFields(0x57164f39, 0x9115, 0x4e78,
                            {0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d});
  EXPECT_EQ(g.ToString(), "57164f39-9115-4e78-ab55-382f3bd5422d");
  EXPECT_EQ(g.bytes[0], 0x39);
}

}  // namespace
}  // namespace vmbus
