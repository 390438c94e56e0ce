#ifndef HVSTACK_VMWP_VMBUS_RING_LAYOUT_H_
#define HVSTACK_VMWP_VMBUS_RING_LAYOUT_H_

// The VMBus ring buffer as Linux's hv_vmbus lays it out (include/linux/
// hyperv.h: struct hv_ring_buffer, struct vmpacket_descriptor). A ring is one
// header page followed by the data area; indices are byte offsets into the
// data area, always multiples of 8. Every packet is
//   vmpacket_descriptor (16 bytes) | header extension | payload | padding to 8
// followed by an 8-byte "previous index" trailer (the writer's write index
// before the packet, shifted left by 32), which readers skip.

#include <cstddef>
#include <cstdint>

namespace vmbus {

struct RingHeader {
  uint32_t write_index;      // owned by the writer
  uint32_t read_index;       // owned by the reader
  uint32_t interrupt_mask;   // set by the reader while it drains the ring
  uint32_t pending_send_sz;  // set by a blocked writer: bytes it waits for
  uint32_t reserved1[12];
  uint32_t feature_bits;  // bit 0: feat_pending_send_sz
  uint8_t reserved2[4096 - 68];
};
static_assert(sizeof(RingHeader) == 4096);
static_assert(offsetof(RingHeader, write_index) == 0);
static_assert(offsetof(RingHeader, read_index) == 4);
static_assert(offsetof(RingHeader, interrupt_mask) == 8);
static_assert(offsetof(RingHeader, pending_send_sz) == 12);
static_assert(offsetof(RingHeader, feature_bits) == 64);

inline constexpr uint32_t kRingFeatPendingSendSz = 1;

#pragma pack(push, 1)
struct PacketDescriptor {
  uint16_t type;
  uint16_t offset8;  // start of the payload, in 8-byte units from the start
  uint16_t len8;     // whole packet length (without trailer), 8-byte units
  uint16_t flags;
  uint64_t trans_id;
};
#pragma pack(pop)
static_assert(sizeof(PacketDescriptor) == 16);
static_assert(offsetof(PacketDescriptor, offset8) == 2);
static_assert(offsetof(PacketDescriptor, len8) == 4);
static_assert(offsetof(PacketDescriptor, flags) == 6);
static_assert(offsetof(PacketDescriptor, trans_id) == 8);

inline constexpr uint32_t kPacketTrailerSize = 8;  // the previous-index u64

// enum vmbus_packet_type.
enum PacketType : uint16_t {
  kPacketInvalid = 0x0,
  kPacketSynch = 0x1,
  kPacketAddXferPageset = 0x2,
  kPacketRmXferPageset = 0x3,
  kPacketEstablishGpadl = 0x4,
  kPacketTeardownGpadl = 0x5,
  kPacketDataInband = 0x6,
  kPacketDataUsingXferPages = 0x7,
  kPacketDataUsingGpadl = 0x8,
  kPacketDataUsingGpaDirect = 0x9,
  kPacketCancelRequest = 0xa,
  kPacketCompletion = 0xb,
  kPacketDataUsingAdditionalPacket = 0xc,
  kPacketAdditionalData = 0xd,
};
inline constexpr uint16_t kPacketTypeMax = kPacketAdditionalData;

inline constexpr uint16_t kPacketFlagCompletionRequested = 1;

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_RING_LAYOUT_H_
