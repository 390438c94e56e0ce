#ifndef HVSTACK_VMWP_VMBUS_TEST_GUEST_RING_H_
#define HVSTACK_VMWP_VMBUS_TEST_GUEST_RING_H_

// The guest's side of a VMBus ring as Linux's hv_vmbus drives it
// (drivers/hv/ring_buffer.c), written from the public layouts for tests: a
// protocol peer for the host's RingReader/RingWriter, not a mock of them.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "vmwp/vmbus/ring_layout.h"

namespace vmbus::testing {

struct GuestPacket {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint64_t trans_id = 0;
  std::vector<uint8_t> data;
  // Bytes between the descriptor and offset8 (transfer-page header ...).
  std::vector<uint8_t> extension;
};

// `header` is the ring's header page; `data` its data area (contiguous in the
// test's flat memory).
class GuestRing {
 public:
  GuestRing(uint8_t* header, uint8_t* data, uint32_t data_size)
      : h_(reinterpret_cast<RingHeader*>(header)),
        data_(data),
        size_(data_size) {}

  // What Linux's hv_ringbuffer_init does to both of its rings.
  void Init() {
    std::memset(h_, 0, sizeof(RingHeader));
    h_->feature_bits = kRingFeatPendingSendSz;
  }
  RingHeader* header() { return h_; }

  uint32_t BytesToWrite() const {
    uint32_t r = h_->read_index, w = h_->write_index;
    return w >= r ? size_ - (w - r) : r - w;
  }
  uint32_t BytesToRead() const {
    uint32_t r = h_->read_index, w = h_->write_index;
    return w >= r ? w - r : size_ - r + w;
  }

  // hv_ringbuffer_write: returns nullopt when full, else whether the guest
  // would signal the host (ring was empty and the host did not mask).
  std::optional<bool> Write(uint16_t type, uint16_t flags, uint64_t trans_id,
                            std::span<const uint8_t> payload) {
    return Write(type, flags, trans_id, {}, payload);
  }
  // With `extension` (a multiple of 8 bytes) between the descriptor and the
  // payload, as vmbus_sendpacket_mpb_desc writes GPA-direct packets.
  std::optional<bool> Write(uint16_t type, uint16_t flags, uint64_t trans_id,
                            std::span<const uint8_t> extension,
                            std::span<const uint8_t> payload) {
    const uint32_t head = 16 + static_cast<uint32_t>(extension.size());
    uint32_t len = (head + payload.size() + 7) & ~7u;
    uint32_t total = len + 8;
    if (BytesToWrite() <= total) return std::nullopt;
    uint32_t old_write = h_->write_index;
    PacketDescriptor d{type, static_cast<uint16_t>(head / 8),
                       static_cast<uint16_t>(len / 8), flags, trans_id};
    uint32_t at = old_write;
    at = Put(at, &d, sizeof(d));
    at = Put(at, extension.data(), extension.size());
    at = Put(at, payload.data(), payload.size());
    static constexpr uint8_t kPad[8] = {};  // len is 8-aligned: < 8 bytes
    at = Put(at, kPad, len - head - payload.size());
    uint64_t prev = uint64_t{old_write} << 32;
    at = Put(at, &prev, 8);
    h_->write_index = at;
    if (h_->interrupt_mask) return false;
    return old_write == h_->read_index;
  }

  // The same (the name storvsp's tests use).
  std::optional<bool> WriteExtended(uint16_t type, uint16_t flags,
                                    uint64_t trans_id,
                                    std::span<const uint8_t> extension,
                                    std::span<const uint8_t> payload) {
    return Write(type, flags, trans_id, extension, payload);
  }

  // Writes raw bytes at the write index and publishes them as-is (for
  // malformed packets).
  void WriteRaw(std::span<const uint8_t> bytes) {
    h_->write_index = Put(h_->write_index, bytes.data(), bytes.size());
  }

  // hv_pkt_iter_first/next + close: one packet, read index published.
  std::optional<GuestPacket> Read() {
    GuestPacket p;
    if (!Read(p)) return std::nullopt;
    return p;
  }
  // The same into `p`, reusing its buffers (benchmarks); false if empty.
  bool Read(GuestPacket& p) {
    if (BytesToRead() < 16) return false;
    PacketDescriptor d;
    Get(h_->read_index, &d, sizeof(d));
    p.type = d.type;
    p.flags = d.flags;
    p.trans_id = d.trans_id;
    uint32_t off = d.offset8 * 8, len = d.len8 * 8;
    p.data.resize(len - off);
    Get((h_->read_index + off) % size_, p.data.data(), p.data.size());
    p.extension.resize(off - 16);
    Get((h_->read_index + 16) % size_, p.extension.data(), p.extension.size());
    h_->read_index = (h_->read_index + len + 8) % size_;
    return true;
  }

 private:
  // At most two memcpys (the wrap): benchmarks use this peer too.
  uint32_t Put(uint32_t at, const void* src, size_t n) {
    auto* s = static_cast<const uint8_t*>(src);
    at %= size_;
    const size_t first = std::min<size_t>(n, size_ - at);
    if (first > 0) std::memcpy(data_ + at, s, first);
    if (n > first) std::memcpy(data_, s + first, n - first);
    return static_cast<uint32_t>((at + n) % size_);
  }
  void Get(uint32_t at, void* dst, size_t n) const {
    auto* d = static_cast<uint8_t*>(dst);
    at %= size_;
    const size_t first = std::min<size_t>(n, size_ - at);
    if (first > 0) std::memcpy(d, data_ + at, first);
    if (n > first) std::memcpy(d + first, data_, n - first);
  }

  RingHeader* h_;
  uint8_t* data_;
  uint32_t size_;
};

}  // namespace vmbus::testing

#endif  // HVSTACK_VMWP_VMBUS_TEST_GUEST_RING_H_
