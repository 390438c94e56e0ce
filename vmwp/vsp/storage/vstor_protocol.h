#ifndef HVSTACK_VMWP_VSP_STORAGE_VSTOR_PROTOCOL_H_
#define HVSTACK_VMWP_VSP_STORAGE_VSTOR_PROTOCOL_H_

// The storage VSC/VSP protocol ("vstor") as Linux's hv_storvsc speaks it
// (drivers/scsi/storvsc_drv.c: struct vstor_packet, struct vmscsi_request,
// struct vmstorage_channel_properties, struct vmstorage_protocol_version;
// include/linux/hyperv.h: struct vmbus_packet_mpb_array, HV_SCSI_GUID).
// Only layouts and constants here; the logic is in storvsp.cc.
//
// Every request is one vstor_packet (64 bytes). Control operations travel as
// VM_PKT_DATA_INBAND; EXECUTE_SRB with a data buffer travels as
// VM_PKT_DATA_USING_GPA_DIRECT, whose header extension (between the VMBus
// descriptor and the vstor_packet) names the guest pages of the buffer:
//   u32 reserved | u32 rangecount | { u32 len | u32 offset | u64 pfn[] } ...
// The host answers every request with one vstor_packet (operation
// COMPLETE_IO) in a VM_PKT_COMP packet carrying the request's transaction id.

#include <cstddef>
#include <cstdint>

#include "vmwp/vmbus/channel_messages.h"

