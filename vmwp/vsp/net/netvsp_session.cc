#include "vmwp/vsp/net/netvsp_session.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmwp/vmbus/gpa_direct.h"
#include "vmwp/vmbus/ring_layout.h"

namespace vsp::net {
namespace {

template <typename... Args>
absl::Status Bad(const absl::FormatSpec<Args...>& format, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrFormat(format, args...));
}

constexpr uint32_t kEthernetHeader = 14;
constexpr uint32_t kVlanTag = 4;
// MAX_PAGE_BUFFER_COUNT: what INIT_COMPLETE reports as the MDL chain length.
constexpr uint32_t kMaxMdlChainLength = 32;

bool HasInlineVlanTag(std::span<const uint8_t> frame) {
  const uint16_t type = (uint16_t{frame[12]} << 8) | frame[13];
  return type == 0x8100 || type == 0x88A8;
}

}  // namespace

uint32_t NetvspSession::ReceiveSectionSize(uint32_t mtu) {
  const uint32_t need =
      kRndisPacketHeaderSize + 64 + mtu + kEthernetHeader + kVlanTag;
  return std::max<uint32_t>(1728, (need + 63) & ~63u);
}

NetvspSession::NetvspSession(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                             RndisDevice& device, FrameSink& sink,
                             NicCounters& counters, LentBuffers& buffers,
                             std::string name, Limits limits)
    : endpoint_(std::move(endpoint)),
      device_(device),
      sink_(sink),
      counters_(counters),
      buffers_(buffers),
      name_(std::move(name)),
      limits_(limits),
      errors_log_(name_ + " protocol errors") {}

NetvspSession::~NetvspSession() {
  if (receive_buffer_) buffers_.Remove(receive_buffer_->handle());
  if (send_buffer_) buffers_.Remove(send_buffer_->handle());
}

void NetvspSession::ProtocolError(const absl::Status& s) {
  counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  errors_log_.Note([&] { spdlog::warn("netvsp {}: {}", name_, s.ToString()); },
                   [&] { return s.ToString(); });
}

void NetvspSession::Die(const absl::Status& s) {
  if (dead_) return;
  dead_ = true;
  spdlog::warn("netvsp {}: the channel stopped: {}", name_, s.ToString());
  uint64_t frames = batch_.has_value() ? batch_->frames : 0;
  for (const RxPacket& p : pending_rx_) frames += p.frames;
  if (frames != 0) counters_.Count(Drop::kToGuestChannelDown, frames);
  batch_.reset();
  pending_rx_.clear();
  pending_control_.clear();
  pending_completions_.clear();
}

absl::Status NetvspSession::Send(uint16_t type, uint16_t flags,
                                 uint64_t trans_id,
                                 std::span<const uint8_t> extension,
                                 std::span<const uint8_t> payload,
                                 bool* written) {
  *written = false;
  if (dead_) return absl::FailedPreconditionError("channel stopped");
  absl::StatusOr<vmbus::WriteResult> r =
      endpoint_->Send(type, flags, trans_id, extension, payload);
  if (!r.ok()) {
    Die(r.status());
    return r.status();
  }
  *written = r->written;
  return absl::OkStatus();
}

void NetvspSession::Complete(uint64_t trans_id,
                             std::span<const uint8_t> payload) {
  if (dead_) return;
  if (pending_completions_.empty()) {
    bool written = false;
    if (!Send(vmbus::kPacketCompletion, 0, trans_id, {}, payload, &written)
             .ok() ||
        written) {
      return;
    }
  }
  pending_completions_.push_back(
      {trans_id, std::vector<uint8_t>(payload.begin(), payload.end())});
}

void NetvspSession::Flush() {
  while (!dead_ && !pending_completions_.empty()) {
    const Completion& c = pending_completions_.front();
    bool written = false;
    if (!Send(vmbus::kPacketCompletion, 0, c.trans_id, {}, c.payload, &written)
             .ok() ||
        !written) {
      return;
    }
    pending_completions_.pop_front();
  }
  while (!dead_ && !pending_rx_.empty()) {
    if (!SendRx(pending_rx_.front())) return;
    pending_rx_.pop_front();
  }
  while (!dead_ && !pending_control_.empty() &&
         TrySendControl(pending_control_.front())) {
    pending_control_.pop_front();
  }
}

