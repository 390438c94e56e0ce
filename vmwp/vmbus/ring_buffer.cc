#include "vmwp/vmbus/ring_buffer.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"

namespace vmbus {
namespace {

// Header fields live in guest memory and change under us: every access is a
// single atomic load or store (no torn or repeated reads).
uint32_t Load(uint32_t& field) {
  return std::atomic_ref<uint32_t>(field).load(std::memory_order_acquire);
}
void Store(uint32_t& field, uint32_t value) {
  std::atomic_ref<uint32_t>(field).store(value, std::memory_order_release);
}
// A store that is also a full barrier for the loads after it (an xchg on
// x86, cheaper than a store + mfence): what "publish an index, then look at
// the other side's fields" needs.
void StoreFenced(uint32_t& field, uint32_t value) {
  std::atomic_ref<uint32_t>(field).exchange(value, std::memory_order_seq_cst);
}

constexpr uint32_t kMinPacketBytes =
    sizeof(PacketDescriptor) + kPacketTrailerSize;

// Free bytes for the writer; the ring is empty when read == write, so a writer
// may never fill it completely (Linux's rule, kept on both sides).
uint32_t FreeBytes(uint32_t read, uint32_t write, uint32_t size) {
  return write >= read ? size - (write - read) : read - write;
}
uint32_t UsedBytes(uint32_t read, uint32_t write, uint32_t size) {
  return write >= read ? write - read : size - read + write;
}

absl::Status CheckIndex(const char* name, uint32_t index, uint32_t size) {
  if (index >= size) {
    return absl::DataLossError(absl::StrFormat(
        "ring %s 0x%x is outside the %d-byte data area", name, index, size));
  }
  if (index % 8 != 0) {
    return absl::DataLossError(
        absl::StrFormat("ring %s 0x%x is not 8-byte aligned", name, index));
  }
  return absl::OkStatus();
}

uint32_t Advance(uint32_t index, uint32_t by, uint32_t size) {
  // index < size and by <= size, so this cannot overflow a u64.
  return static_cast<uint32_t>((uint64_t{index} + by) % size);
}

}  // namespace

// ---------------------------------------------------------------- RingPages

absl::StatusOr<RingPages> RingPages::Create(std::vector<uint8_t*> pages) {
  if (pages.size() < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a ring needs a header page and at least one data page, got %d pages",
        pages.size()));
  }
  if (pages.size() - 1 > kMaxDataPages) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ring of %d pages is larger than the %d-page limit",
                        pages.size(), kMaxDataPages + 1));
  }
  RingPages ring;
  ring.header_ = reinterpret_cast<RingHeader*>(pages[0]);
  ring.data_pages_.assign(pages.begin() + 1, pages.end());
  ring.data_size_ = static_cast<uint32_t>(ring.data_pages_.size() * kPageSize);
  bool contiguous = true;
  for (size_t i = 1; i < ring.data_pages_.size() && contiguous; ++i) {
    contiguous = ring.data_pages_[i] == ring.data_pages_[i - 1] + kPageSize;
  }
  if (contiguous) ring.contiguous_ = ring.data_pages_[0];
  return ring;
}

absl::StatusOr<RingPages> RingPages::FromPfns(GuestPages& memory,
                                              std::span<const uint64_t> pfns) {
  std::vector<uint8_t*> pages;
  pages.reserve(pfns.size());
  for (uint64_t pfn : pfns) {
    absl::StatusOr<uint8_t*> host = memory.PageHost(pfn);
    if (!host.ok()) return host.status();
    pages.push_back(*host);
  }
  return Create(std::move(pages));
}

template <typename Fn>
void RingPages::ForEachChunk(uint32_t offset, uint32_t len, Fn fn) const {
  uint32_t done = 0;
  if (contiguous_ != nullptr) {
    uint32_t first = std::min(len, data_size_ - offset);
    fn(contiguous_ + offset, 0, first);
    if (first < len) fn(contiguous_, first, len - first);
    return;
  }
  while (done < len) {
    uint32_t page = offset / kPageSize;
    uint32_t in_page = offset % kPageSize;
    uint32_t n = std::min<uint32_t>(len - done, kPageSize - in_page);
    fn(data_pages_[page] + in_page, done, n);
    done += n;
    offset = Advance(offset, n, data_size_);
  }
}

