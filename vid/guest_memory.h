#ifndef HVSTACK_VID_GUEST_MEMORY_H_
#define HVSTACK_VID_GUEST_MEMORY_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vid {

// A partition's RAM: one anonymous host mapping, laid out in guest-physical
// space as
//   low RAM:  [0, min(size, 3 GiB))
//   high RAM: [4 GiB, 4 GiB + (size - 3 GiB))   only when size > 3 GiB
// leaving [3 GiB, 4 GiB) as the MMIO hole (IOAPIC, LAPIC, future PCI BARs,
// KVM's TSS pages).
//
// Every accessor checks the whole [gpa, gpa+len) range against one RAM region
// with overflow-safe arithmetic: the guest is untrusted and GPAs come from it.
// An access that leaves RAM or straddles two regions (i.e. touches the hole) is
// an OutOfRange error, never a partial copy. Thread-safe: the layout is
// immutable; the bytes are guest memory and racy by nature.
class GuestMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;
  static constexpr uint64_t kLowRamEnd =
      3ull << 30;  // 0xC0000000: start of the MMIO hole
  static constexpr uint64_t kHighRamStart = 4ull << 30;  // 0x100000000

  struct Region {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;
  };

  // `size_bytes` must be a non-zero multiple of 2 MiB (so the guest can map it
  // with 2 MiB pages) and at most 1 TiB.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(
      uint64_t size_bytes);

  // How a restored VM gets its RAM back from a memory file
  // (vid/memory_file.h).
  enum class LoadMode {
    // Anonymous memory, the file's data extents read into it (pread): every
    // page is private from the start and the file is no longer needed.
    kEager,
    // The file mapped MAP_PRIVATE (copy-on-write), as Firecracker restores
    // a snapshot: nothing is read until the guest touches a page, writes
    // stay in this process. The file must never change while mapped (vmms
    // only ever replaces state files by rename); its descriptor is kept.
    kMapPrivate,
  };
  // Guest RAM of `size_bytes` whose content is `fd`'s bytes from `offset`
  // (holes read as zero). `fd` is duplicated; the caller keeps its own.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> CreateFromFile(
      uint64_t size_bytes, int fd, uint64_t offset, LoadMode mode);

  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const { return size_; }
  // One or two regions, ascending by gpa. Loaders build the e820 map from
  // these.
  std::span<const Region> regions() const { return regions_; }

  // True if [gpa, gpa+len) lies entirely inside one RAM region (len 0: gpa
  // inside or at its end).
  bool Contains(uint64_t gpa, uint64_t len) const;

  absl::Status Read(uint64_t gpa, std::span<uint8_t> out) const;
  absl::Status Write(uint64_t gpa, std::span<const uint8_t> data);
  // Fills [gpa, gpa+len) with `byte`.
  absl::Status Fill(uint64_t gpa, uint64_t len, uint8_t byte);

  // Returns every page to the host (madvise MADV_DONTNEED): all RAM reads as
  // zero afterwards, as after power-on, and costs nothing until touched. Used
  // by vid::Partition::Reset; the guest must not be running.
  absl::Status Discard();

  // The whole host mapping: regions() back to back, size() bytes.
  uint8_t* host_base() const { return base_; }
  // With kMapPrivate: the file behind the mapping and where RAM starts in it
  // (a page the guest never wrote still holds the file's bytes, so a save
  // must look at the file's data extents as well as resident pages). -1
  // otherwise.
  int source_fd() const { return source_fd_; }
  uint64_t source_offset() const { return source_offset_; }

  // Direct host view of [gpa, gpa+len). Valid for the GuestMemory's lifetime;
  // the guest may change it at any time, so copy before validating (no double
  // fetch).
  absl::StatusOr<std::span<uint8_t>> GetSpan(uint64_t gpa, uint64_t len);
  absl::StatusOr<std::span<const uint8_t>> GetSpan(uint64_t gpa,
                                                   uint64_t len) const;

  // Typed helpers for trivially copyable values (boot_params fields, e820
  // entries ...).
  template <typename T>
  absl::StatusOr<T> ReadObject(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status s = Read(
        gpa, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    if (!s.ok()) return s;
    return value;
  }
  template <typename T>
  absl::Status WriteObject(uint64_t gpa, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(gpa, std::span<const uint8_t>(
                          reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

 private:
  GuestMemory(uint8_t* base, uint64_t size);
  // The region holding all of [gpa, gpa+len), or nullptr.
  const Region* Find(uint64_t gpa, uint64_t len) const;
  absl::Status RangeError(uint64_t gpa, uint64_t len) const;

  uint8_t* const base_;  // mmap'd, size_ bytes; unmapped in the destructor
  const uint64_t size_;
  std::vector<Region> regions_;
  int source_fd_ = -1;  // owned (closed in the destructor) when >= 0
  uint64_t source_offset_ = 0;
};

}  // namespace vid

#endif  // HVSTACK_VID_GUEST_MEMORY_H_
