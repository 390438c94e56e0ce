#include "guest/unixhv/vmbus.h"

#include "guest/unixhv/cpu.h"
#include "guest/unixhv/pages.h"

namespace unixhv::vmbus {
namespace {

volatile uint32_t wakeups = 0;

__attribute__((interrupt)) void SintHandler(InterruptFrame*) {
  wakeups = wakeups + 1;
  LapicEoi();
}

__attribute__((interrupt)) void TimerHandler(InterruptFrame*) {
  wakeups = wakeups + 1;
  LapicEoi();
}

uint32_t seen_wakeups = 0;

void Copy(void* dst, const void* src, uint32_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  auto* s = static_cast<const uint8_t*>(src);
  for (uint32_t i = 0; i < n; ++i) d[i] = s[i];
}

template <typename T>
T Zeroed(uint32_t type) {
  T m;
  auto* bytes = reinterpret_cast<uint8_t*>(&m);
  for (uint32_t i = 0; i < sizeof(T); ++i) bytes[i] = 0;
  m.header.msgtype = type;
  return m;
}

}  // namespace

void InstallInterrupts(uint8_t sint_vector, uint8_t timer_vector,
                       uint32_t timer_period_ms) {
  SetInterruptHandler(sint_vector, SintHandler);
  SetInterruptHandler(timer_vector, TimerHandler);
  MaskPic();
  LapicEnable();
  // Periodic LAPIC timer (KVM's LAPIC counts at 1 GHz): divide by 1, mode
  // periodic (bit 17). It only bounds how long a lost wakeup can stall us.
  LapicWrite(0x3E0, 0xB);
  LapicWrite(0x320, (1u << 17) | timer_vector);
  LapicWrite(0x380, timer_period_ms * 1000000u);
}

const char* EnableHyperV(uint8_t sint_vector, uint8_t timer_vector) {
  if (!hv::Detect().present) return "no Hyper-V interface";
  void* hypercall = AllocPages(1);
  if (hypercall == nullptr || !hv::EnableHypercalls(hypercall)) {
    return "no hypercall page";
  }
  hv::EnableReferenceTsc(AllocPages(1));
  hv::EnableSynic(AllocPages(1), AllocPages(1), kMessageSint, sint_vector);
  InstallInterrupts(sint_vector, timer_vector, 50);
  return nullptr;
}

void WaitForInterrupt() {
  Cli();
  if (wakeups == seen_wakeups) StiHlt();
  seen_wakeups = wakeups;
  asm volatile("sti" ::: "memory");
}

// ------------------------------------------------------------------ Channel

void Channel::Signal() { hv::SignalEvent(connection_id); }

bool Channel::Send(uint16_t type, uint16_t flags, uint64_t trans_id,
                   const void* payload, uint32_t len) {
  if (!open || broken) return false;
  bool signal = false;
  if (!out.Write(type, flags, trans_id, payload, len, &signal)) return false;
  if (signal) Signal();
  return true;
}

bool Channel::SendExtended(uint16_t type, uint16_t flags, uint64_t trans_id,
                           const void* extension, uint32_t extension_len,
                           const void* payload, uint32_t len) {
  if (!open || broken) return false;
  bool signal = false;
  if (!out.WriteExtended(type, flags, trans_id, extension, extension_len,
                         payload, len, &signal)) {
    return false;
  }
  if (signal) Signal();
  return true;
}

int Channel::ReceivePacket(void* packet, uint32_t capacity, uint32_t* len) {
  if (!open || broken) return 0;
  bool signal = false;
  const int r = in.ReadPacket(packet, capacity, len, &signal);
  if (r < 0) broken = true;
  if (signal) Signal();
  return r;
}

int Channel::Receive(PacketDescriptor* desc, void* payload, uint32_t capacity,
                     uint32_t* len) {
  if (!open || broken) return 0;
  bool signal = false;
  const int r = in.Read(desc, payload, capacity, len, &signal);
  if (r < 0) broken = true;
  if (signal) Signal();
  return r;
}

// ------------------------------------------------------------------- Client

uint16_t Client::Post(const void* message, uint32_t size) {
  uint16_t status = hv::kStatusInsufficientBuffers;
  for (int tries = 0; tries < 100; ++tries) {
    status = hv::PostMessage(msg_conn_id_, kSynicMessageType, message, size);
    if (status != hv::kStatusInsufficientBuffers) break;
    Poll();  // the host may be waiting for us to free our slot
    Pause();
  }
  return status;
}

void Client::Poll() {
  hv::Message* slot = hv::MessageSlot(kMessageSint);
  uint8_t payload[hv::kMessagePayloadSize];
  // Bounded: each EOM may bring the next queued message at once.
  for (int i = 0; i < 64 && slot->message_type != 0; ++i) {
    uint32_t size = slot->payload_size;
    if (size > hv::kMessagePayloadSize) size = hv::kMessagePayloadSize;
    Copy(payload, slot->payload, size);
    hv::FinishMessage(slot);
    Handle(payload, size);
  }
  hv::ClearAllEvents(kMessageSint);
}

void Client::Handle(const uint8_t* payload, uint32_t size) {
  if (size < sizeof(MessageHeader)) {
    ++unknown_messages_;
    return;
  }
  uint8_t buf[hv::kMessagePayloadSize] = {};
  Copy(buf, payload, size);
  const uint32_t type = reinterpret_cast<const MessageHeader*>(buf)->msgtype;
  switch (type) {
    case kMsgVersionResponse: {
      auto* m = reinterpret_cast<const VersionResponse*>(buf);
      version_answered_ = true;
      version_ok_ = m->version_supported != 0;
      if (version_ok_ && version_ >= kVersionWin10V5) {
        msg_conn_id_ = m->msg_conn_id;
      }
      return;
    }
    case kMsgOfferChannel: {
      auto* m = reinterpret_cast<const OfferChannel*>(buf);
      for (int i = 0; i < offer_count_; ++i) {
        if (offers_[i].relid == m->child_relid) {  // re-offer after unload
          offers_[i].type = m->if_type;
          offers_[i].instance = m->if_instance;
          offers_[i].connection_id = m->connection_id;
          offers_[i].rescinded = false;
          return;
        }
      }
      if (offer_count_ == kMaxOffers) return;
      Offer& o = offers_[offer_count_++];
      o.type = m->if_type;
      o.instance = m->if_instance;
      o.relid = m->child_relid;
      // Before WIN7 the connection id was implicit; every host we talk to
      // fills it in.
      o.connection_id = m->connection_id;
      o.rescinded = false;
      return;
    }
    case kMsgRescindChannelOffer: {
      auto* m = reinterpret_cast<const RelidMessage*>(buf);
      for (int i = 0; i < offer_count_; ++i) {
        if (offers_[i].relid == m->child_relid) offers_[i].rescinded = true;
      }
      // Linux answers a rescind with RELID_RELEASED once the device is gone.
      RelidMessage released = Zeroed<RelidMessage>(kMsgRelidReleased);
      released.child_relid = m->child_relid;
      Post(&released, sizeof(released));
      return;
    }
    case kMsgAllOffersDelivered:
      all_offers_ = true;
      return;
    case kMsgGpadlCreated: {
      auto* m = reinterpret_cast<const GpadlCreated*>(buf);
      last_gpadl_created = {true, m->child_relid, m->gpadl, m->creation_status};
      return;
    }
    case kMsgOpenChannelResult: {
      auto* m = reinterpret_cast<const OpenChannelResult*>(buf);
      last_open_result = {true, m->child_relid, m->openid, m->status};
      return;
    }
    case kMsgGpadlTorndown: {
      auto* m = reinterpret_cast<const GpadlTorndown*>(buf);
      last_torndown = {true, 0, m->gpadl, 0};
      return;
    }
    case kMsgUnloadResponse:
      unload_response = true;
      return;
    default:
      ++unknown_messages_;
      return;
  }
}

uint32_t Client::Connect(uint32_t max_version, uint32_t timeout_ms) {
  if (monitor_pages_ == nullptr) {
    // Linux always hands the host two monitor pages, even though this host
    // allocates no monitors; keep the message the same.
    monitor_pages_ = AllocPages(2);
    if (monitor_pages_ == nullptr) return 0;
    ZeroPage(monitor_pages_);
    ZeroPage(static_cast<uint8_t*>(monitor_pages_) + kPageSize);
  }
  for (uint32_t version : kVersions) {
    if (version > max_version) continue;
    InitiateContact m = Zeroed<InitiateContact>(kMsgInitiateContact);
    m.vmbus_version_requested = version;
    m.target_vcpu = 0;
    if (version >= kVersionWin10V5) {
      m.interrupt_page_or_sint = kMessageSint;  // VTL 0 in byte 1
      msg_conn_id_ = kMessageConnectionId4;
    } else {
      // The (unused) interrupt page: the host signals through event flags.
      m.interrupt_page_or_sint = reinterpret_cast<uint64_t>(monitor_pages_);
      msg_conn_id_ = kMessageConnectionId;
    }
    m.monitor_page1 = reinterpret_cast<uint64_t>(monitor_pages_);
    m.monitor_page2 = m.monitor_page1 + kPageSize;
    version_ = version;
    version_answered_ = false;
    version_ok_ = false;
    if (Post(&m, sizeof(m)) != hv::kStatusSuccess) continue;
    if (!WaitUntil([this] { return version_answered_; }, timeout_ms)) break;
    if (version_ok_) return version_;
  }
  version_ = 0;
  msg_conn_id_ = kMessageConnectionId;
  return 0;
}

bool Client::RequestOffers(uint32_t timeout_ms) {
  all_offers_ = false;
  MessageHeader m{kMsgRequestOffers, 0};
  if (Post(&m, sizeof(m)) != hv::kStatusSuccess) return false;
  return WaitUntil([this] { return all_offers_; }, timeout_ms);
}

const Offer* Client::FindOffer(const Guid& type) const {
  for (int i = 0; i < offer_count_; ++i) {
    if (offers_[i].type == type && !offers_[i].rescinded) return &offers_[i];
  }
  return nullptr;
}

uint32_t Client::CreateGpadl(uint32_t relid, void* base, uint32_t pages,
                             uint32_t* status, uint32_t timeout_ms) {
  // create_gpadl_header: one range; 26 PFNs fit the header message, 28
  // each body.
  const uint32_t handle = next_gpadl_++;
  uint8_t msg[hv::kMessagePayloadSize] = {};
  auto* h = reinterpret_cast<GpadlHeader*>(msg);
  h->header.msgtype = kMsgGpadlHeader;
  h->child_relid = relid;
  h->gpadl = handle;
  h->range_buflen = static_cast<uint16_t>(8 + pages * 8);
  h->rangecount = 1;
  auto* range = reinterpret_cast<uint32_t*>(msg + sizeof(GpadlHeader));
  range[0] = pages * kPageSize;  // byte_count
  range[1] = 0;                  // byte_offset
  const uint64_t first_pfn = reinterpret_cast<uint64_t>(base) / kPageSize;
  auto* pfns = reinterpret_cast<uint64_t*>(msg + sizeof(GpadlHeader) + 8);
  uint32_t sent = pages < 26 ? pages : 26;
  for (uint32_t i = 0; i < sent; ++i) pfns[i] = first_pfn + i;
  last_gpadl_created = {};
  Post(msg, sizeof(GpadlHeader) + 8 + sent * 8);
  for (uint32_t number = 0; sent < pages; ++number) {
    uint8_t body[hv::kMessagePayloadSize] = {};
    auto* b = reinterpret_cast<GpadlBody*>(body);
    b->header.msgtype = kMsgGpadlBody;
    b->msgnumber = number;
    b->gpadl = handle;
    const uint32_t n = pages - sent < 28 ? pages - sent : 28;
    auto* body_pfns = reinterpret_cast<uint64_t*>(body + sizeof(GpadlBody));
    for (uint32_t i = 0; i < n; ++i) body_pfns[i] = first_pfn + sent + i;
    Post(body, sizeof(GpadlBody) + n * 8);
    sent += n;
  }
  *status = ~0u;
  if (!WaitUntil(
          [&] {
            return last_gpadl_created.seen && last_gpadl_created.id == handle;
          },
          timeout_ms)) {
    return 0;
  }
  *status = last_gpadl_created.status;
  return *status == 0 ? handle : 0;
}

bool Client::TeardownGpadl(uint32_t relid, uint32_t gpadl,
                           uint32_t timeout_ms) {
  GpadlTeardown m = Zeroed<GpadlTeardown>(kMsgGpadlTeardown);
  m.child_relid = relid;
  m.gpadl = gpadl;
  last_torndown = {};
  if (Post(&m, sizeof(m)) != hv::kStatusSuccess) return false;
  return WaitUntil(
      [&] { return last_torndown.seen && last_torndown.id == gpadl; },
      timeout_ms);
}

bool Client::Open(const Offer& offer, Channel* channel, uint32_t send_pages,
                  uint32_t recv_pages, uint32_t* status, uint32_t timeout_ms) {
  *status = ~0u;
  void* rings = AllocPages(send_pages + recv_pages);
  if (rings == nullptr) return false;
  channel->relid = offer.relid;
  channel->connection_id = offer.connection_id;
  channel->out.Init(rings, send_pages);
  channel->in.Init(static_cast<uint8_t*>(rings) + send_pages * kPageSize,
                   recv_pages);
  channel->broken = false;
  channel->gpadl =
      CreateGpadl(offer.relid, rings, send_pages + recv_pages, status);
  if (channel->gpadl == 0) return false;
  OpenChannel m = Zeroed<OpenChannel>(kMsgOpenChannel);
  m.child_relid = offer.relid;
  m.openid = offer.relid;  // as Linux
  m.ringbuffer_gpadlhandle = channel->gpadl;
  m.target_vp = 0;
  m.downstream_ringbuffer_pageoffset = send_pages;
  last_open_result = {};
  if (Post(&m, sizeof(m)) != hv::kStatusSuccess) return false;
  if (!WaitUntil(
          [&] {
            return last_open_result.seen &&
                   last_open_result.relid == offer.relid;
          },
          timeout_ms)) {
    return false;
  }
  *status = last_open_result.status;
  channel->open = *status == 0;
  return channel->open;
}

void Client::Close(Channel* channel) {
  if (!channel->open) return;
  RelidMessage m = Zeroed<RelidMessage>(kMsgCloseChannel);
  m.child_relid = channel->relid;
  Post(&m, sizeof(m));
  channel->open = false;
  TeardownGpadl(channel->relid, channel->gpadl);
}

bool Client::Unload(uint32_t timeout_ms) {
  unload_response = false;
  MessageHeader m{kMsgUnload, 0};
  if (Post(&m, sizeof(m)) != hv::kStatusSuccess) return false;
  const bool ok = WaitUntil([this] { return unload_response; }, timeout_ms);
  version_ = 0;
  return ok;
}

}  // namespace unixhv::vmbus
