#include "vmwp/vmbus/server.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace vmbus {
namespace {

template <typename... Args>
absl::Status Bad(const absl::FormatSpec<Args...>& format, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrFormat(format, args...));
}
template <typename... Args>
absl::Status OutOfOrder(const absl::FormatSpec<Args...>& format,
                        const Args&... args) {
  return absl::FailedPreconditionError(absl::StrFormat(format, args...));
}

bool IsSupported(uint32_t version) {
  return std::find(std::begin(VmbusServer::kSupportedVersions),
                   std::end(VmbusServer::kSupportedVersions),
                   version) != std::end(VmbusServer::kSupportedVersions);
}

}  // namespace

VmbusServer::VmbusServer(GuestPages& memory, SynicPort& synic, Options options)
    : memory_(memory), synic_(synic), options_(options) {}

VmbusServer::~VmbusServer() {
  absl::MutexLock lock(&mu_);
  for (auto& [relid, channel] : channels_) {
    if (channel.state == ChannelState::kOpen) CloseChannel(relid, channel);
  }
}

// ------------------------------------------------------------- host side

absl::StatusOr<uint32_t> VmbusServer::AddVsp(Vsp* vsp) {
  absl::MutexLock lock(&mu_);
  uint32_t relid = 1;
  while (channels_.contains(relid)) ++relid;
  if (relid > kMaxRelid) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no free VMBus relid (at most %d channels)", kMaxRelid));
  }
  if (options_.on_channel_added) {
    if (absl::Status s = options_.on_channel_added(relid); !s.ok()) return s;
  }
  ChannelRecord& channel = channels_[relid];
  channel.vsp = vsp;
  channel.connection_id = ConnectionIdForRelid(relid);
  relid_by_connection_[channel.connection_id] = relid;
  if (version_ != 0 && offers_requested_ && !restoring_) {
    SendOffer(relid, channel);
  }
  return relid;
}

absl::Status VmbusServer::Rescind(uint32_t relid) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(relid);
  if (it == channels_.end() || it->second.state == ChannelState::kRescinded) {
    return absl::NotFoundError(
        absl::StrFormat("no offered VMBus channel with relid %d", relid));
  }
  ChannelRecord& channel = it->second;
  if (channel.state == ChannelState::kOpen) CloseChannel(relid, channel);
  // Linux sends neither CLOSECHANNEL nor GPADL_TEARDOWN for a rescinded
  // channel: its GPADLs go now.
  for (auto g = gpadls_.begin(); g != gpadls_.end();) {
    auto next = std::next(g);
    if (g->second.gpadl.child_relid == relid) gpadls_.erase(g);
    g = next;
  }
  relid_by_connection_.erase(channel.connection_id);
  if (!channel.offered_to_guest) {
    channels_.erase(it);
    return absl::OkStatus();
  }
  channel.state = ChannelState::kRescinded;
  auto m = MakeMessage<RescindChannelOffer>(kMsgRescindChannelOffer);
  m.child_relid = relid;
  Post(m);
  return absl::OkStatus();
}

void VmbusServer::PostBytes(std::vector<uint8_t> bytes) {
  absl::Status s =
      synic_.PostMessage(message_vp_, message_sint_, kVmbusMessageType, bytes);
  if (!s.ok()) {
    post_failures_log_.Note(
        [&] {
          spdlog::warn(
              "vmbus: cannot post a channel message to vp {} sint {}: {}",
              message_vp_, message_sint_, s.ToString());
        },
        [&] { return s.ToString(); });
  }
}

void VmbusServer::SendOffer(uint32_t relid, ChannelRecord& channel) {
  const VspOffer& o = channel.vsp->offer();
  auto m = MakeMessage<OfferChannel>(kMsgOfferChannel);
  m.offer.if_type = o.interface_type;
  m.offer.if_instance = o.interface_instance;
  m.offer.chn_flags = o.channel_flags;
  m.offer.mmio_megabytes = o.mmio_megabytes;
  std::copy(o.user_defined.begin(), o.user_defined.end(), m.offer.user_def);
  m.offer.sub_channel_index = o.sub_channel_index;
  m.child_relid = relid;
  // No monitor page: the guest signals with HvSignalEvent on the channel's
  // own connection id (dedicated interrupt: no interrupt-page bit needed).
  m.monitorid = 0xFF;
  m.monitor_allocated = 0;
  m.is_dedicated_interrupt = 1;
  m.connection_id = channel.connection_id;
  Post(m);
  channel.offered_to_guest = true;
}