bool NetvspSession::CanDrain() const {
  return !dead_ &&
         pending_completions_.size() < limits_.max_pending_completions;
}

bool NetvspSession::Ready() const {
  return !dead_ && receive_buffer_ != nullptr && device_.initialized() &&
         device_.packet_filter() != 0;
}

bool NetvspSession::CanReceive() const {
  return Ready() && !free_sections_.empty() && pending_rx_.empty();
}

// ------------------------------------------------------------------ NVSP

void NetvspSession::HandlePacket(const vmbus::Packet& packet) {
  if (dead_) return;
  absl::StatusOr<NvspView> view = ParseNvsp(packet.data());
  if (!view.ok()) {
    ProtocolError(view.status());
    return;
  }
  if (view->type != kNvspMsgInit && nvsp_version_ == 0) {
    ProtocolError(Bad("NVSP %s before INIT", NvspTypeName(view->type)));
    // What the guest waits for still gets an answer.
    switch (view->type) {
      case kNvspMsg1SendRndisPacket:
        CompleteNvsp(packet.trans_id, kNvspMsg1SendRndisPacketComplete,
                     Nvsp1SendRndisPacketComplete{kNvspStatusFail});
        break;
      case kNvspMsg1SendReceiveBuffer:
        CompleteNvsp(packet.trans_id, kNvspMsg1SendReceiveBufferComplete,
                     Nvsp1SendReceiveBufferComplete{kNvspStatusFail, 0, {}});
        break;
      case kNvspMsg1SendSendBuffer:
        CompleteNvsp(packet.trans_id, kNvspMsg1SendSendBufferComplete,
                     Nvsp1SendSendBufferComplete{kNvspStatusFail, 0});
        break;
      default:
        break;
    }
    return;
  }
  switch (view->type) {
    case kNvspMsgInit:
      OnInit(packet, *view);
      return;
    case kNvspMsg1SendNdisVersion: {
      auto v = NvspBody<Nvsp1SendNdisVersion>(*view);
      ndis_version_ =
          (v->ndis_major_version << 16) | (v->ndis_minor_version & 0xFFFF);
      return;
    }
    case kNvspMsg2SendNdisConfig: {
      auto c = NvspBody<Nvsp2SendNdisConfig>(*view);
      guest_mtu_ = c->mtu;
      return;
    }
    case kNvspMsg1SendReceiveBuffer:
      OnSendReceiveBuffer(packet, *view);
      return;
    case kNvspMsg1SendSendBuffer:
      OnSendSendBuffer(packet, *view);
      return;
    case kNvspMsg1RevokeReceiveBuffer:
      OnRevoke(*view, /*receive=*/true);
      return;
    case kNvspMsg1RevokeSendBuffer:
      OnRevoke(*view, /*receive=*/false);
      return;
    case kNvspMsg1SendRndisPacket:
      OnRndisPacket(packet, *view);
      return;
    case kNvspMsg1SendRndisPacketComplete:
      OnReceiveCompletion(packet, *view);
      return;
    case kNvspMsg4SwitchDataPath:
      // There is no VF: the data path stays synthetic. Linux waits for an
      // empty completion.
      if (packet.flags & vmbus::kPacketFlagCompletionRequested)
        Complete(packet.trans_id, {});
      return;
    case kNvspMsg5Subchannel:
      // No vRSS (RECEIVE_SCALE_CAPABILITIES is not supported): no
      // sub-channels.
      CompleteNvsp(packet.trans_id, kNvspMsg5Subchannel,
                   Nvsp5SubchannelComplete{kNvspStatusFail, 0});
      return;
    default:
      ProtocolError(Bad("NVSP %s is not supported", NvspTypeName(view->type)));
      return;
  }
}

