// libFuzzer target: channel-message parsing, then the whole server driven by
// a hostile guest. The server is already connected and has offered two
// channels; the input is a script of operations:
//   0 LEN BYTES...    a channel message (HandleMessage)
//   1 C               HvSignalEvent on channel C's connection id
//   2 OFF16 LEN BYTES write guest RAM (rings, GPADL pages)
//   3 C               host rescind of channel C
// Every channel message in the input is also parsed on its own, and what the
// parser accepts is checked to be of a size its type allows.

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <variant>

#include "spdlog/spdlog.h"
#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/server.h"

namespace {

#define CHECK(cond) \
  if (!(cond)) __builtin_trap()

class NullSynic : public vmbus::SynicPort {
 public:
  absl::Status PostMessage(uint32_t, uint8_t sint, uint32_t,
                           std::span<const uint8_t> payload) override {
    CHECK(payload.size() <= vmbus::kMaxMessageSize);
    CHECK(sint < 16);
    return absl::OkStatus();
  }
  absl::Status SignalEvent(uint32_t vp, uint8_t, uint32_t) override {
    CHECK(vp < 2);
    return absl::OkStatus();
  }
};

class EchoVsp : public vmbus::Vsp {
 public:
  EchoVsp() { offer_.max_packet_size = 8192; }
  const vmbus::VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> ep,
                      std::span<const uint8_t>) override {
    ep_ = std::move(ep);
    return absl::OkStatus();
  }
  void OnPacket(vmbus::ChannelEndpoint& ep, const vmbus::Packet& p) override {
    (void)ep.Send(vmbus::kPacketCompletion, 0, p.trans_id, p.data());
  }
  void OnClose(uint32_t) override { ep_.reset(); }

 private:
  vmbus::VspOffer offer_;
  std::shared_ptr<vmbus::ChannelEndpoint> ep_;
};

void CheckParsed(std::span<const uint8_t> bytes) {
  auto parsed = vmbus::ParseGuestMessage(bytes);
  if (!parsed.ok()) return;
  CHECK(bytes.size() >= sizeof(vmbus::MessageHeader));
  CHECK(bytes.size() <= vmbus::kMaxMessageSize);
  if (auto* h = std::get_if<vmbus::GpadlHeaderMessage>(&*parsed)) {
    CHECK(h->range_bytes.size() <= h->fixed.range_buflen);
    CHECK(h->range_bytes.size() % 8 == 0);
  } else if (auto* b = std::get_if<vmbus::GpadlBodyMessage>(&*parsed)) {
    CHECK(!b->pfns.empty());
  } else if (std::holds_alternative<vmbus::OpenChannel>(*parsed)) {
    CHECK(bytes.size() == sizeof(vmbus::OpenChannel));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  CheckParsed(std::span<const uint8_t>(data, size));

  vmbus::FlatGuestPages memory(64);
  NullSynic synic;
  std::deque<EchoVsp> vsps(2);
  vmbus::VmbusServer server(memory, synic, {.vp_count = 2});
  for (auto& v : vsps) CHECK(server.AddVsp(&v).ok());
  auto contact =
      vmbus::MakeMessage<vmbus::InitiateContact>(vmbus::kMsgInitiateContact);
  contact.vmbus_version_requested = vmbus::kVersionWin10V5_3;
  contact.interrupt_page_or_sint = vmbus::kVmbusMessageSint;
  CHECK(server.HandleMessage(vmbus::MessageBytes(contact)).ok());
  CHECK(server
            .HandleMessage(
                vmbus::MessageBytes(vmbus::MakeMessage<vmbus::RequestOffers>(
                    vmbus::kMsgRequestOffers)))
            .ok());

  size_t at = 0;
  while (at < size) {
    const uint8_t op = data[at++] % 4;
    if (op == 0 && at < size) {
      const size_t want = data[at++];
      size_t len = std::min<size_t>(want, size - at);
      std::span<const uint8_t> msg(data + at, len);
      CheckParsed(msg);
      (void)server.OnPostMessage(0, vmbus::kMessageConnectionId,
                                 vmbus::kVmbusMessageType, msg);
      at += len;
    } else if (op == 1 && at < size) {
      (void)server.OnSignalEvent(
          0, vmbus::VmbusServer::kChannelConnectionIdBase + 1 + data[at++] % 3,
          0);
    } else if (op == 2 && at + 3 <= size) {
      size_t off = (data[at] | (data[at + 1] << 8)) * 8u % (64 * 4096);
      size_t len = std::min<size_t>(data[at + 2], size - at - 3);
      len = std::min(len, 64 * 4096 - off);
      std::memcpy(memory.base() + off, data + at + 3, len);
      at += 3 + len;
    } else if (op == 3 && at < size) {
      (void)server.Rescind(1 + data[at++] % 3);
    } else {
      break;
    }
  }
  return 0;
}