void VmbusServer::SendGpadlCreated(uint32_t relid, uint32_t handle,
                                   uint32_t status) {
  auto m = MakeMessage<GpadlCreated>(kMsgGpadlCreated);
  m.child_relid = relid;
  m.gpadl = handle;
  m.creation_status = status;
  Post(m);
}

void VmbusServer::CloseChannel(uint32_t relid, ChannelRecord& channel) {
  if (channel.open) channel.open->Close();
  channel.open.reset();
  if (auto g = gpadls_.find(channel.ring_gpadl); g != gpadls_.end()) {
    g->second.in_use = false;
  }
  channel.ring_gpadl = 0;
  channel.state = ChannelState::kOffered;
  channel.vsp->OnClose(relid);
}

// ----------------------------------------------------------- guest calls

HvStatus VmbusServer::OnPostMessage(uint32_t vp, uint32_t connection_id,
                                    uint32_t message_type,
                                    std::span<const uint8_t> payload) {
  if (connection_id != kMessageConnectionId &&
      connection_id != kMessageConnectionId4) {
    return HvStatus::kInvalidConnectionId;
  }
  if (message_type != kVmbusMessageType || payload.size() > kMaxMessageSize) {
    return HvStatus::kInvalidParameter;
  }
  if (absl::Status s = HandleMessage(payload); !s.ok()) {
    dropped_messages_log_.Note(
        [&] {
          spdlog::warn("vmbus: dropped a channel message from vp {}: {}", vp,
                       s.ToString());
        },
        [&] { return s.ToString(); });
  }
  // The message was delivered; what it said is the protocol's business.
  return HvStatus::kSuccess;
}

HvStatus VmbusServer::OnSignalEvent(uint32_t vp, uint32_t connection_id,
                                    uint16_t flag_number) {
  std::shared_ptr<LiveChannel> channel;
  Vsp* vsp = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto relid = relid_by_connection_.find(connection_id);
    if (relid == relid_by_connection_.end()) {
      return HvStatus::kInvalidConnectionId;
    }
    auto record = channels_.find(relid->second);
    if (record == channels_.end() ||
        record->second.state != ChannelState::kOpen) {
      return HvStatus::kSuccess;  // a late signal for a closed channel
    }
    channel = record->second.open;
    vsp = record->second.vsp;
  }
  // Outside the server lock: the VSP may take its time and send replies.
  if (!vsp->offer().drain_on_vp_thread) {
    vsp->OnGuestSignal(*channel);
    return HvStatus::kSuccess;
  }
  if (absl::Status s = channel->Drain(*vsp); !s.ok()) {
    broken_channels_log_.Note(
        [&] {
          spdlog::warn("vmbus: channel {} is broken and stops: {}",
                       channel->relid(), s.ToString());
        },
        [&] { return s.ToString(); });
  }
  return HvStatus::kSuccess;
}

absl::Status VmbusServer::HandleMessage(std::span<const uint8_t> payload) {
  absl::StatusOr<GuestMessage> parsed = ParseGuestMessage(payload);
  absl::MutexLock lock(&mu_);
  absl::Status s;
  if (!parsed.ok()) {
    s = parsed.status();
  } else {
    s = std::visit(
        [this](const auto& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, InitiateContact>) {
            return OnInitiateContact(m);
          } else if constexpr (std::is_same_v<T, RequestOffers>) {
            return OnRequestOffers();
          } else if constexpr (std::is_same_v<T, GpadlHeaderMessage>) {
            return OnGpadlHeader(m);
          } else if constexpr (std::is_same_v<T, GpadlBodyMessage>) {
            return OnGpadlBody(m);
          } else if constexpr (std::is_same_v<T, GpadlTeardown>) {
            return OnGpadlTeardown(m);
          } else if constexpr (std::is_same_v<T, vmbus::OpenChannel>) {
            return OnOpenChannel(m);
          } else if constexpr (std::is_same_v<T, vmbus::CloseChannel>) {
            return OnCloseChannel(m);
          } else if constexpr (std::is_same_v<T, RelidReleased>) {
            return OnRelidReleased(m);
          } else if constexpr (std::is_same_v<T, Unload>) {
            return OnUnload();
          } else if constexpr (std::is_same_v<T, ModifyChannel>) {
            return OnModifyChannel(m);
          } else {
            static_assert(std::is_same_v<T, TlConnectRequest>);
            return absl::UnimplementedError(
                "TL_CONNECT_REQUEST: hv_sock is not offered");
          }
        },
        *parsed);
  }
  if (!s.ok()) ++dropped_;
  return s;
}