void NetvspSession::OnInit(const vmbus::Packet& p, const NvspView& v) {
  auto init = NvspBody<NvspInit>(v);
  uint32_t chosen = 0;
  for (uint32_t version : kNvspVersions) {  // newest first
    if (version >= init->min_protocol_version &&
        version <= init->max_protocol_version) {
      chosen = version;
      break;
    }
  }
  NvspInitComplete reply{0, kMaxMdlChainLength, kNvspStatusFail};
  if (chosen == 0) {
    // Linux asks for one version at a time and steps down: not an error.
    spdlog::info("netvsp {}: guest asked for NVSP 0x{:x}..0x{:x}: refused",
                 name_, init->min_protocol_version, init->max_protocol_version);
  } else if (receive_buffer_ != nullptr || send_buffer_ != nullptr) {
    ProtocolError(Bad("NVSP INIT after the buffers were set up"));
  } else {
    nvsp_version_ = chosen;
    counters_.nvsp_version.store(chosen, std::memory_order_relaxed);
    reply.negotiated_protocol_version = chosen;
    reply.status = kNvspStatusSuccess;
    spdlog::info("netvsp {}: guest negotiated NVSP 0x{:x}", name_, chosen);
  }
  CompleteNvsp(p.trans_id, kNvspMsgInitComplete, reply);
}

void NetvspSession::OnSendReceiveBuffer(const vmbus::Packet& p,
                                        const NvspView& v) {
  auto b = NvspBody<Nvsp1SendBuffer>(v);
  auto fail = [&](absl::Status s) {
    ProtocolError(s);
    CompleteNvsp(p.trans_id, kNvspMsg1SendReceiveBufferComplete,
                 Nvsp1SendReceiveBufferComplete{kNvspStatusFail, 0, {}});
  };
  if (receive_buffer_ != nullptr) {
    return fail(Bad("SEND_RECV_BUF: the channel already has a receive buffer"));
  }
  if (send_buffer_ != nullptr && send_buffer_->handle() == b->gpadl_handle) {
    return fail(
        Bad("SEND_RECV_BUF: GPADL 0x%x is the send buffer", b->gpadl_handle));
  }
  absl::StatusOr<vmbus::MappedGpadl> mapped =
      endpoint_->MapGpadl(b->gpadl_handle);
  if (!mapped.ok()) {
    return fail(Bad("SEND_RECV_BUF: %s", mapped.status().message()));
  }
  if (mapped->size < limits_.min_receive_buffer ||
      mapped->size > limits_.max_receive_buffer) {
    return fail(Bad(
        "SEND_RECV_BUF: a receive buffer of %d bytes is outside "
        "[%d, %d]",
        mapped->size, limits_.min_receive_buffer, limits_.max_receive_buffer));
  }
  auto buffer = std::make_shared<LentBuffer>(*std::move(mapped), b->id);
  receive_section_size_ = ReceiveSectionSize(device_.config().mtu);
  receive_section_count_ = buffer->size() / receive_section_size_;
  free_sections_.clear();
  free_sections_.reserve(receive_section_count_);
  for (uint32_t i = receive_section_count_; i > 0; --i)
    free_sections_.push_back(i - 1);
  buffers_.Add(buffer);
  receive_buffer_ = std::move(buffer);
  Nvsp1SendReceiveBufferComplete reply{kNvspStatusSuccess, 1, {}};
  reply.sections[0] = {0, receive_section_size_, receive_section_count_,
                       receive_section_size_ * receive_section_count_};
  CompleteNvsp(p.trans_id, kNvspMsg1SendReceiveBufferComplete, reply);
  spdlog::info("netvsp {}: receive buffer of {} bytes: {} sections of {}",
               name_, receive_buffer_->size(), receive_section_count_,
               receive_section_size_);
}

