#ifndef HVSTACK_GUEST_UNIXHV_VMBUS_H_
#define HVSTACK_GUEST_UNIXHV_VMBUS_H_

// A VMBus client (the guest side of hv_vmbus), from Linux's public layouts
// (include/linux/hyperv.h, drivers/hv/): version negotiation, offers,
// GPADLs, channel open / close, unload. Host messages arrive in the SynIC
// message slot of SINT 2; channel signals as event flags on the same SINT;
// the guest signals a channel with HvSignalEvent on the offer's connection
// id (no monitor pages). Single VP, interrupt-driven with a periodic LAPIC
// timer as a safety net: every wait is `sti; hlt`, never a busy loop.

#include <stddef.h>
#include <stdint.h>

#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/vmbus_ring.h"

namespace unixhv::vmbus {

// Protocol versions (major << 16 | minor), newest first as Linux's
// vmbus_versions[] offers them.
inline constexpr uint32_t kVersionWin8 = (2 << 16) | 4;
inline constexpr uint32_t kVersionWin8_1 = (3 << 16) | 0;
inline constexpr uint32_t kVersionWin10 = (4 << 16) | 0;
inline constexpr uint32_t kVersionWin10V4_1 = (4 << 16) | 1;
inline constexpr uint32_t kVersionWin10V5 = (5 << 16) | 0;
inline constexpr uint32_t kVersionWin10V5_1 = (5 << 16) | 1;
inline constexpr uint32_t kVersionWin10V5_2 = (5 << 16) | 2;
inline constexpr uint32_t kVersionWin10V5_3 = (5 << 16) | 3;
inline constexpr uint32_t kVersions[] = {
    kVersionWin10V5_3, kVersionWin10V5_2, kVersionWin10V5_1, kVersionWin10V5,
    kVersionWin10V4_1, kVersionWin10,     kVersionWin8_1,    kVersionWin8};

inline constexpr uint8_t kMessageSint = 2;
inline constexpr uint32_t kMessageConnectionId = 1;
inline constexpr uint32_t kMessageConnectionId4 = 4;    // INITIATE_CONTACT, V5+
inline constexpr uint32_t kSynicMessageType = 1;        // vmbus_post_msg
inline constexpr uint32_t kFirstGpadlHandle = 0xE1E10;  // as Linux

enum MessageType : uint32_t {
  kMsgOfferChannel = 1,
  kMsgRescindChannelOffer = 2,
  kMsgRequestOffers = 3,
  kMsgAllOffersDelivered = 4,
  kMsgOpenChannel = 5,
  kMsgOpenChannelResult = 6,
  kMsgCloseChannel = 7,
  kMsgGpadlHeader = 8,
  kMsgGpadlBody = 9,
  kMsgGpadlCreated = 10,
  kMsgGpadlTeardown = 11,
  kMsgGpadlTorndown = 12,
  kMsgRelidReleased = 13,
  kMsgInitiateContact = 14,
  kMsgVersionResponse = 15,
  kMsgUnload = 16,
  kMsgUnloadResponse = 17,
};

struct Guid {
  uint8_t bytes[16];
  bool operator==(const Guid& o) const {
    for (int i = 0; i < 16; ++i) {
      if (bytes[i] != o.bytes[i]) return false;
    }
    return true;
  }
};
// Builds a guid_t from its text fields (the first three little-endian).
constexpr Guid MakeGuid(uint32_t d1, uint16_t d2, uint16_t d3, uint8_t b0,
                        uint8_t b1, uint8_t b2, uint8_t b3, uint8_t b4,
                        uint8_t b5, uint8_t b6, uint8_t b7) {
  return Guid{{static_cast<uint8_t>(d1), static_cast<uint8_t>(d1 >> 8),
               static_cast<uint8_t>(d1 >> 16), static_cast<uint8_t>(d1 >> 24),
               static_cast<uint8_t>(d2), static_cast<uint8_t>(d2 >> 8),
               static_cast<uint8_t>(d3), static_cast<uint8_t>(d3 >> 8), b0, b1,
               b2, b3, b4, b5, b6, b7}};
}

#pragma pack(push, 1)
struct MessageHeader {
  uint32_t msgtype;
  uint32_t padding;
};
struct InitiateContact {
  MessageHeader header;
  uint32_t vmbus_version_requested;
  uint32_t target_vcpu;
  uint64_t interrupt_page_or_sint;  // V5+: byte 0 SINT, byte 1 VTL
  uint64_t monitor_page1;
  uint64_t monitor_page2;
};
struct VersionResponse {
  MessageHeader header;
  uint8_t version_supported;
  uint8_t connection_state;
  uint16_t padding;
  uint32_t msg_conn_id;
};
struct OfferChannel {
  MessageHeader header;
  Guid if_type;
  Guid if_instance;
  uint64_t reserved1, reserved2;
  uint16_t chn_flags;
  uint16_t mmio_megabytes;
  uint8_t user_def[120];
  uint16_t sub_channel_index;
  uint16_t reserved3;
  uint32_t child_relid;
  uint8_t monitorid;
  uint8_t monitor_allocated;
  uint16_t is_dedicated_interrupt;
  uint32_t connection_id;
};
static_assert(sizeof(OfferChannel) == 196);
struct RelidMessage {  // RESCIND, CLOSECHANNEL, RELID_RELEASED
  MessageHeader header;
  uint32_t child_relid;
};
struct OpenChannel {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t openid;
  uint32_t ringbuffer_gpadlhandle;
  uint32_t target_vp;
  uint32_t downstream_ringbuffer_pageoffset;
  uint8_t userdata[120];
};
static_assert(sizeof(OpenChannel) == 148);
struct OpenChannelResult {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t openid;
  uint32_t status;
};
struct GpadlHeader {  // + gpa_range {byte_count, byte_offset, pfns[]}...
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
  uint16_t range_buflen;
  uint16_t rangecount;
};
static_assert(sizeof(GpadlHeader) == 20);
struct GpadlBody {  // + pfns[]
  MessageHeader header;
  uint32_t msgnumber;
  uint32_t gpadl;
};
struct GpadlCreated {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
  uint32_t creation_status;
};
struct GpadlTeardown {
  MessageHeader header;
  uint32_t child_relid;
  uint32_t gpadl;
};
struct GpadlTorndown {
  MessageHeader header;
  uint32_t gpadl;
};
#pragma pack(pop)

struct Offer {
  Guid type;
  Guid instance;
  uint32_t relid = 0;
  uint32_t connection_id = 0;
  bool rescinded = false;
};

// An open channel: two rings in one GPADL (guest-to-host first, as Linux).
struct Channel {
  uint32_t relid = 0;
  uint32_t connection_id = 0;
  uint32_t gpadl = 0;
  Ring out;  // guest -> host
  Ring in;   // host -> guest
  bool open = false;
  bool broken = false;  // the host wrote something malformed

