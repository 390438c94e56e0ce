#include "vid/io_dispatcher.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace vid {
namespace {

const char* KindName(IoDispatcher::UnhandledKind kind) {
  switch (kind) {
    case IoDispatcher::kPortRead:
      return "port read";
    case IoDispatcher::kPortWrite:
      return "port write";
    case IoDispatcher::kMmioRead:
      return "MMIO read";
    case IoDispatcher::kMmioWrite:
      return "MMIO write";
    default:
      return "?";
  }
}

// Finds the range in `ranges` (keyed by first address, end exclusive) that
// holds `addr`.
template <typename Map>
auto FindIn(const Map& ranges, uint64_t addr) -> decltype(ranges.begin()) {
  auto it = ranges.upper_bound(addr);
  if (it == ranges.begin()) return ranges.end();
  --it;
  return addr < it->second.end ? it : ranges.end();
}

// Rejects [first, end) if it overlaps any registered range.
template <typename Map>
absl::Status CheckFree(const Map& ranges, uint64_t first, uint64_t end,
                       absl::string_view what, absl::string_view name) {
  auto it = ranges.lower_bound(end);  // first range starting at or after `end`
  if (it != ranges.begin()) {
    --it;  // the last range starting before `end`
    if (it->second.end > first) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "%s: %s [0x%x, 0x%x) overlaps '%s' at [0x%x, 0x%x)", name, what,
          first, end, it->second.name, it->first, it->second.end));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status IoDispatcher::RegisterPortIo(absl::string_view name,
                                          uint16_t first, uint32_t count,
                                          PortIoHandler* handler) {
  uint64_t end = uint64_t{first} + count;
  if (handler == nullptr || count == 0 || end > 0x10000) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: bad port range 0x%x+%d (must be non-empty, within "
                        "0-0xffff, with a handler)",
                        name, first, count));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFree(ports_, first, end, "ports", name); !s.ok())
    return s;
  ports_.emplace(first, Range<PortIoHandler>{end, std::string(name), handler});
  return absl::OkStatus();
}

absl::Status IoDispatcher::RegisterMmio(absl::string_view name, uint64_t gpa,
                                        uint64_t len, MmioHandler* handler) {
  if (handler == nullptr || len == 0 || gpa + len < gpa) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: bad MMIO range 0x%x+0x%x (must be non-empty, not "
                        "wrap, with a handler)",
                        name, gpa, len));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckFree(mmio_, gpa, gpa + len, "MMIO", name); !s.ok())
    return s;
  mmio_.emplace(gpa, Range<MmioHandler>{gpa + len, std::string(name), handler});
  return absl::OkStatus();
}

absl::Status IoDispatcher::UnregisterPortIo(uint16_t first) {
  absl::MutexLock lock(&mu_);
  if (ports_.erase(first) == 0) {
    return absl::NotFoundError(
        absl::StrFormat("no port range registered at 0x%x", first));
  }
  return absl::OkStatus();
}

absl::Status IoDispatcher::UnregisterMmio(uint64_t gpa) {
  absl::MutexLock lock(&mu_);
  if (mmio_.erase(gpa) == 0) {
    return absl::NotFoundError(
        absl::StrFormat("no MMIO range registered at 0x%x", gpa));
  }
  return absl::OkStatus();
}

PortIoHandler* IoDispatcher::FindPort(uint16_t port) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = FindIn(ports_, port);
  return it == ports_.end() ? nullptr : it->second.handler;
}

MmioHandler* IoDispatcher::FindMmio(uint64_t gpa) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = FindIn(mmio_, gpa);
  return it == mmio_.end() ? nullptr : it->second.handler;
}

uint32_t IoDispatcher::PortRead(uint16_t port, uint8_t size) {
  if (PortIoHandler* h = FindPort(port)) return h->PortRead(port, size);
  NoteUnhandled(kPortRead, port, size, 0);
  return size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
}

void IoDispatcher::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  if (PortIoHandler* h = FindPort(port)) return h->PortWrite(port, size, value);
  NoteUnhandled(kPortWrite, port, size, value);
}

void IoDispatcher::MmioRead(uint64_t gpa, std::span<uint8_t> data) {
  if (MmioHandler* h = FindMmio(gpa)) return h->MmioRead(gpa, data);
  std::memset(data.data(), 0xFF, data.size());
  NoteUnhandled(kMmioRead, gpa, static_cast<uint32_t>(data.size()), 0);
}

void IoDispatcher::MmioWrite(uint64_t gpa, std::span<const uint8_t> data) {
  if (MmioHandler* h = FindMmio(gpa)) return h->MmioWrite(gpa, data);
  uint64_t value = 0;
  std::memcpy(&value, data.data(), std::min(data.size(), sizeof(value)));
  NoteUnhandled(kMmioWrite, gpa, static_cast<uint32_t>(data.size()), value);
}

void IoDispatcher::NoteUnhandled(UnhandledKind kind, uint64_t address,
                                 uint32_t size, uint64_t value) {
  const bool is_write = kind == kPortWrite || kind == kMmioWrite;
  unhandled_[kind].Note(
      [&] {
        if (is_write) {
          spdlog::warn(
              "unhandled {} at 0x{:x} (size {}, value 0x{:x}): dropped",
              KindName(kind), address, size, value);
        } else {
          spdlog::warn("unhandled {} at 0x{:x} (size {}): returning all ones",
                       KindName(kind), address, size);
        }
      },
      [&] { return absl::StrFormat("0x%x, size %u", address, size); });
}

}  // namespace vid