void NetvspSession::OnSendSendBuffer(const vmbus::Packet& p,
                                     const NvspView& v) {
  auto b = NvspBody<Nvsp1SendBuffer>(v);
  auto fail = [&](absl::Status s) {
    ProtocolError(s);
    CompleteNvsp(p.trans_id, kNvspMsg1SendSendBufferComplete,
                 Nvsp1SendSendBufferComplete{kNvspStatusFail, 0});
  };
  if (send_buffer_ != nullptr) {
    return fail(Bad("SEND_SEND_BUF: the channel already has a send buffer"));
  }
  if (receive_buffer_ != nullptr &&
      receive_buffer_->handle() == b->gpadl_handle) {
    return fail(Bad("SEND_SEND_BUF: GPADL 0x%x is the receive buffer",
                    b->gpadl_handle));
  }
  absl::StatusOr<vmbus::MappedGpadl> mapped =
      endpoint_->MapGpadl(b->gpadl_handle);
  if (!mapped.ok()) {
    return fail(Bad("SEND_SEND_BUF: %s", mapped.status().message()));
  }
  if (mapped->size < limits_.min_send_buffer ||
      mapped->size > limits_.max_send_buffer) {
    return fail(
        Bad("SEND_SEND_BUF: a send buffer of %d bytes is outside "
            "[%d, %d]",
            mapped->size, limits_.min_send_buffer, limits_.max_send_buffer));
  }
  auto buffer = std::make_shared<LentBuffer>(*std::move(mapped), b->id);
  send_section_count_ = buffer->size() / kSendSectionSize;
  buffers_.Add(buffer);
  send_buffer_ = std::move(buffer);
  CompleteNvsp(
      p.trans_id, kNvspMsg1SendSendBufferComplete,
      Nvsp1SendSendBufferComplete{kNvspStatusSuccess, kSendSectionSize});
  spdlog::info("netvsp {}: send buffer of {} bytes: {} sections of {}", name_,
               send_buffer_->size(), send_section_count_, kSendSectionSize);
}

void NetvspSession::DropReceiveBuffer() {
  if (receive_buffer_ == nullptr) return;
  uint64_t frames = batch_.has_value() ? batch_->frames : 0;
  for (const RxPacket& p : pending_rx_) frames += p.frames;
  if (frames != 0) counters_.Count(Drop::kToGuestNotReady, frames);
  batch_.reset();
  pending_rx_.clear();
  in_flight_.clear();
  free_sections_.clear();
  buffers_.Revoke(receive_buffer_->handle());
  receive_buffer_.reset();
  receive_section_count_ = 0;
}

void NetvspSession::OnRevoke(const NvspView& v, bool receive) {
  auto r = NvspBody<Nvsp1RevokeBuffer>(v);
  std::shared_ptr<LentBuffer>& buffer =
      receive ? receive_buffer_ : send_buffer_;
  if (buffer == nullptr || buffer->id() != r->id) {
    ProtocolError(Bad("%s of buffer id %d, which is not in use",
                      receive ? "REVOKE_RECV_BUF" : "REVOKE_SEND_BUF", r->id));
    return;
  }
  if (receive) {
    DropReceiveBuffer();
  } else {
    buffers_.Revoke(send_buffer_->handle());
    send_buffer_.reset();
    send_section_count_ = 0;
  }
}

void NetvspSession::OnGpadlRevoked(uint32_t handle) {
  if (receive_buffer_ != nullptr && receive_buffer_->handle() == handle) {
    DropReceiveBuffer();
  }
  if (send_buffer_ != nullptr && send_buffer_->handle() == handle) {
    send_buffer_.reset();
    send_section_count_ = 0;
  }
}

// ------------------------------------------------------- guest -> host