void RingPages::CopyOut(uint32_t offset, uint8_t* dst, uint32_t len) const {
  ForEachChunk(offset, len, [dst](uint8_t* ring, uint32_t at, uint32_t n) {
    std::memcpy(dst + at, ring, n);
  });
}

void RingPages::CopyIn(uint32_t offset, const uint8_t* src,
                       uint32_t len) const {
  ForEachChunk(offset, len, [src](uint8_t* ring, uint32_t at, uint32_t n) {
    std::memcpy(ring, src + at, n);
  });
}

void RingPages::Zero(uint32_t offset, uint32_t len) const {
  ForEachChunk(offset, len, [](uint8_t* ring, uint32_t, uint32_t n) {
    std::memset(ring, 0, n);
  });
}

// --------------------------------------------------------------- RingReader

absl::StatusOr<RingReader> RingReader::Create(RingPages ring,
                                              uint32_t max_packet_size) {
  uint32_t read = Load(ring.header()->read_index);
  if (absl::Status s = CheckIndex("read index", read, ring.data_size());
      !s.ok()) {
    return s;
  }
  if (max_packet_size == 0 || max_packet_size > ring.data_size()) {
    max_packet_size = ring.data_size();
  }
  return RingReader(std::move(ring), read, max_packet_size);
}

absl::StatusOr<RingReader> RingReader::Restore(RingPages ring, uint32_t read,
                                               uint32_t published,
                                               uint32_t max_packet_size) {
  for (const auto& [name, index] :
       {std::pair<const char*, uint32_t>{"saved read index", read},
        std::pair<const char*, uint32_t>{"saved published read index",
                                         published}}) {
    if (absl::Status s = CheckIndex(name, index, ring.data_size()); !s.ok())
      return s;
  }
  if (max_packet_size == 0 || max_packet_size > ring.data_size()) {
    max_packet_size = ring.data_size();
  }
  RingReader reader(std::move(ring), read, max_packet_size);
  reader.published_ = published;
  return reader;
}

absl::Status RingReader::Break(absl::Status status) {
  if (broken_.ok()) broken_ = std::move(status);
  return broken_;
}

absl::StatusOr<uint32_t> RingReader::LoadWriteIndex() {
  uint32_t write = Load(ring_.header()->write_index);
  if (absl::Status s = CheckIndex("write index", write, ring_.data_size());
      !s.ok()) {
    return Break(s);
  }
  return write;
}

absl::StatusOr<uint32_t> RingReader::BytesToRead() {
  if (!broken_.ok()) return broken_;
  absl::StatusOr<uint32_t> write = LoadWriteIndex();
  if (!write.ok()) return write.status();
  return UsedBytes(read_, *write, ring_.data_size());
}