  // Writes a packet and signals the host if it must be told. False if the
  // ring has no room or the host is gone.
  bool Send(uint16_t type, uint16_t flags, uint64_t trans_id,
            const void* payload, uint32_t len);
  // The same with a header extension (GPA-direct page lists).
  bool SendExtended(uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void* extension, uint32_t extension_len,
                    const void* payload, uint32_t len);
  // One packet from the host: 1 read, 0 none, -1 malformed (then `broken`).
  int Receive(PacketDescriptor* desc, void* payload, uint32_t capacity,
              uint32_t* len);
  // The whole packet, descriptor and header extension included.
  int ReceivePacket(void* packet, uint32_t capacity, uint32_t* len);
  void Signal();
};

// Interrupts: the SINT vector and a periodic LAPIC timer, both only wake
// `WaitForInterrupt`. Call once, after EnableSynic for the same SINT vector.
void InstallInterrupts(uint8_t sint_vector, uint8_t timer_vector,
                       uint32_t timer_period_ms);
// sti; hlt unless an interrupt came since the last call.
void WaitForInterrupt();
// What a VMBus client needs before Client::Connect, as hv_vmbus sets it up:
// the hypercall page, the reference TSC page, the SynIC (kMessageSint on
// `sint_vector`) and InstallInterrupts with a 50 ms timer. nullptr when
// done, else what is missing.
const char* EnableHyperV(uint8_t sint_vector, uint8_t timer_vector);

class Client {
 public:
  static constexpr int kMaxOffers = 16;

