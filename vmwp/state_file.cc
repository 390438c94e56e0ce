#include "vmwp/state_file.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace vmwp {
namespace {

constexpr char kMagic[8] = {'H', 'V', 'S', 'T', 'S', 'A', 'V', 'E'};

struct Header {
  char magic[8];
  uint32_t format;
  uint32_t header_size;
  uint64_t length;
  uint32_t crc32;
  uint32_t reserved;
};
static_assert(sizeof(Header) == kStateFileHeaderSize);

uint32_t Crc32(const uint8_t* data, uint64_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<uint64_t>(size, 1u << 30));
    crc = ::crc32(crc, data, n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

absl::Status WriteAll(int fd, const void* data, size_t len, off_t at) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "writing the state file");
    p += n;
    len -= static_cast<size_t>(n);
    at += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteStateFile(int fd, const hvstack::saved::SavedVm& vm) {
  std::string payload;
  if (!vm.SerializeToString(&payload)) {
    return absl::InternalError("cannot serialize the saved VM state");
  }
  if (payload.size() > kMaxStateFileBytes) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("the saved VM state is %d bytes (at most %d)",
                        payload.size(), kMaxStateFileBytes));
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.format = kStateFileFormat;
  h.header_size = kStateFileHeaderSize;
  h.length = payload.size();
  h.crc32 =
      Crc32(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  if (::ftruncate(fd, 0) < 0) {
    return absl::ErrnoToStatus(errno, "emptying the state file");
  }
  if (absl::Status s =
          WriteAll(fd, payload.data(), payload.size(), kStateFileHeaderSize);
      !s.ok()) {
    return s;
  }
  // The header last: an interrupted write leaves no valid file.
  if (absl::Status s = WriteAll(fd, &h, sizeof(h), 0); !s.ok()) return s;
  if (::fdatasync(fd) < 0) {
    return absl::ErrnoToStatus(errno, "fdatasync of the state file");
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::saved::SavedVm> ParseStateFile(const uint8_t* data,
                                                       uint64_t size) {
  if (size < sizeof(Header)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "state file: %d bytes, too short for its %d-byte header (truncated?)",
        size, sizeof(Header)));
  }
  Header h;
  std::memcpy(&h, data, sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "state file: bad magic \"%s\" (not a saved VM state)",
        absl::CHexEscape(std::string(h.magic, sizeof(h.magic)))));
  }
  if (h.format != kStateFileFormat) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "state file format version %d; this worker reads version %d "
        "(discard the saved state, or restore it with the hvstack that wrote "
        "it)",
        h.format, kStateFileFormat));
  }
  if (h.header_size != kStateFileHeaderSize || h.reserved != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("state file: header size %d, reserved 0x%x",
                        h.header_size, h.reserved));
  }
  if (h.length > kMaxStateFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("state file claims a %d-byte payload (at most %d)",
                        h.length, kMaxStateFileBytes));
  }
  if (size - sizeof(Header) < h.length) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "state file is %d bytes; its header says %d + %d (truncated)", size,
        sizeof(Header), h.length));
  }
  const uint8_t* payload = data + sizeof(Header);
  if (const uint32_t crc = Crc32(payload, h.length); crc != h.crc32) {
    return absl::DataLossError(absl::StrFormat(
        "state file is corrupted: CRC-32 of its %d-byte payload is 0x%08x, "
        "its header says 0x%08x",
        h.length, crc, h.crc32));
  }
  hvstack::saved::SavedVm vm;
  if (!vm.ParseFromArray(payload, static_cast<int>(h.length))) {
    return absl::InvalidArgumentError(
        "state file: its payload is not a serialized SavedVm");
  }
  return vm;
}

absl::StatusOr<hvstack::saved::SavedVm> ReadStateFile(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    return absl::ErrnoToStatus(errno, "fstat of the state file");
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError("the state file is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxStateFileBytes + sizeof(Header)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("state file is %d bytes (at most %d)", st.st_size,
                        kMaxStateFileBytes + sizeof(Header)));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::pread(fd, bytes.data() + got, bytes.size() - got,
                              static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "reading the state file");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return ParseStateFile(reinterpret_cast<const uint8_t*>(bytes.data()), got);
}

}  // namespace vmwp