absl::StatusOr<bool> RingReader::Next(Packet* packet) {
  absl::StatusOr<uint32_t> avail = BytesToRead();
  if (!avail.ok()) return avail.status();
  if (*avail == 0) return false;
  if (*avail < kMinPacketBytes) {
    return Break(absl::DataLossError(absl::StrFormat(
        "ring holds %d bytes at 0x%x, less than a packet descriptor and "
        "trailer",
        *avail, read_)));
  }
  PacketDescriptor desc;
  ring_.CopyOut(read_, reinterpret_cast<uint8_t*>(&desc), sizeof(desc));
  const uint32_t len = uint32_t{desc.len8} * 8;
  const uint32_t offset = uint32_t{desc.offset8} * 8;
  if (desc.type == kPacketInvalid || desc.type > kPacketTypeMax) {
    return Break(absl::DataLossError(absl::StrFormat(
        "packet at 0x%x has invalid type %d", read_, desc.type)));
  }
  if (len < sizeof(PacketDescriptor)) {
    return Break(absl::DataLossError(absl::StrFormat(
        "packet at 0x%x: len8 %d is shorter than its descriptor", read_,
        desc.len8)));
  }
  if (offset < sizeof(PacketDescriptor) || offset > len) {
    return Break(absl::DataLossError(
        absl::StrFormat("packet at 0x%x: offset8 %d is outside [2, len8 %d]",
                        read_, desc.offset8, desc.len8)));
  }
  if (len > max_packet_size_) {
    return Break(absl::DataLossError(
        absl::StrFormat("packet at 0x%x: %d bytes exceed the %d-byte limit",
                        read_, len, max_packet_size_)));
  }
  if (uint64_t{len} + kPacketTrailerSize > *avail) {
    return Break(absl::DataLossError(absl::StrFormat(
        "packet at 0x%x: %d bytes plus trailer cross the write index (%d "
        "bytes written)",
        read_, len, *avail)));
  }
  packet->type = desc.type;
  packet->flags = desc.flags;
  packet->trans_id = desc.trans_id;
  packet->data_offset = offset;
  packet->bytes.resize(len);
  std::memcpy(packet->bytes.data(), &desc, sizeof(desc));
  ring_.CopyOut(Advance(read_, sizeof(desc), ring_.data_size()),
                packet->bytes.data() + sizeof(desc), len - sizeof(desc));
  read_ = Advance(read_, len + kPacketTrailerSize, ring_.data_size());
  return true;
}

absl::StatusOr<bool> RingReader::Commit() {
  if (!broken_.ok()) return broken_;
  if (read_ == published_) return false;
  const uint32_t size = ring_.data_size();
  const uint32_t old_published = published_;
  RingHeader* h = ring_.header();
  // The guest's writer stores pending_send_sz, then re-reads read_index; we
  // store read_index, then read pending_send_sz. The full barrier keeps one
  // of us from missing the other (Linux's hv_pkt_iter_close does the same).
  StoreFenced(h->read_index, read_);
  published_ = read_;
  if ((Load(h->feature_bits) & kRingFeatPendingSendSz) == 0) return false;
  const uint32_t pending = Load(h->pending_send_sz);
  if (pending == 0) return false;
  // The write index after the barrier: one loaded before it may predate
  // the writer's last packets, overstate the space it saw and lose its
  // wakeup (ring_signal_test stalled after ~59,000 packets once).
  absl::StatusOr<uint32_t> write = LoadWriteIndex();
  if (!write.ok()) return write.status();
  const uint32_t free_before = FreeBytes(old_published, *write, size);
  const uint32_t free_after = FreeBytes(read_, *write, size);
  return free_before <= pending && free_after > pending;
}