void NetvspSession::OnRndisPacket(const vmbus::Packet& p, const NvspView& v) {
  auto r = NvspBody<Nvsp1SendRndisPacket>(v);
  auto fail = [&](absl::Status s) {
    ProtocolError(s);
    counters_.Count(Drop::kFromGuestMalformed);
    CompleteNvsp(p.trans_id, kNvspMsg1SendRndisPacketComplete,
                 Nvsp1SendRndisPacketComplete{kNvspStatusFail});
  };
  scratch_.clear();
  if (r->send_buffer_section_index != kNoSendSection) {
    const uint32_t index = r->send_buffer_section_index;
    const uint32_t size = r->send_buffer_section_size;
    if (send_buffer_ == nullptr) {
      return fail(
          Bad("SEND_RNDIS_PKT names send section %d without a send "
              "buffer",
              index));
    }
    if (index >= send_section_count_) {
      return fail(Bad("SEND_RNDIS_PKT: send section %d of %d", index,
                      send_section_count_));
    }
    if (size == 0 || size > kSendSectionSize) {
      return fail(Bad("SEND_RNDIS_PKT: %d bytes in a %d-byte send section",
                      size, kSendSectionSize));
    }
    scratch_.resize(size);
    if (!send_buffer_->Read(index * kSendSectionSize, scratch_.data(), size)) {
      return fail(Bad("SEND_RNDIS_PKT: the send buffer was taken back"));
    }
  }
  if (p.type == vmbus::kPacketDataUsingGpaDirect) {
    absl::StatusOr<std::vector<vmbus::GpaRange>> ranges = vmbus::ParseGpaDirect(
        p.header_extension(), endpoint_->memory(), kMaxGpaDirectBytes);
    if (!ranges.ok()) return fail(ranges.status());
    absl::StatusOr<vmbus::GuestScatter> scatter =
        vmbus::ResolveGpaRanges(*ranges, endpoint_->memory());
    if (!scatter.ok()) return fail(scatter.status());
    scatter->AppendTo(scratch_);
  } else if (p.type != vmbus::kPacketDataInband) {
    return fail(Bad("SEND_RNDIS_PKT in a VMBus packet of type %d", p.type));
  }
  if (scratch_.empty()) {
    return fail(
        Bad("SEND_RNDIS_PKT names no data (no send section, no "
            "GPA-direct range)"));
  }
  uint32_t status = kNvspStatusSuccess;
  std::span<const uint8_t> rest(scratch_);
  while (!rest.empty()) {
    absl::StatusOr<RndisView> m = ParseRndisMessage(rest);
    if (!m.ok()) {
      ProtocolError(m.status());
      counters_.Count(Drop::kFromGuestMalformed);
      status = kNvspStatusInvalidRndisPacket;
      break;
    }
    if (!HandleRndis(*m)) status = kNvspStatusInvalidRndisPacket;
    rest = rest.subspan(m->length);
  }
  CompleteNvsp(p.trans_id, kNvspMsg1SendRndisPacketComplete,
               Nvsp1SendRndisPacketComplete{status});
}

bool NetvspSession::HandleRndis(const RndisView& m) {
  if (m.type == kRndisMsgPacket) return HandleDataPacket(m);
  RndisDevice::Result r = device_.HandleControl(m, nvsp_version_);
  counters_.guest_ready.store(device_.initialized(), std::memory_order_relaxed);
  counters_.packet_filter.store(device_.packet_filter(),
                                std::memory_order_relaxed);
  if (!device_.initialized()) link_indicated_ = false;
  if (r.response.has_value()) SendControl(*std::move(r.response));
  if (!r.error.ok()) {
    ProtocolError(r.error);
    return false;
  }
  // The guest opened the data path: tell it the link is up (as Hyper-V's
  // switch does on connect; Linux then announces itself).
  if (device_.packet_filter() != 0 && !link_indicated_ && device_.link_up()) {
    link_indicated_ = true;
    SendControl(RndisDevice::BuildLinkIndication(true));
  }
  return true;
}