absl::Status VmbusServer::RequireConnected(uint32_t type) const {
  if (version_ == 0) {
    return OutOfOrder("%s before INITIATE_CONTACT", MessageTypeName(type));
  }
  return absl::OkStatus();
}

absl::Status VmbusServer::OnInitiateContact(const InitiateContact& m) {
  const uint32_t requested = m.vmbus_version_requested;
  auto reply = MakeMessage<VersionResponse>(kMsgVersionResponse);
  reply.msg_conn_id = kMessageConnectionId;
  absl::Status error;
  uint8_t sint = kVmbusMessageSint;
  if (requested >= kVersionWin10V5) {
    sint = static_cast<uint8_t>(m.interrupt_page_or_sint & 0xFF);
  }
  if (version_ != 0) {
    error = OutOfOrder(
        "INITIATE_CONTACT while connected (version %d.%d); "
        "the guest must UNLOAD first",
        version_ >> 16, version_ & 0xFFFF);
  } else if (!IsSupported(requested)) {
    error = absl::UnimplementedError(absl::StrFormat(
        "guest asked for VMBus version %d.%d, which is not supported",
        requested >> 16, requested & 0xFFFF));
  } else if (m.target_vcpu >= options_.vp_count) {
    error = Bad("INITIATE_CONTACT: target vcpu %d, the VM has %d",
                m.target_vcpu, options_.vp_count);
  } else if (sint >= 16) {
    error = Bad("INITIATE_CONTACT: message SINT %d", sint);
  }
  uint8_t* win7_page = nullptr;
  if (error.ok() && requested == kVersionWin7) {
    // WIN7 signals channels through bits in the guest's interrupt page.
    const uint64_t gpa = m.interrupt_page_or_sint;
    absl::StatusOr<uint8_t*> page =
        gpa % kPageSize == 0 ? memory_.PageHost(gpa / kPageSize)
                             : absl::InvalidArgumentError("unaligned");
    if (!page.ok()) {
      error =
          Bad("INITIATE_CONTACT: interrupt page 0x%x is not a RAM page", gpa);
    } else {
      win7_page = *page;
    }
  }
  if (!error.ok()) {
    // Answer anyway, so that the guest moves on to its next version (or
    // gives up) instead of waiting; post where it asked if that is sane.
    if (version_ == 0) {
      message_vp_ = m.target_vcpu < options_.vp_count ? m.target_vcpu : 0;
      message_sint_ = sint < 16 ? sint : kVmbusMessageSint;
    }
    Post(reply);
    return error;
  }
  version_ = requested;
  message_vp_ = m.target_vcpu;
  message_sint_ = sint;
  win7_interrupt_page_ = win7_page;
  win7_interrupt_page_gpa_ =
      win7_page != nullptr ? m.interrupt_page_or_sint : 0;
  offers_requested_ = false;
  reply.version_supported = 1;
  Post(reply);
  spdlog::info("vmbus: guest connected with protocol {}.{}", requested >> 16,
               requested & 0xFFFF);
  return absl::OkStatus();
}

absl::Status VmbusServer::OnRequestOffers() {
  if (absl::Status s = RequireConnected(kMsgRequestOffers); !s.ok()) return s;
  if (offers_requested_) return OutOfOrder("REQUESTOFFERS twice");
  offers_requested_ = true;
  for (auto& [relid, channel] : channels_) {
    if (channel.state != ChannelState::kRescinded) SendOffer(relid, channel);
  }
  Post(MakeMessage<AllOffersDelivered>(kMsgAllOffersDelivered));
  return absl::OkStatus();
}

