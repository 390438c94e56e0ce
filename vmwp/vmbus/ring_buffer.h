#ifndef HVSTACK_VMWP_VMBUS_RING_BUFFER_H_
#define HVSTACK_VMWP_VMBUS_RING_BUFFER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/ring_layout.h"

namespace vmbus {

// One ring (header page + data pages) as host addresses of guest pages. The
// pages need not be contiguous; when they are (the usual case with
// vid::GuestMemory), copies take a single-memcpy fast path.
class RingPages {
 public:
  // Rings larger than this are refused: indices are u32 and a guest has no
  // use for more (Linux's largest, netvsc's, is a few MiB).
  static constexpr uint32_t kMaxDataPages = 1u << 18;  // 1 GiB

  // pages[0] is the header page; at least one data page follows.
  static absl::StatusOr<RingPages> Create(std::vector<uint8_t*> pages);
  // Resolves `pfns` (header page first) through `memory`.
  static absl::StatusOr<RingPages> FromPfns(GuestPages& memory,
                                            std::span<const uint64_t> pfns);

  uint32_t data_size() const { return data_size_; }
  RingHeader* header() const { return header_; }

  // Copies `len` bytes from/to the data area starting at `offset`, wrapping
  // at the end. Preconditions (checked by the callers, who validated the
  // indices): offset < data_size(), len <= data_size().
  void CopyOut(uint32_t offset, uint8_t* dst, uint32_t len) const;
  void CopyIn(uint32_t offset, const uint8_t* src, uint32_t len) const;
  void Zero(uint32_t offset, uint32_t len) const;

 private:
  RingPages() = default;
  template <typename Fn>
  void ForEachChunk(uint32_t offset, uint32_t len, Fn fn) const;

  RingHeader* header_ = nullptr;
  std::vector<uint8_t*> data_pages_;
  uint8_t* contiguous_ = nullptr;  // set when all data pages are adjacent
  uint32_t data_size_ = 0;
};

// A packet copied out of a ring: validated once, never re-read from guest
// memory (no double fetch).
struct Packet {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint64_t trans_id = 0;
  uint32_t data_offset = 0;    // offset8 * 8: where the payload starts
  std::vector<uint8_t> bytes;  // len8 * 8 bytes, descriptor included

  std::span<const uint8_t> data() const {
    return std::span<const uint8_t>(bytes).subspan(data_offset);
  }
  // Bytes between the descriptor and the payload (transfer-page ranges,
  // GPA-direct ranges ...).
  std::span<const uint8_t> header_extension() const {
    return std::span<const uint8_t>(bytes).subspan(
        sizeof(PacketDescriptor), data_offset - sizeof(PacketDescriptor));
  }
};

// The host's reader of a ring the guest writes (the guest's outbound ring).
// The host owns read_index; the guest owns write_index, which is re-validated
// on every use. Any inconsistency breaks the reader for good: the error is
// returned from then on and the channel must be closed. Not thread-safe: one
// reader per ring, serialized by the channel.
class RingReader {
 public:
  // 0: packets may be as large as the ring allows.
  static absl::StatusOr<RingReader> Create(RingPages ring,
                                           uint32_t max_packet_size = 0);
  // A reader that continues a saved one (issue 14): `read` is its private
  // index, `published` the last one it stored to the header. Both are
  // checked against the ring.
  static absl::StatusOr<RingReader> Restore(RingPages ring, uint32_t read,
                                            uint32_t published,
                                            uint32_t max_packet_size = 0);
  uint32_t read_index() const { return read_; }
  uint32_t published_index() const { return published_; }

  // Copies the next packet into `packet` (reusing its buffer) and advances
  // the private read index. false: the ring is empty.
  absl::StatusOr<bool> Next(Packet* packet);

  // Publishes the private read index to the guest. Returns true when the
  // guest must be signalled: it announced (feat_pending_send_sz) that it
  // waits for pending_send_sz bytes, and this read is what made them free.
  absl::StatusOr<bool> Commit();

  // interrupt_mask protocol while draining: BeginDrain masks the guest's
  // signals; EndDrain unmasks and returns true if packets arrived meanwhile
  // (the caller then drains again instead of waiting for a signal that the
  // guest skipped).
  void BeginDrain();
  absl::StatusOr<bool> EndDrain();

  absl::StatusOr<uint32_t> BytesToRead();
  const absl::Status& status() const { return broken_; }
  uint32_t data_size() const { return ring_.data_size(); }

 private:
  RingReader(RingPages ring, uint32_t read, uint32_t max_packet_size)
      : ring_(std::move(ring)),
        read_(read),
        published_(read),
        max_packet_size_(max_packet_size) {}
  absl::StatusOr<uint32_t> LoadWriteIndex();
  absl::Status Break(absl::Status status);

  RingPages ring_;
  uint32_t read_;       // private read index (next packet)
  uint32_t published_;  // last value stored to the header
  uint32_t max_packet_size_;
  absl::Status broken_;
};

struct WriteResult {
  bool written = false;       // false: not enough room (pending_send_sz set)
  bool signal_guest = false;  // the ring was empty and the guest listens
};

// The host's writer to a ring the guest reads (the guest's inbound ring). The
// host owns write_index; the guest's read_index is re-validated on every
// write. Not thread-safe: the channel serializes writers.
class RingWriter {
 public:
  // Sets feat_pending_send_sz: the host announces it will post
  // pending_send_sz when blocked, so the guest signals when space frees.
  static absl::StatusOr<RingWriter> Create(RingPages ring);
  // A writer that continues a saved one (issue 14): its authoritative write
  // index (checked against the ring) and whether it had posted
  // pending_send_sz. The header is left as the guest memory has it.
  static absl::StatusOr<RingWriter> Restore(RingPages ring, uint32_t write,
                                            bool pending_set);
  uint32_t write_index() const { return write_; }
  bool pending_set() const { return pending_set_; }

  // Largest payload (with header extension) a single packet may carry.
  uint32_t max_payload() const;

  // Writes one packet: descriptor (offset8 covers `extension`), extension,
  // payload, padding, trailer. Never writes a partial packet; a ring whose
  // guest-owned index is corrupt makes this (and every later call) fail.
  absl::StatusOr<WriteResult> Write(uint16_t type, uint16_t flags,
                                    uint64_t trans_id,
                                    std::span<const uint8_t> extension,
                                    std::span<const uint8_t> payload);
  absl::StatusOr<WriteResult> Write(uint16_t type, uint16_t flags,
                                    uint64_t trans_id,
                                    std::span<const uint8_t> payload) {
    return Write(type, flags, trans_id, {}, payload);
  }

  // Free bytes as the writer sees them now.
  absl::StatusOr<uint32_t> BytesToWrite();
  const absl::Status& status() const { return broken_; }
  uint32_t data_size() const { return ring_.data_size(); }

 private:
  RingWriter(RingPages ring, uint32_t write)
      : ring_(std::move(ring)), write_(write) {}
  absl::StatusOr<uint32_t> LoadReadIndex();
  absl::Status Break(absl::Status status);

  RingPages ring_;
  uint32_t write_;  // authoritative write index (the guest cannot move it)
  bool pending_set_ = false;
  absl::Status broken_;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_RING_BUFFER_H_
