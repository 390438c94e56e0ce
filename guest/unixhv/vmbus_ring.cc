#include "guest/unixhv/vmbus_ring.h"

#include "guest/unixhv/pages.h"

namespace unixhv::vmbus {

void Ring::Init(void* base, size_t pages) {
  ZeroPage(base);
  header_ = static_cast<RingHeader*>(base);
  data_ = static_cast<uint8_t*>(base) + kPageSize;
  size_ = static_cast<uint32_t>((pages - 1) * kPageSize);
  header_->feature_bits = 1;
}

namespace {

// Copies with 8-byte words where both sides allow it: ring offsets and
// packet starts are multiples of 8, and at ~0.6 us per emulated guest
// instruction a byte loop over a 7.5 KiB KVP message costs tens of ms.
void CopyBytes(uint8_t* dst, const uint8_t* src, uint32_t n) {
  if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) &
       7) == 0) {
    auto* d = reinterpret_cast<uint64_t*>(dst);
    auto* s = reinterpret_cast<const uint64_t*>(src);
    const uint32_t words = n / 8;
    for (uint32_t i = 0; i < words; ++i) d[i] = s[i];
    dst += words * 8;
    src += words * 8;
    n -= words * 8;
  }
  for (uint32_t i = 0; i < n; ++i) dst[i] = src[i];
}

}  // namespace

void Ring::CopyIn(uint32_t at, const void* src, uint32_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  const uint32_t first = n < size_ - at ? n : size_ - at;
  CopyBytes(data_ + at, s, first);
  CopyBytes(data_, s + first, n - first);
}

void Ring::CopyOut(uint32_t at, void* dst, uint32_t n) const {
  auto* d = static_cast<uint8_t*>(dst);
  const uint32_t first = n < size_ - at ? n : size_ - at;
  CopyBytes(d, data_ + at, first);
  CopyBytes(d + first, data_, n - first);
}

uint32_t Ring::Avail(uint32_t read, uint32_t write) const {
  return write >= read ? write - read : size_ - read + write;
}

bool Ring::Write(uint16_t type, uint16_t flags, uint64_t trans_id,
                 const void* payload, uint32_t len, bool* signal) {
  return WriteExtended(type, flags, trans_id, nullptr, 0, payload, len, signal);
}

bool Ring::WriteExtended(uint16_t type, uint16_t flags, uint64_t trans_id,
                         const void* extension, uint32_t extension_len,
                         const void* payload, uint32_t len, bool* signal) {
  *signal = false;
  if ((extension_len & 7) != 0) return false;
  const uint32_t head = sizeof(PacketDescriptor) + extension_len;
  const uint32_t packet = head + len;
  const uint32_t aligned = (packet + 7) & ~7u;
  const uint32_t total = aligned + 8;
  const uint32_t write = header_->write_index;
  const uint32_t read = __atomic_load_n(&header_->read_index, __ATOMIC_ACQUIRE);
  if (write >= size_ || read >= size_) return false;  // host broke the ring
  const uint32_t free = size_ - Avail(read, write);
  if (free <= total) return false;  // never fill the ring completely
  PacketDescriptor d{type, static_cast<uint16_t>(head / 8),
                     static_cast<uint16_t>(aligned / 8), flags, trans_id};
  uint32_t at = write;
  CopyIn(at, &d, sizeof(d));
  at = (at + sizeof(d)) % size_;
  if (extension_len != 0) {
    CopyIn(at, extension, extension_len);
    at = (at + extension_len) % size_;
  }
  CopyIn(at, payload, len);
  at = (at + len) % size_;
  const uint64_t zero = 0;
  CopyIn(at, &zero, aligned - packet);
  at = (at + aligned - packet) % size_;
  const uint64_t trailer = uint64_t{write} << 32;
  CopyIn(at, &trailer, 8);
  at = (at + 8) % size_;
  __atomic_store_n(&header_->write_index, at, __ATOMIC_RELEASE);
  // hv_signal_on_write: full barrier, then interrupt only if the reader is
  // not draining and the ring was empty before this packet.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (header_->interrupt_mask == 0 &&
      __atomic_load_n(&header_->read_index, __ATOMIC_ACQUIRE) == write) {
    *signal = true;
  }
  return true;
}