absl::Status VmbusServer::OnGpadlHeader(const GpadlHeaderMessage& m) {
  if (absl::Status s = RequireConnected(kMsgGpadlHeader); !s.ok()) return s;
  const uint32_t handle = m.fixed.gpadl;
  const uint32_t relid = m.fixed.child_relid;
  auto channel = channels_.find(relid);
  if (channel == channels_.end() ||
      channel->second.state == ChannelState::kRescinded) {
    // No channel to answer for: Linux only creates GPADLs on offered ones.
    return Bad("GPADL_HEADER 0x%x for unknown relid %d", handle, relid);
  }
  absl::Status error;
  if (handle == 0) {
    error = Bad("GPADL_HEADER with handle 0");
  } else if (gpadls_.contains(handle) || pending_gpadls_.contains(handle)) {
    error = Bad("GPADL_HEADER reuses handle 0x%x", handle);
  } else if (gpadls_.size() >= options_.max_gpadls ||
             pending_gpadls_.size() >= options_.max_pending_gpadls) {
    error = absl::ResourceExhaustedError(
        absl::StrFormat("GPADL 0x%x: too many GPADLs", handle));
  }
  if (!error.ok()) {
    SendGpadlCreated(relid, handle, kStatusUnsuccessful);
    return error;
  }
  GpadlAssembler assembler(m);
  if (assembler.complete()) return FinishGpadl(assembler);
  pending_gpadls_.emplace(handle, std::move(assembler));
  return absl::OkStatus();
}

absl::Status VmbusServer::OnGpadlBody(const GpadlBodyMessage& m) {
  if (absl::Status s = RequireConnected(kMsgGpadlBody); !s.ok()) return s;
  auto it = pending_gpadls_.find(m.fixed.gpadl);
  if (it == pending_gpadls_.end()) {
    return OutOfOrder("GPADL_BODY for 0x%x without a GPADL_HEADER",
                      m.fixed.gpadl);
  }
  if (absl::Status s = it->second.AddBody(m); !s.ok()) {
    SendGpadlCreated(it->second.child_relid(), m.fixed.gpadl,
                     kStatusUnsuccessful);
    pending_gpadls_.erase(it);
    return s;
  }
  if (!it->second.complete()) return absl::OkStatus();
  GpadlAssembler assembler = std::move(it->second);
  pending_gpadls_.erase(it);
  return FinishGpadl(assembler);
}

absl::Status VmbusServer::FinishGpadl(const GpadlAssembler& assembler) {
  absl::StatusOr<Gpadl> gpadl = assembler.Finish(memory_);
  if (!gpadl.ok()) {
    SendGpadlCreated(assembler.child_relid(), assembler.handle(),
                     kStatusUnsuccessful);
    return gpadl.status();
  }
  const uint32_t relid = gpadl->child_relid, handle = gpadl->handle;
  gpadls_[handle] = GpadlRecord{*std::move(gpadl), false};
  SendGpadlCreated(relid, handle, 0);
  return absl::OkStatus();
}

absl::Status VmbusServer::OnGpadlTeardown(const GpadlTeardown& m) {
  if (absl::Status s = RequireConnected(kMsgGpadlTeardown); !s.ok()) return s;
  auto it = gpadls_.find(m.gpadl);
  if (it == gpadls_.end()) {
    if (pending_gpadls_.erase(m.gpadl) == 0) {
      return Bad("GPADL_TEARDOWN of unknown GPADL 0x%x", m.gpadl);
    }
  } else if (it->second.gpadl.child_relid != m.child_relid) {
    return Bad("GPADL_TEARDOWN of 0x%x names relid %d, it belongs to %d",
               m.gpadl, m.child_relid, it->second.gpadl.child_relid);
  } else if (it->second.in_use) {
    return OutOfOrder(
        "GPADL_TEARDOWN of 0x%x while it is the ring of open "
        "channel %d",
        m.gpadl, m.child_relid);
  } else {
    // A buffer the channel's VSP may be using (netvsc's receive and send
    // buffers): it lets go before the guest hears the GPADL is gone.
    if (auto channel = channels_.find(m.child_relid);
        channel != channels_.end() && it->second.lent_to_vsp) {
      channel->second.vsp->OnGpadlTeardown(m.child_relid, m.gpadl);
    }
    gpadls_.erase(it);
  }
  auto reply = MakeMessage<GpadlTorndown>(kMsgGpadlTorndown);
  reply.gpadl = m.gpadl;
  Post(reply);
  return absl::OkStatus();
}

absl::Status VmbusServer::OnOpenChannel(const vmbus::OpenChannel& m) {
  if (absl::Status s = RequireConnected(kMsgOpenChannel); !s.ok()) return s;
  auto it = channels_.find(m.child_relid);
  if (it == channels_.end() || it->second.state == ChannelState::kRescinded) {
    return Bad("OPENCHANNEL for unknown relid %d", m.child_relid);
  }
  ChannelRecord& channel = it->second;
  absl::Status error;
  if (channel.state == ChannelState::kOpen) {
    error =
        OutOfOrder("OPENCHANNEL: channel %d is already open", m.child_relid);
  } else {
    error = OpenRings(m, channel);
  }
  auto reply = MakeMessage<OpenChannelResult>(kMsgOpenChannelResult);
  reply.child_relid = m.child_relid;
  reply.openid = m.openid;
  reply.status = error.ok() ? 0 : kStatusUnsuccessful;
  Post(reply);
  return error;
}

