#ifndef HVSTACK_VMWP_VMBUS_TEST_FAKE_GUEST_H_
#define HVSTACK_VMWP_VMBUS_TEST_FAKE_GUEST_H_

// A guest-side VMBus protocol peer for tests, built from the same public
// layouts as Linux's hv_vmbus: it is the SynIC's message and event sink for
// the server (SynicPort), posts channel messages the way vmbus_post_msg does,
// lays out GPADLs (create_gpadl_header) and rings (vmbus_open) in its RAM.

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_guest_ring.h"

namespace vmbus::testing {

inline constexpr uint64_t kFakeGuestRamPages = 512;

struct Posted {
  uint32_t vp;
  uint8_t sint;
  std::vector<uint8_t> bytes;
  uint32_t type() const {
    uint32_t t;
    std::memcpy(&t, bytes.data(), 4);
    return t;
  }
};

// The guest side of the protocol, built from the same public layouts as
// Linux's hv_vmbus: it posts channel messages, reads the host's replies from
// "its SINT", lays out GPADLs and rings in its RAM.
class FakeGuest : public SynicPort {
 public:
  explicit FakeGuest(uint64_t ram_pages = kFakeGuestRamPages)
      : memory(ram_pages) {}

  absl::Status PostMessage(uint32_t vp, uint8_t sint, uint32_t type,
                           std::span<const uint8_t> payload) override {
    EXPECT_EQ(type, kVmbusMessageType);
    EXPECT_LE(payload.size(), kMaxMessageSize);
    inbox.push_back({vp, sint, {payload.begin(), payload.end()}});
    return absl::OkStatus();
  }
  absl::Status SignalEvent(uint32_t vp, uint8_t sint, uint32_t flag) override {
    signals.push_back({vp, flag});
    return absl::OkStatus();
  }

  template <typename T>
  HvStatus Send(const T& m, uint32_t connection_id = kMessageConnectionId) {
    return server->OnPostMessage(0, connection_id, kVmbusMessageType,
                                 MessageBytes(m));
  }
  template <typename T>
  T Expect(MessageType type) {
    T out{};
    EXPECT_FALSE(inbox.empty()) << "expected " << MessageTypeName(type);
    if (inbox.empty()) return out;
    Posted p = inbox.front();
    inbox.pop_front();
    EXPECT_EQ(p.type(), type) << MessageTypeName(p.type());
    EXPECT_GE(p.bytes.size(), sizeof(T));
    std::memcpy(&out, p.bytes.data(), std::min(sizeof(T), p.bytes.size()));
    last_vp = p.vp;
    last_sint = p.sint;
    return out;
  }

  VersionResponse Connect(uint32_t version, uint32_t vcpu = 0) {
    auto m = MakeMessage<InitiateContact>(kMsgInitiateContact);
    m.vmbus_version_requested = version;
    m.target_vcpu = vcpu;
    // As Linux: from V5 the SINT travels in the old interrupt-page field.
    m.interrupt_page_or_sint =
        version >= kVersionWin10V5 ? kVmbusMessageSint : 200 * kPageSize;
    EXPECT_EQ(Send(m, version >= kVersionWin10V5 ? kMessageConnectionId4
                                                 : kMessageConnectionId),
              HvStatus::kSuccess);
    return Expect<VersionResponse>(kMsgVersionResponse);
  }

  std::vector<OfferChannel> RequestOffers() {
    Send(MakeMessage<vmbus::RequestOffers>(kMsgRequestOffers));
    std::vector<OfferChannel> offers;
    while (!inbox.empty() && inbox.front().type() == kMsgOfferChannel) {
      offers.push_back(Expect<OfferChannel>(kMsgOfferChannel));
    }
    Expect<AllOffersDelivered>(kMsgAllOffersDelivered);
    return offers;
  }

  // Linux's create_gpadl_header: 26 PFNs in the header, 28 per body.
  void SendGpadl(uint32_t relid, uint32_t handle,
                 const std::vector<uint64_t>& pfns) {
    size_t in_header = std::min<size_t>(26, pfns.size());
    GpadlHeader h{};
    h.header.msgtype = kMsgGpadlHeader;
    h.child_relid = relid;
    h.gpadl = handle;
    h.range_buflen = static_cast<uint16_t>(8 + pfns.size() * 8);
    h.rangecount = 1;
    std::vector<uint8_t> m(sizeof(h) + 8 + in_header * 8);
    std::memcpy(m.data(), &h, sizeof(h));
    GpaRangeHeader r{static_cast<uint32_t>(pfns.size() * kPageSize), 0};
    std::memcpy(m.data() + sizeof(h), &r, 8);
    std::memcpy(m.data() + sizeof(h) + 8, pfns.data(), in_header * 8);
    server->OnPostMessage(0, kMessageConnectionId, kVmbusMessageType, m);
    for (size_t done = in_header; done < pfns.size();) {
      size_t n = std::min<size_t>(28, pfns.size() - done);
      GpadlBody b{};
      b.header.msgtype = kMsgGpadlBody;
      b.gpadl = handle;
      std::vector<uint8_t> body(sizeof(b) + n * 8);
      std::memcpy(body.data(), &b, sizeof(b));
      std::memcpy(body.data() + sizeof(b), pfns.data() + done, n * 8);
      server->OnPostMessage(0, kMessageConnectionId, kVmbusMessageType, body);
      done += n;
    }
  }
  GpadlCreated CreateGpadl(uint32_t relid, uint32_t handle,
                           const std::vector<uint64_t>& pfns) {
    SendGpadl(relid, handle, pfns);
    return Expect<GpadlCreated>(kMsgGpadlCreated);
  }

  static std::vector<uint64_t> Pages(uint64_t first, uint64_t count) {
    std::vector<uint64_t> v(count);
    for (uint64_t i = 0; i < count; ++i) v[i] = first + i;
    return v;
  }

  // Rings at guest pages [first, first + pages): outbound (guest -> host)
  // first, inbound after `split` pages, as vmbus_open lays them out.
  void InitRings(uint64_t first, uint64_t pages, uint64_t split) {
    uint8_t* base = memory.base() + first * kPageSize;
    out.emplace(base, base + kPageSize, (split - 1) * kPageSize);
    in.emplace(base + split * kPageSize, base + (split + 1) * kPageSize,
               (pages - split - 1) * kPageSize);
    out->Init();
    in->Init();
  }

  OpenChannelResult Open(uint32_t relid, uint32_t gpadl, uint32_t split,
                         uint32_t openid, uint32_t target_vp = 0) {
    auto m = MakeMessage<vmbus::OpenChannel>(kMsgOpenChannel);
    m.child_relid = relid;
    m.openid = openid;
    m.ringbuffer_gpadlhandle = gpadl;
    m.target_vp = target_vp;
    m.downstream_ringbuffer_pageoffset = split;
    Send(m);
    return Expect<OpenChannelResult>(kMsgOpenChannelResult);
  }

  FlatGuestPages memory;
  VmbusServer* server = nullptr;
  std::deque<Posted> inbox;
  std::vector<std::pair<uint32_t, uint32_t>> signals;  // vp, flag
  uint32_t last_vp = 0;
  uint8_t last_sint = 0;
  std::optional<GuestRing> out, in;
};

}  // namespace vmbus::testing

#endif  // HVSTACK_VMWP_VMBUS_TEST_FAKE_GUEST_H_