namespace vsp::storage {

// {ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}: the synthetic SCSI controller
// (HV_SCSI_GUID), the class Linux's storvsc binds to.
inline vmbus::Guid ScsiInterfaceType() {
  return vmbus::Guid::FromFields(
      0xba6163d9, 0x04a1, 0x4d29,
      {0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f});
}

// enum vstor_packet_operation.
enum VstorOperation : uint32_t {
  kOpCompleteIo = 1,
  kOpRemoveDevice = 2,
  kOpExecuteSrb = 3,
  kOpResetLun = 4,
  kOpResetAdapter = 5,
  kOpResetBus = 6,
  kOpBeginInitialization = 7,
  kOpEndInitialization = 8,
  kOpQueryProtocolVersion = 9,
  kOpQueryProperties = 10,
  kOpEnumerateBus = 11,
  kOpFcHbaData = 12,
  kOpCreateSubChannels = 13,
};
const char* VstorOperationName(uint32_t op);

// VMSTOR_PROTO_VERSION(major, minor) = major << 8 | minor. Linux offers
// these, newest first (protocol_version[]); older ones (WIN7 4.2, WIN6 2.0)
// have a shorter vmscsi_request and are not offered by current Linux.
inline constexpr uint16_t kVersionWin8 = (5 << 8) | 1;
inline constexpr uint16_t kVersionWin8_1 = (6 << 8) | 0;
inline constexpr uint16_t kVersionWin10 = (6 << 8) | 2;

// vstor_packet.flags.
inline constexpr uint32_t kRequestCompletionFlag = 1;

// NTSTATUS values the host puts in vstor_packet.status (Linux only checks
// for zero).
inline constexpr uint32_t kStatusSuccess = 0;
inline constexpr uint32_t kStatusInvalidParameter = 0xC000000D;
inline constexpr uint32_t kStatusRevisionMismatch = 0xC0000059;
inline constexpr uint32_t kStatusNotSupported = 0xC00000BB;
inline constexpr uint32_t kStatusInvalidDeviceState = 0xC0000184;

// SRB flags (vmscsi_request.srb_flags).
inline constexpr uint32_t kSrbFlagsDataIn = 0x40;
inline constexpr uint32_t kSrbFlagsDataOut = 0x80;

// vmscsi_request.data_in (enum storvsc_request_type).
inline constexpr uint8_t kWriteType = 0;
inline constexpr uint8_t kReadType = 1;
inline constexpr uint8_t kUnknownType = 2;

// SRB status: low 6 bits a code, 0x80 sense valid, 0x40 queue frozen.
inline constexpr uint8_t kSrbStatusSuccess = 0x01;
inline constexpr uint8_t kSrbStatusAborted = 0x02;
inline constexpr uint8_t kSrbStatusError = 0x04;
// Windows' SRB_STATUS_BUSY; Linux's storvsc passes the SCSI status (BUSY)
// on, and its SCSI layer retries.
inline constexpr uint8_t kSrbStatusBusy = 0x05;
inline constexpr uint8_t kSrbStatusInvalidRequest = 0x06;
inline constexpr uint8_t kSrbStatusDataOverrun = 0x12;
inline constexpr uint8_t kSrbStatusInvalidLun = 0x20;
inline constexpr uint8_t kSrbStatusAutosenseValid = 0x80;

// STORVSC_MAX_CMD_LEN, STORVSC_SENSE_BUFFER_SIZE.
inline constexpr size_t kMaxCdbLength = 16;
inline constexpr size_t kSenseBufferSize = 0x14;

// storage_channel_properties.flags.
inline constexpr uint32_t kChannelSupportsMultiChannel = 1;

#pragma pack(push, 1)

struct VmscsiRequest {
  uint16_t length;  // sizeof(VmscsiRequest) from WIN8 on
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
  union {
    uint8_t cdb[kMaxCdbLength];
    uint8_t sense_data[kSenseBufferSize];
  };
  // Added in WIN8.
  uint16_t reserve;
  uint8_t queue_tag;
  uint8_t queue_action;
  uint32_t srb_flags;
  uint32_t time_out_value;
  uint32_t queue_sort_ey;
};
static_assert(sizeof(VmscsiRequest) == 52);
static_assert(offsetof(VmscsiRequest, srb_status) == 2);
static_assert(offsetof(VmscsiRequest, scsi_status) == 3);
static_assert(offsetof(VmscsiRequest, path_id) == 5);
static_assert(offsetof(VmscsiRequest, target_id) == 6);
static_assert(offsetof(VmscsiRequest, lun) == 7);
static_assert(offsetof(VmscsiRequest, cdb_length) == 8);
static_assert(offsetof(VmscsiRequest, sense_info_length) == 9);
static_assert(offsetof(VmscsiRequest, data_in) == 10);
static_assert(offsetof(VmscsiRequest, data_transfer_length) == 12);
static_assert(offsetof(VmscsiRequest, cdb) == 16);
static_assert(offsetof(VmscsiRequest, sense_data) == 16);
static_assert(offsetof(VmscsiRequest, reserve) == 36);
static_assert(offsetof(VmscsiRequest, srb_flags) == 40);

struct ChannelProperties {  // struct vmstorage_channel_properties
  uint32_t reserved;
  uint16_t max_channel_cnt;  // sub-channels the guest may ask for
  uint16_t reserved1;
  uint32_t flags;
  uint32_t max_transfer_bytes;
  uint64_t reserved2;
};
static_assert(sizeof(ChannelProperties) == 24);
static_assert(offsetof(ChannelProperties, max_channel_cnt) == 4);
static_assert(offsetof(ChannelProperties, flags) == 8);
static_assert(offsetof(ChannelProperties, max_transfer_bytes) == 12);

struct ProtocolVersion {  // struct vmstorage_protocol_version
  uint16_t major_minor;
  uint16_t revision;
};
static_assert(sizeof(ProtocolVersion) == 4);

struct VstorPacket {
  uint32_t operation;  // VstorOperation
  uint32_t flags;
  uint32_t status;
  union {
    VmscsiRequest vm_srb;
    ChannelProperties properties;
    ProtocolVersion version;
    uint16_t sub_channel_count;
    uint8_t buffer[0x34];
  };
};
static_assert(sizeof(VstorPacket) == 64);
static_assert(offsetof(VstorPacket, status) == 8);
static_assert(offsetof(VstorPacket, vm_srb) == 12);
static_assert(offsetof(VstorPacket, properties) == 12);
static_assert(offsetof(VstorPacket, version) == 12);
static_assert(offsetof(VstorPacket, sub_channel_count) == 12);

#pragma pack(pop)

// What Linux sizes its receive buffer for (STORVSC_MAX_PKT_SIZE): a reply
// is exactly one VstorPacket after a 16-byte descriptor, no extension.
inline constexpr size_t kMaxReplyPacketSize = 16 + sizeof(VstorPacket);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_VSTOR_PROTOCOL_H_