absl::Status VmbusServer::OpenRings(const vmbus::OpenChannel& m,
                                    ChannelRecord& channel) {
  const uint32_t relid = m.child_relid;
  auto g = gpadls_.find(m.ringbuffer_gpadlhandle);
  if (g == gpadls_.end() || g->second.gpadl.child_relid != relid) {
    return Bad("OPENCHANNEL %d: ring GPADL 0x%x does not exist for it", relid,
               m.ringbuffer_gpadlhandle);
  }
  if (g->second.in_use) {
    return Bad("OPENCHANNEL %d: GPADL 0x%x is already a ring", relid,
               m.ringbuffer_gpadlhandle);
  }
  const Gpadl& gpadl = g->second.gpadl;
  if (gpadl.ranges.size() != 1 || gpadl.ranges[0].byte_offset != 0 ||
      gpadl.ranges[0].byte_count != gpadl.ranges[0].pfns.size() * kPageSize) {
    return Bad("OPENCHANNEL %d: ring GPADL must be one page-aligned range",
               relid);
  }
  if (m.target_vp >= options_.vp_count) {
    return Bad("OPENCHANNEL %d: target vp %d, the VM has %d", relid,
               m.target_vp, options_.vp_count);
  }
  const std::vector<uint64_t>& pfns = gpadl.ranges[0].pfns;
  const uint64_t split = m.downstream_ringbuffer_pageoffset;
  // Each ring: one header page and at least one data page.
  if (split < 2 || split > pfns.size() || pfns.size() - split < 2) {
    return Bad(
        "OPENCHANNEL %d: downstream ring offset %d pages in a %d-page "
        "GPADL",
        relid, split, pfns.size());
  }
  const VspOffer& offer = channel.vsp->offer();
  for (uint64_t data_pages : {split - 1, pfns.size() - split - 1}) {
    const uint64_t bytes = data_pages * kPageSize;
    if (bytes < offer.min_ring_data_bytes ||
        bytes > offer.max_ring_data_bytes) {
      return Bad("OPENCHANNEL %d: ring of %d data bytes outside [%d, %d]",
                 relid, bytes, offer.min_ring_data_bytes,
                 offer.max_ring_data_bytes);
    }
  }
  std::span<const uint64_t> all(pfns);
  absl::StatusOr<RingPages> in_pages =
      RingPages::FromPfns(memory_, all.subspan(0, split));
  if (!in_pages.ok()) return in_pages.status();
  absl::StatusOr<RingPages> out_pages =
      RingPages::FromPfns(memory_, all.subspan(split));
  if (!out_pages.ok()) return out_pages.status();
  absl::StatusOr<RingReader> reader =
      RingReader::Create(*std::move(in_pages), offer.max_packet_size);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<RingWriter> writer = RingWriter::Create(*std::move(out_pages));
  if (!writer.ok()) return writer.status();

  ChannelSignal signal;
  signal.synic = &synic_;
  signal.sint = message_sint_;
  signal.win7_interrupt_page = win7_interrupt_page_;
  auto live = std::make_shared<LiveChannel>(
      relid, m.target_vp, *std::move(reader), *std::move(writer), signal,
      memory_,
      [this, relid](uint32_t handle) { return MapGpadl(relid, handle); });
  if (absl::Status s = channel.vsp->OnOpen(
          live, std::span<const uint8_t>(m.userdata, sizeof(m.userdata)));
      !s.ok()) {
    live->Close();
    return s;
  }
  channel.open = std::move(live);
  channel.state = ChannelState::kOpen;
  channel.ring_gpadl = m.ringbuffer_gpadlhandle;
  channel.downstream_offset = m.downstream_ringbuffer_pageoffset;
  std::copy(std::begin(m.userdata), std::end(m.userdata),
            channel.user_data.begin());
  g->second.in_use = true;
  return absl::OkStatus();
}

