#ifndef HVSTACK_GUEST_UNIXHV_STORVSC_H_
#define HVSTACK_GUEST_UNIXHV_STORVSC_H_

// A storvsc client: the guest side of the synthetic SCSI controller, from
// Linux's public layouts (drivers/scsi/storvsc_drv.c, include/linux/hyperv.h)
// and driven the way storvsc drives it: vstor initialization
// (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION newest first,
// QUERY_PROPERTIES, END_INITIALIZATION), then EXECUTE_SRB, in-band without
// data and VM_PKT_DATA_USING_GPA_DIRECT with a buffer (one range of
// identity-mapped guest pages). Single VP, one request at a time (the
// hostile guest sends what it likes through Send).

#include <stddef.h>
#include <stdint.h>

#include "guest/unixhv/vmbus.h"

namespace unixhv::storvsc {

// {ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}
inline constexpr vmbus::Guid kScsiType = vmbus::MakeGuid(
    0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f);

enum Operation : uint32_t {
  kOpCompleteIo = 1,
  kOpExecuteSrb = 3,
  kOpResetBus = 6,
  kOpBeginInitialization = 7,
  kOpEndInitialization = 8,
  kOpQueryProtocolVersion = 9,
  kOpQueryProperties = 10,
  kOpCreateSubChannels = 13,
};
inline constexpr uint16_t kVersions[] = {(6 << 8) | 2, (6 << 8) | 0,
                                         (5 << 8) | 1};
inline constexpr uint8_t kSrbStatusSuccess = 0x01;
inline constexpr uint8_t kSrbStatusError = 0x04;
inline constexpr uint8_t kSrbStatusInvalidRequest = 0x06;
inline constexpr uint8_t kSrbStatusInvalidLun = 0x20;
inline constexpr uint8_t kSrbStatusAutosenseValid = 0x80;
inline constexpr uint8_t kScsiCheckCondition = 0x02;

#pragma pack(push, 1)
struct VmscsiRequest {
  uint16_t length;
  uint8_t srb_status;
  uint8_t scsi_status;
  uint8_t port_number;
  uint8_t path_id;
  uint8_t target_id;
  uint8_t lun;
  uint8_t cdb_length;
  uint8_t sense_info_length;
  uint8_t data_in;
  uint8_t reserved;
  uint32_t data_transfer_length;
  uint8_t cdb_or_sense[20];
  uint16_t reserve;
  uint8_t queue_tag;
  uint8_t queue_action;
  uint32_t srb_flags;
  uint32_t time_out_value;
  uint32_t queue_sort_ey;
};
static_assert(sizeof(VmscsiRequest) == 52);
struct ChannelProperties {
  uint32_t reserved;
  uint16_t max_channel_cnt;
  uint16_t reserved1;
  uint32_t flags;
  uint32_t max_transfer_bytes;
  uint64_t reserved2;
};
struct VstorPacket {
  uint32_t operation;
  uint32_t flags;
  uint32_t status;
  union {
    VmscsiRequest srb;
    ChannelProperties properties;
    uint16_t version;  // major << 8 | minor, then a u16 revision
    uint16_t sub_channel_count;
    uint8_t buffer[0x34];
  };
};
static_assert(sizeof(VstorPacket) == 64);
#pragma pack(pop)

// An SRB as storvsc_queuecommand builds it.
void BuildSrb(VstorPacket* p, uint8_t path, uint8_t target, uint8_t lun,
              const uint8_t* cdb, uint8_t cdb_length, uint32_t length,
              bool data_in);
// The GPA-direct page list for `length` bytes at guest-physical `gpa`:
// u32 reserved, u32 rangecount 1, u32 len, u32 offset, u64 pfn[]. Returns
// the bytes written to `out` (0 if `capacity` is too small).
uint32_t BuildGpaDirect(uint64_t gpa, uint32_t length, uint8_t* out,
                        uint32_t capacity);

struct Result {
  bool answered = false;  // a reply came (else: timeout or broken channel)
  uint32_t status = 0;    // vstor status
  uint8_t srb_status = 0;
  uint8_t scsi_status = 0;
  uint8_t sense_key = 0, asc = 0, ascq = 0;
  uint32_t transferred = 0;
  bool good() const {
    return answered && status == 0 && srb_status == kSrbStatusSuccess &&
           scsi_status == 0;
  }
  bool sense(uint8_t key, uint8_t a, uint8_t q) const {
    return answered && scsi_status == kScsiCheckCondition &&
           (srb_status & kSrbStatusAutosenseValid) != 0 && sense_key == key &&
           asc == a && ascq == q;
  }
};
// Reads a reply packet into a Result.
Result ParseReply(const VstorPacket& reply);

class Controller {
 public:
  // Opens the controller's channel with `ring_pages` pages each way
  // (header included); false on failure.
  bool Open(vmbus::Client& bus, const vmbus::Offer& offer,
            uint32_t ring_pages = 8);
  void Close();
  // storvsc_channel_init: the negotiated version (0 on failure).
  uint16_t Initialize();
  const ChannelProperties& properties() const { return properties_; }

  // One control operation; the reply in `*p`. False on timeout.
  bool Control(VstorPacket* p, uint32_t timeout_ms = 2000);
  // One SRB; `buffer` (identity-mapped) may be null when length is 0.
  Result Execute(uint8_t target, uint8_t lun, const uint8_t* cdb,
                 uint8_t cdb_length, void* buffer, uint32_t length,
                 bool data_in, uint8_t path = 0);

  // Raw access for the hostile guest: sends a packet (with an optional
  // extension) and waits for the reply with `trans_id`.
  bool Send(uint16_t type, uint64_t trans_id, const void* extension,
            uint32_t extension_len, const void* payload, uint32_t len);
  bool WaitReply(uint64_t trans_id, VstorPacket* out,
                 uint32_t timeout_ms = 2000);
  // Drops whatever replies are waiting; returns how many.
  uint32_t Drain();
  uint64_t NextId() { return next_id_++; }
  vmbus::Channel& channel() { return channel_; }

 private:
  vmbus::Client* bus_ = nullptr;
  vmbus::Channel channel_;
  ChannelProperties properties_{};
  uint64_t next_id_ = 1;
};

}  // namespace unixhv::storvsc

#endif  // HVSTACK_GUEST_UNIXHV_STORVSC_H_