bool NetvspSession::HandleDataPacket(const RndisView& m) {
  if (!device_.initialized()) {
    counters_.Count(Drop::kFromGuestNotReady);
    return true;
  }
  absl::StatusOr<RndisPacketView> p = ParseRndisPacket(m.body);
  if (!p.ok()) {
    ProtocolError(p.status());
    counters_.Count(Drop::kFromGuestMalformed);
    return false;
  }
  const std::span<const uint8_t> frame = p->frame;
  if (frame.size() < kEthernetHeader) {
    ProtocolError(Bad("RNDIS PACKET with a %d-byte frame", frame.size()));
    counters_.Count(Drop::kFromGuestMalformed);
    return false;
  }
  if (!device_.link_up()) {
    counters_.Count(Drop::kFromGuestLinkDown);
    return true;
  }
  if (p->lso_info.has_value()) {
    // Large send was not offered (no LSO capability): a guest asking for it
    // sends a frame the wire cannot carry.
    counters_.Count(Drop::kFromGuestUnsupported);
    return true;
  }
  const uint32_t mtu = device_.config().mtu;
  const bool inline_tag = HasInlineVlanTag(frame);
  const uint64_t limit =
      uint64_t{mtu} + kEthernetHeader + (inline_tag ? kVlanTag : 0);
  if (frame.size() > limit) {
    counters_.Count(Drop::kFromGuestOversized);
    return true;
  }
  absl::Status written;
  uint64_t bytes = frame.size();
  if (p->vlan.has_value() && !inline_tag) {
    // 802.1Q tag from the per-packet info, into the frame after the MACs.
    const uint32_t v = *p->vlan;
    const uint16_t tci =
        static_cast<uint16_t>(((v & kVlanInfoPriorityMask) << 13) |
                              ((v & kVlanInfoCfiBit) ? 1u << 12 : 0) |
                              ((v >> kVlanInfoIdShift) & kVlanInfoIdMask));
    const uint8_t tag[4] = {0x81, 0x00, static_cast<uint8_t>(tci >> 8),
                            static_cast<uint8_t>(tci)};
    const std::span<const uint8_t> pieces[] = {frame.first(12), tag,
                                               frame.subspan(12)};
    written = sink_.WriteFrame(pieces);
    bytes += kVlanTag;
  } else {
    const std::span<const uint8_t> pieces[] = {frame};
    written = sink_.WriteFrame(pieces);
  }
  if (!written.ok()) {
    counters_.Count(Drop::kFromGuestTapWrite);
    return true;
  }
  counters_.from_guest_packets.fetch_add(1, std::memory_order_relaxed);
  counters_.from_guest_bytes.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

// ------------------------------------------------------- host -> guest

void NetvspSession::OnReceiveCompletion(const vmbus::Packet& p,
                                        const NvspView& v) {
  auto c = NvspBody<Nvsp1SendRndisPacketComplete>(v);
  auto it = in_flight_.find(p.trans_id);
  if (it == in_flight_.end()) {
    ProtocolError(
        Bad("SEND_RNDIS_PKT_COMPLETE for transaction 0x%x, which "
            "the host never sent (or was completed already)",
            p.trans_id));
    return;
  }
  FreeSections(it->second);
  in_flight_.erase(it);
  if (c->status != kNvspStatusSuccess)
    counters_.Count(Note::kToGuestRefusedByGuest);
}

void NetvspSession::FreeSections(const std::vector<uint32_t>& sections) {
  free_sections_.insert(free_sections_.end(), sections.begin(), sections.end());
}

void NetvspSession::StartBatch() {
  batch_.emplace();
  batch_->trans_id = next_trans_id_++;
  batch_->channel_type = kRndisChannelData;
  batch_->extension.resize(sizeof(TransferPageHeader));
}

bool NetvspSession::SendRx(RxPacket& packet) {
  const uint32_t ranges = static_cast<uint32_t>(packet.sections.size());
  TransferPageHeader h{receive_buffer_ ? receive_buffer_->id() : uint16_t{0}, 0,
                       0, ranges};
  std::memcpy(packet.extension.data(), &h, sizeof(h));
  const NvspMessage m =
      MakeNvsp(kNvspMsg1SendRndisPacket,
               Nvsp1SendRndisPacket{packet.channel_type, kNoSendSection, 0});
  bool written = false;
  if (!Send(vmbus::kPacketDataUsingXferPages,
            vmbus::kPacketFlagCompletionRequested, packet.trans_id,
            packet.extension, Bytes(m), &written)
           .ok()) {
    return true;  // dead: the frames were counted as dropped
  }
  if (!written) return false;
  in_flight_[packet.trans_id] = std::move(packet.sections);
  counters_.to_guest_packets.fetch_add(packet.frames,
                                       std::memory_order_relaxed);
  counters_.to_guest_bytes.fetch_add(packet.bytes, std::memory_order_relaxed);
  return true;
}

void NetvspSession::DeliverFrame(std::span<const uint8_t> frame) {
  if (!Ready()) {
    counters_.Count(Drop::kToGuestNotReady);
    return;
  }
  if (!device_.link_up()) {
    counters_.Count(Drop::kToGuestLinkDown);
    return;
  }
  if (frame.size() < kEthernetHeader ||
      frame.size() > device_.max_frame_size()) {
    counters_.Count(Drop::kToGuestBadFrame);
    return;
  }
  if (!device_.Accepts(frame)) {
    counters_.Count(Note::kToGuestFiltered);
    return;
  }
  if (free_sections_.empty()) {
    counters_.Count(Drop::kToGuestNoBuffer);
    return;
  }
  if (!batch_.has_value()) StartBatch();
  const uint32_t section = free_sections_.back();
  uint8_t header[kRndisPacketHeaderSize];
  WriteRndisPacketHeader(static_cast<uint32_t>(frame.size()), header);
  if (!receive_buffer_->Write(section * receive_section_size_,
                              {header, frame})) {
    counters_.Count(Drop::kToGuestNotReady);
    return;
  }
  free_sections_.pop_back();
  const TransferPageRange range{
      static_cast<uint32_t>(kRndisPacketHeaderSize + frame.size()),
      section * receive_section_size_};
  const auto* r = reinterpret_cast<const uint8_t*>(&range);
  batch_->extension.insert(batch_->extension.end(), r, r + sizeof(range));
  batch_->sections.push_back(section);
  ++batch_->frames;
  batch_->bytes += frame.size();
  if (batch_->sections.size() == kMaxRangesPerPacket) FlushReceive();
}

void NetvspSession::FlushReceive() {
  if (!batch_.has_value()) return;
  RxPacket packet = *std::move(batch_);
  batch_.reset();
  if (!pending_rx_.empty() || !SendRx(packet)) {
    pending_rx_.push_back(std::move(packet));
  }
}

bool NetvspSession::TrySendControl(const std::vector<uint8_t>& message) {
  if (receive_buffer_ == nullptr || free_sections_.empty()) return false;
  if (message.size() > receive_section_size_) {
    ProtocolError(
        Bad("a %d-byte RNDIS response does not fit a %d-byte "
            "receive section; dropped",
            message.size(), receive_section_size_));
    return true;
  }
  const uint32_t section = free_sections_.back();
  if (!receive_buffer_->Write(section * receive_section_size_, {message})) {
    return false;
  }
  free_sections_.pop_back();
  RxPacket packet;
  packet.trans_id = next_trans_id_++;
  packet.channel_type = kRndisChannelControl;
  packet.sections.push_back(section);
  packet.extension.resize(sizeof(TransferPageHeader));
  const TransferPageRange range{static_cast<uint32_t>(message.size()),
                                section * receive_section_size_};
  const auto* r = reinterpret_cast<const uint8_t*>(&range);
  packet.extension.insert(packet.extension.end(), r, r + sizeof(range));
  if (!pending_rx_.empty() || !SendRx(packet)) {
    pending_rx_.push_back(std::move(packet));
  }
  return true;
}

void NetvspSession::SendControl(std::vector<uint8_t> message) {
  if (dead_) return;
  if (pending_control_.empty() && TrySendControl(message)) return;
  if (pending_control_.size() >= limits_.max_pending_control) {
    ProtocolError(
        Bad("RNDIS response dropped: %d already wait for a receive "
            "section (the guest sends requests without taking "
            "answers)",
            pending_control_.size()));
    return;
  }
  pending_control_.push_back(std::move(message));
}

void NetvspSession::SetLink(bool up) {
  device_.set_link_up(up);
  counters_.link_up.store(up, std::memory_order_relaxed);
  if (device_.initialized()) {
    link_indicated_ = true;
    SendControl(RndisDevice::BuildLinkIndication(up));
  }
}

}  // namespace vsp::net
