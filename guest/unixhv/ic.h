#ifndef HVSTACK_GUEST_UNIXHV_IC_H_
#define HVSTACK_GUEST_UNIXHV_IC_H_

// Integration-component services, guest side, as Linux's hv_utils runs them
// (drivers/hv/hv_util.c, hv_kvp.c; layouts from include/linux/hyperv.h and
// include/uapi/linux/hyperv.h): the IC framework negotiation and heartbeat,
// shutdown, time sync and KVP. Every request arrives as VM_PKT_DATA_INBAND
// (pipe header, IC header, body); the guest answers in the same buffer with
// icflags = TRANSACTION | RESPONSE and the same transaction id.

#include <stddef.h>
#include <stdint.h>

#include "guest/unixhv/serial.h"
#include "guest/unixhv/vmbus.h"

namespace unixhv::ic {

#pragma pack(push, 1)
struct IcVersion {
  uint16_t major;
  uint16_t minor;
};
struct IcMsgHeader {  // after the 8-byte vmbuspipe_hdr
  IcVersion icverframe;
  uint16_t icmsgtype;
  IcVersion icvermsg;
  uint16_t icmsgsize;
  uint32_t status;
  uint8_t ictransaction_id;
  uint8_t icflags;
  uint8_t reserved[2];
};
static_assert(sizeof(IcMsgHeader) == 20);
#pragma pack(pop)

inline constexpr uint32_t kIcHeadersSize = 28;  // ICMSG_HDR

enum IcMessageType : uint16_t {
  kIcNegotiate = 0,
  kIcHeartbeat = 1,
  kIcKvpExchange = 2,
  kIcShutdown = 3,
  kIcTimeSync = 4,
};
inline constexpr uint8_t kIcFlagTransaction = 1;
inline constexpr uint8_t kIcFlagResponse = 4;
inline constexpr uint32_t kSOk = 0;
inline constexpr uint32_t kEFail = 0x80004005;
inline constexpr uint32_t kSCont = 0x80070103;

// Offer GUIDs (HV_*_GUID).
inline constexpr vmbus::Guid kHeartbeatGuid = vmbus::MakeGuid(
    0x57164f39, 0x9115, 0x4e78, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d);
inline constexpr vmbus::Guid kShutdownGuid = vmbus::MakeGuid(
    0x0e0b6031, 0x5213, 0x4934, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb);
inline constexpr vmbus::Guid kTimeSyncGuid = vmbus::MakeGuid(
    0x9527e630, 0xd0ae, 0x497b, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf);
inline constexpr vmbus::Guid kKvpGuid = vmbus::MakeGuid(
    0xa9a0f4e7, 0x5a45, 0x4d96, 0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6);

// vmbus_prep_negotiate_resp: picks the first of our framework and service
// versions (newest first) that the host also lists, and rewrites the
// negotiate body in place (counts 1/1 and the two versions, or 0/0).
// False if the message is too short for what it claims to list.
bool PrepareNegotiateResponse(uint8_t* msg, uint32_t len,
                              const IcVersion* framework, int framework_count,
                              const IcVersion* service, int service_count,
                              IcVersion* chosen_framework,
                              IcVersion* chosen_service);

// Intrinsic KVP items (the auto pool), as the Linux KVP daemon reports them.
struct KvpItem {
  const char* key;
  const char* value;
};

// The four IC channels of one guest.
class Services {
 public:
  // `prefix` starts every console line (e.g. "enlightened: ").
  Services(Serial& console, const char* prefix) : con_(console), p_(prefix) {}

  void set_intrinsic(const KvpItem* items, int count) {
    intrinsic_ = items;
    intrinsic_count_ = count;
  }
  // Partition reference time (100 ns) for the time-sync delay; host-side
  // tests replace the MSR / TSC-page read.
  void set_reference_time(uint64_t (*now)()) { now_ = now; }
  // The channel of `kind` is opened but its requests get no answer, not even
  // the version negotiation: what Linux's hv_utils does for KVP until
  // hv_kvp_daemon runs.
  void set_silent(int kind) {
    if (kind >= 0 && kind < kKinds) services_[kind].silent = true;
  }
  // Opens every IC channel among the client's offers; prints
  // "opened <name>" (or why not). Returns how many opened.
  int OpenAll(vmbus::Client& client);
  // Answers every request waiting in the open channels.
  void Service();
  // CLOSECHANNEL + GPADL teardown for each open channel.
  void CloseAll(vmbus::Client& client);

  enum Kind { kHeartbeat, kShutdown, kTimeSync, kKvp, kKinds };
  // Rewrites one request (pipe header onwards, `len` bytes) into its
  // response in place, as the channel of `kind` does before sending it back.
  // Public for host-side interop tests against vmwp/vsp/ic.
  void HandlePacket(Kind kind, uint8_t* msg, uint32_t len);

  bool shutdown_requested() const { return shutdown_requested_; }
  uint32_t shutdown_flags() const { return shutdown_flags_; }
  uint64_t heartbeats() const { return heartbeats_; }
  bool time_sample_seen() const { return time_samples_ != 0; }

 private:
  struct Service_ {
    const char* name;
    vmbus::Channel channel;
    bool negotiated = false;
    bool silent = false;
    IcVersion framework{0, 0};
    IcVersion version{0, 0};
  };
  void OnHeartbeat(uint8_t* body, uint32_t body_len);
  uint32_t OnShutdown(uint8_t* body, uint32_t body_len);
  void OnTimeSync(Service_& s, uint8_t* body, uint32_t body_len);
  uint32_t OnKvp(uint8_t* body, uint32_t body_len);
  void Line(const char* text);

  Serial& con_;
  const char* p_;
  Service_ services_[kKinds] = {
      {"heartbeat", {}}, {"shutdown", {}}, {"timesync", {}}, {"kvp", {}}};
  uint64_t (*now_)() = hv::ReadReferenceTime;
  const KvpItem* intrinsic_ = nullptr;
  int intrinsic_count_ = 0;
  bool shutdown_requested_ = false;
  uint32_t shutdown_flags_ = 0;
  uint64_t heartbeats_ = 0;
  uint64_t time_samples_ = 0;
  uint64_t kvp_enumerations_ = 0;
};

}  // namespace unixhv::ic

#endif  // HVSTACK_GUEST_UNIXHV_IC_H_