void RingReader::BeginDrain() {
  Store(ring_.header()->interrupt_mask, 1);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

absl::StatusOr<bool> RingReader::EndDrain() {
  Store(ring_.header()->interrupt_mask, 0);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  absl::StatusOr<uint32_t> avail = BytesToRead();
  if (!avail.ok()) return avail.status();
  return *avail != 0;
}

// --------------------------------------------------------------- RingWriter

absl::StatusOr<RingWriter> RingWriter::Create(RingPages ring) {
  uint32_t write = Load(ring.header()->write_index);
  if (absl::Status s = CheckIndex("write index", write, ring.data_size());
      !s.ok()) {
    return s;
  }
  RingHeader* h = ring.header();
  Store(h->feature_bits, Load(h->feature_bits) | kRingFeatPendingSendSz);
  Store(h->pending_send_sz, 0);
  return RingWriter(std::move(ring), write);
}

absl::StatusOr<RingWriter> RingWriter::Restore(RingPages ring, uint32_t write,
                                               bool pending_set) {
  if (absl::Status s = CheckIndex("saved write index", write, ring.data_size());
      !s.ok()) {
    return s;
  }
  RingWriter writer(std::move(ring), write);
  writer.pending_set_ = pending_set;
  return writer;
}

absl::Status RingWriter::Break(absl::Status status) {
  if (broken_.ok()) broken_ = std::move(status);
  return broken_;
}

uint32_t RingWriter::max_payload() const {
  // len8 is a u16; the ring must keep at least one free byte.
  uint32_t by_len8 = 0xFFFFu * 8 - sizeof(PacketDescriptor);
  uint32_t by_ring =
      ring_.data_size() - kPacketTrailerSize - sizeof(PacketDescriptor) - 8;
  return std::min(by_len8, by_ring);
}

absl::StatusOr<uint32_t> RingWriter::LoadReadIndex() {
  uint32_t read = Load(ring_.header()->read_index);
  if (absl::Status s = CheckIndex("read index", read, ring_.data_size());
      !s.ok()) {
    return Break(s);
  }
  return read;
}

absl::StatusOr<uint32_t> RingWriter::BytesToWrite() {
  if (!broken_.ok()) return broken_;
  absl::StatusOr<uint32_t> read = LoadReadIndex();
  if (!read.ok()) return read.status();
  return FreeBytes(*read, write_, ring_.data_size());
}

absl::StatusOr<WriteResult> RingWriter::Write(
    uint16_t type, uint16_t flags, uint64_t trans_id,
    std::span<const uint8_t> extension, std::span<const uint8_t> payload) {
  if (!broken_.ok()) return broken_;
  if (extension.size() % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "packet header extension of %d bytes is not a multiple of 8",
        extension.size()));
  }
  const uint64_t body = uint64_t{extension.size()} + payload.size();
  if (body > max_payload()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "packet of %d bytes exceeds the %d-byte maximum", body, max_payload()));
  }
  const uint32_t unpadded =
      sizeof(PacketDescriptor) + static_cast<uint32_t>(body);
  const uint32_t len = (unpadded + 7) & ~7u;
  const uint32_t total = len + kPacketTrailerSize;
  const uint32_t size = ring_.data_size();
  RingHeader* h = ring_.header();

  absl::StatusOr<uint32_t> read = LoadReadIndex();
  if (!read.ok()) return read.status();
  if (FreeBytes(*read, write_, size) <= total) {
    // Announce what we wait for, then look again: the guest may have freed
    // space between our load and its check of pending_send_sz.
    Store(h->pending_send_sz, total);
    pending_set_ = true;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    read = LoadReadIndex();
    if (!read.ok()) return read.status();
    if (FreeBytes(*read, write_, size) <= total) return WriteResult{};
  }

  const uint32_t old_write = write_;
  PacketDescriptor desc{
      type,
      static_cast<uint16_t>((sizeof(PacketDescriptor) + extension.size()) / 8),
      static_cast<uint16_t>(len / 8), flags, trans_id};
  uint32_t at = old_write;
  ring_.CopyIn(at, reinterpret_cast<const uint8_t*>(&desc), sizeof(desc));
  at = Advance(at, sizeof(desc), size);
  if (!extension.empty()) {
    ring_.CopyIn(at, extension.data(), extension.size());
    at = Advance(at, extension.size(), size);
  }
  if (!payload.empty()) {
    ring_.CopyIn(at, payload.data(), payload.size());
    at = Advance(at, payload.size(), size);
  }
  if (len > unpadded) {
    ring_.Zero(at, len - unpadded);
    at = Advance(at, len - unpadded, size);
  }
  const uint64_t trailer = uint64_t{old_write} << 32;
  ring_.CopyIn(at, reinterpret_cast<const uint8_t*>(&trailer), sizeof(trailer));
  write_ = Advance(at, sizeof(trailer), size);

  if (pending_set_) {
    Store(h->pending_send_sz, 0);
    pending_set_ = false;
  }
  // The packet bytes are visible before the new write index. The guest's
  // reader stores interrupt_mask = 0, then re-reads write_index; we store
  // write_index, then read the mask and read_index: a full barrier.
  StoreFenced(h->write_index, write_);
  WriteResult result;
  result.written = true;
  if (Load(h->interrupt_mask) == 0) {
    result.signal_guest = Load(h->read_index) == old_write;
  }
  return result;
}

}  // namespace vmbus
