#ifndef HVSTACK_GUEST_UNIXHV_VMBUS_RING_H_
#define HVSTACK_GUEST_UNIXHV_VMBUS_RING_H_

// One VMBus ring buffer in Linux's layout (include/linux/hyperv.h: struct
// hv_ring_buffer, struct vmpacket_descriptor): a header page, then the data
// area. Indices are byte offsets into the data area, multiples of 8. A
// packet is descriptor | payload | padding to 8 | 8-byte trailer (the
// writer's previous write index << 32). The writer never fills the ring
// completely (equal indices mean empty).

#include <stddef.h>
#include <stdint.h>

namespace unixhv::vmbus {

struct RingHeader {
  volatile uint32_t write_index;
  volatile uint32_t read_index;
  volatile uint32_t interrupt_mask;
  volatile uint32_t pending_send_sz;
  uint32_t reserved1[12];
  volatile uint32_t feature_bits;  // bit 0: feat_pending_send_sz
};

struct PacketDescriptor {
  uint16_t type;
  uint16_t offset8;
  uint16_t len8;
  uint16_t flags;
  uint64_t trans_id;
} __attribute__((packed));
static_assert(sizeof(PacketDescriptor) == 16);

inline constexpr uint16_t kPacketDataInband = 6;
inline constexpr uint16_t kPacketDataUsingGpaDirect = 9;
inline constexpr uint16_t kPacketCompletion = 11;
inline constexpr uint16_t kFlagCompletionRequested = 1;

class Ring {
 public:
  // `pages` pages at `base` (header + data). Clears the header as Linux's
  // hv_ringbuffer_init does and advertises feat_pending_send_sz.
  void Init(void* base, size_t pages);

  RingHeader* header() const { return header_; }
  uint8_t* data() const { return data_; }
  uint32_t size() const { return size_; }

  // Writer side (guest-to-host ring). Returns false if the packet does not
  // fit now. `*signal` says whether the host must be told (Linux's
  // hv_signal_on_write: the ring was empty before and the reader did not
  // mask interrupts).
  bool Write(uint16_t type, uint16_t flags, uint64_t trans_id,
             const void* payload, uint32_t len, bool* signal);
  // The same with a header extension (a multiple of 8 bytes) between the
  // descriptor and the payload, covered by offset8: the GPA-direct page
  // list of vmbus_sendpacket_mpb_desc.
  bool WriteExtended(uint16_t type, uint16_t flags, uint64_t trans_id,
                     const void* extension, uint32_t extension_len,
                     const void* payload, uint32_t len, bool* signal);
  // Writes `len` raw bytes at the current write index and publishes
  // `new_write_index` as is: the hostile guest's way to put garbage in.
  void WriteRaw(const void* bytes, uint32_t len, uint32_t new_write_index);

  // Reader side (host-to-guest ring). 1: a packet was copied into `payload`
  // (at most `capacity` bytes; `*len` its payload length), 0: the ring is
  // empty, -1: the host wrote something malformed (the channel is unusable).
  // `*signal` is set when the host waits for room (pending_send_sz) and now
  // has it.
  int Read(PacketDescriptor* desc, void* payload, uint32_t capacity,
           uint32_t* len, bool* signal);
  // The same, but the whole packet (descriptor, header extension, payload;
  // `*len` = len8 * 8) lands in `packet`: for transfer-page packets, whose
  // ranges are in the extension.
  int ReadPacket(void* packet, uint32_t capacity, uint32_t* len, bool* signal);

 private:
  void CopyIn(uint32_t at, const void* src, uint32_t n);
  void CopyOut(uint32_t at, void* dst, uint32_t n) const;
  uint32_t Avail(uint32_t read, uint32_t write) const;  // bytes to read

  RingHeader* header_ = nullptr;
  uint8_t* data_ = nullptr;
  uint32_t size_ = 0;
};

}  // namespace unixhv::vmbus

#endif  // HVSTACK_GUEST_UNIXHV_VMBUS_RING_H_