void Ring::WriteRaw(const void* bytes, uint32_t len, uint32_t new_write_index) {
  const uint32_t write = header_->write_index % size_;
  CopyIn(write, bytes, len);
  __atomic_store_n(&header_->write_index, new_write_index, __ATOMIC_RELEASE);
}

int Ring::ReadPacket(void* packet, uint32_t capacity, uint32_t* len,
                     bool* signal) {
  PacketDescriptor desc;
  uint32_t payload_len = 0;
  // Peek the descriptor's offset8, then read from the packet's start.
  const uint32_t read = header_->read_index;
  const uint32_t write =
      __atomic_load_n(&header_->write_index, __ATOMIC_ACQUIRE);
  if (read >= size_ || write >= size_ || (write & 7) != 0) return -1;
  if (read == write) return 0;
  if (Avail(read, write) < sizeof(PacketDescriptor) + 8) return -1;
  CopyOut(read, &desc, sizeof(desc));
  const uint32_t offset = uint32_t{desc.offset8} * 8;
  const uint32_t total = uint32_t{desc.len8} * 8;
  if (offset < sizeof(desc) || offset > total || total > capacity) return -1;
  // Read copies the payload; the descriptor and extension come first.
  auto* out = static_cast<uint8_t*>(packet);
  CopyOut((read + sizeof(desc)) % size_, out + sizeof(desc),
          offset - sizeof(desc));
  const int r =
      Read(&desc, out + offset, capacity - offset, &payload_len, signal);
  if (r != 1) return r;
  for (uint32_t i = 0; i < sizeof(desc); ++i)
    out[i] = reinterpret_cast<const uint8_t*>(&desc)[i];
  *len = offset + payload_len;
  return 1;
}

int Ring::Read(PacketDescriptor* desc, void* payload, uint32_t capacity,
               uint32_t* len, bool* signal) {
  *signal = false;
  const uint32_t read = header_->read_index;
  const uint32_t write =
      __atomic_load_n(&header_->write_index, __ATOMIC_ACQUIRE);
  if (read >= size_ || write >= size_ || (write & 7) != 0) return -1;
  if (read == write) return 0;
  const uint32_t avail = Avail(read, write);
  if (avail < sizeof(PacketDescriptor) + 8) return -1;
  CopyOut(read, desc, sizeof(*desc));
  const uint32_t packet = uint32_t{desc->len8} * 8;
  const uint32_t offset = uint32_t{desc->offset8} * 8;
  if (packet < sizeof(PacketDescriptor) || offset < sizeof(PacketDescriptor) ||
      offset > packet || packet + 8 > avail) {
    return -1;
  }
  *len = packet - offset;
  if (*len > capacity) return -1;  // bigger than any IC message
  CopyOut((read + offset) % size_, payload, *len);
  const uint32_t free_before = size_ - avail;
  const uint32_t next = (read + packet + 8) % size_;
  __atomic_store_n(&header_->read_index, next, __ATOMIC_RELEASE);
  // hv_pkt_iter_close: a writer that posted pending_send_sz waits for that
  // much room; tell it when we made it.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  const uint32_t pending = header_->pending_send_sz;
  if (pending != 0) {
    // Only on the transition from "not enough" to "enough" room, with
    // Linux's inequalities (a writer that needs `pending` bytes is blocked
    // while free space <= pending).
    const uint32_t free_now = free_before + packet + 8;
    if (free_now > pending && free_before <= pending) *signal = true;
  }
  return 1;
}

}  // namespace unixhv::vmbus