  // INITIATE_CONTACT with each version in kVersions (none newer than
  // `max_version`) until the host accepts one (waits up to `timeout_ms` per
  // try). The accepted version or 0.
  uint32_t Connect(uint32_t max_version = kVersions[0],
                   uint32_t timeout_ms = 2000);
  // REQUESTOFFERS; collects offers until ALLOFFERS_DELIVERED.
  bool RequestOffers(uint32_t timeout_ms = 2000);
  int offer_count() const { return offer_count_; }
  const Offer& offer(int i) const { return offers_[i]; }
  const Offer* FindOffer(const Guid& type) const;

  // A GPADL over `pages` contiguous pages at `base`; 0 on failure
  // (`*status` is the host's creation_status, ~0u on timeout).
  uint32_t CreateGpadl(uint32_t relid, void* base, uint32_t pages,
                       uint32_t* status, uint32_t timeout_ms = 2000);
  bool TeardownGpadl(uint32_t relid, uint32_t gpadl,
                     uint32_t timeout_ms = 2000);
  // GPADL + OPENCHANNEL over `send_pages` + `recv_pages` fresh pages (each
  // count includes its ring's header page). `*status` = the host's result.
  bool Open(const Offer& offer, Channel* channel, uint32_t send_pages,
            uint32_t recv_pages, uint32_t* status, uint32_t timeout_ms = 2000);
  // CLOSECHANNEL, then the ring GPADL's teardown (as vmbus_close).
  void Close(Channel* channel);
  // UNLOAD and wait for UNLOAD_RESPONSE.
  bool Unload(uint32_t timeout_ms = 2000);

  // Raw channel message (retries while the host's buffers are full); the
  // HvPostMessage status.
  uint16_t Post(const void* message, uint32_t size);
  // Handles every message waiting in the SINT slot; clears event flags.
  void Poll();

  // Polls and halts until `done()` holds or `timeout_ms` passed.
  template <typename Pred>
  bool WaitUntil(Pred done, uint32_t timeout_ms) {
    const uint64_t deadline =
        hv::ReadReferenceTime() + uint64_t{timeout_ms} * 10000;
    for (;;) {
      Poll();
      if (done()) return true;
      if (hv::ReadReferenceTime() > deadline) return false;
      WaitForInterrupt();
    }
  }

  uint32_t version() const { return version_; }
  uint32_t next_gpadl_handle() { return next_gpadl_++; }
  uint32_t unknown_messages() const { return unknown_messages_; }

  // Replies as last seen, for callers that drive the protocol by hand.
  struct Reply {
    bool seen = false;
    uint32_t relid = 0;
    uint32_t id = 0;  // gpadl handle or openid
    uint32_t status = 0;
  };
  Reply last_gpadl_created;
  Reply last_open_result;
  Reply last_torndown;
  bool unload_response = false;

 private:
  void Handle(const uint8_t* payload, uint32_t size);

  uint32_t version_ = 0;
  uint32_t msg_conn_id_ = kMessageConnectionId;
  bool version_answered_ = false;
  bool version_ok_ = false;
  bool all_offers_ = false;
  Offer offers_[kMaxOffers];
  int offer_count_ = 0;
  uint32_t next_gpadl_ = kFirstGpadlHandle;
  uint32_t unknown_messages_ = 0;
  void* monitor_pages_ = nullptr;
};

}  // namespace unixhv::vmbus

#endif  // HVSTACK_GUEST_UNIXHV_VMBUS_H_