absl::Status VmbusServer::OnCloseChannel(const vmbus::CloseChannel& m) {
  if (absl::Status s = RequireConnected(kMsgCloseChannel); !s.ok()) return s;
  auto it = channels_.find(m.child_relid);
  if (it == channels_.end() || it->second.state != ChannelState::kOpen) {
    return OutOfOrder("CLOSECHANNEL: channel %d is not open", m.child_relid);
  }
  CloseChannel(m.child_relid, it->second);
  return absl::OkStatus();
}

absl::Status VmbusServer::OnRelidReleased(const RelidReleased& m) {
  if (absl::Status s = RequireConnected(kMsgRelidReleased); !s.ok()) return s;
  auto it = channels_.find(m.child_relid);
  if (it == channels_.end() || it->second.state != ChannelState::kRescinded) {
    return OutOfOrder("RELID_RELEASED: channel %d was not rescinded",
                      m.child_relid);
  }
  channels_.erase(it);
  return absl::OkStatus();
}

absl::Status VmbusServer::OnUnload() {
  if (absl::Status s = RequireConnected(kMsgUnload); !s.ok()) return s;
  for (auto it = channels_.begin(); it != channels_.end();) {
    auto next = std::next(it);
    if (it->second.state == ChannelState::kOpen) {
      CloseChannel(it->first, it->second);
    }
    if (it->second.state == ChannelState::kRescinded) {
      channels_.erase(it);
    } else {
      it->second.offered_to_guest = false;
    }
    it = next;
  }
  gpadls_.clear();
  pending_gpadls_.clear();
  Post(MakeMessage<UnloadResponse>(kMsgUnloadResponse));
  spdlog::info("vmbus: guest unloaded (protocol {}.{})", version_ >> 16,
               version_ & 0xFFFF);
  version_ = 0;
  offers_requested_ = false;
  win7_interrupt_page_ = nullptr;
  win7_interrupt_page_gpa_ = 0;
  return absl::OkStatus();
}

absl::Status VmbusServer::OnModifyChannel(const ModifyChannel& m) {
  if (absl::Status s = RequireConnected(kMsgModifyChannel); !s.ok()) return s;
  if (version_ < kVersionWin10V4_1) {
    return OutOfOrder("MODIFYCHANNEL needs protocol 4.1");
  }
  auto it = channels_.find(m.child_relid);
  absl::Status error;
  if (it == channels_.end() || it->second.state != ChannelState::kOpen) {
    error = OutOfOrder("MODIFYCHANNEL: channel %d is not open", m.child_relid);
  } else if (m.target_vp >= options_.vp_count) {
    error = Bad("MODIFYCHANNEL %d: target vp %d, the VM has %d", m.child_relid,
                m.target_vp, options_.vp_count);
  } else {
    it->second.open->set_target_vp(m.target_vp);
  }
  if (version_ >= kVersionWin10V5_3) {
    auto reply = MakeMessage<ModifyChannelResponse>(kMsgModifyChannelResponse);
    reply.child_relid = m.child_relid;
    reply.status = error.ok() ? 0 : kStatusUnsuccessful;
    Post(reply);
  }
  return error;
}

absl::StatusOr<MappedGpadl> VmbusServer::MapGpadl(uint32_t relid,
                                                  uint32_t handle) {
  absl::MutexLock lock(&mu_);
  auto it = gpadls_.find(handle);
  if (it == gpadls_.end() || it->second.gpadl.child_relid != relid) {
    return absl::NotFoundError(absl::StrFormat(
        "channel %d has no GPADL with handle 0x%x", relid, handle));
  }
  if (it->second.in_use) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "GPADL 0x%x is the ring of channel %d, not a buffer", handle, relid));
  }
  absl::StatusOr<MappedGpadl> mapped = MapGpadlPages(it->second.gpadl, memory_);
  if (mapped.ok()) it->second.lent_to_vsp = true;
  return mapped;
}

// ------------------------------------------------------------- observers

bool VmbusServer::connected() const {
  absl::MutexLock lock(&mu_);
  return version_ != 0;
}
uint32_t VmbusServer::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}
bool VmbusServer::channel_open(uint32_t relid) const {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(relid);
  return it != channels_.end() && it->second.state == ChannelState::kOpen;
}
bool VmbusServer::channel_offered(uint32_t relid) const {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(relid);
  return it != channels_.end() && it->second.offered_to_guest;
}
size_t VmbusServer::gpadl_count() const {
  absl::MutexLock lock(&mu_);
  return gpadls_.size();
}
uint64_t VmbusServer::dropped_messages() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace vmbus
