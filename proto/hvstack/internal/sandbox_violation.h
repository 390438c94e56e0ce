#ifndef HVSTACK_PROTO_HVSTACK_INTERNAL_SANDBOX_VIOLATION_H_
#define HVSTACK_PROTO_HVSTACK_INTERNAL_SANDBOX_VIOLATION_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

// The one piece of the vmms <-> vmwp protocol that is not protobuf: what a
// sandboxed worker's SIGSYS handler writes to its violation pipe (fd 5) before
// it dies, in one write(2) from a signal handler (atomic on a pipe: 24 bytes <
// PIPE_BUF). The worker writes it (vmwp/sandbox/violation_report), vmms reads
// it (vmms/sandbox/violation_exit).
namespace hvstack::internal {

struct ViolationRecord {
  static constexpr uint32_t kMagic = 0x48565342;  // "HVSB"
  uint32_t magic;
  int32_t syscall_nr;
  uint32_t arch;  // AUDIT_ARCH_* from siginfo, as libseccomp expects
  uint32_t reserved;
  uint64_t instruction_pointer;
};
static_assert(sizeof(ViolationRecord) == 24);

// The record at the start of `bytes`; nullopt if too short or the magic is
// wrong.
inline std::optional<ViolationRecord> ParseViolationRecord(
    std::string_view bytes) {
  if (bytes.size() < sizeof(ViolationRecord)) return std::nullopt;
  ViolationRecord record;
  std::memcpy(&record, bytes.data(), sizeof(record));
  if (record.magic != ViolationRecord::kMagic) return std::nullopt;
  return record;
}

}  // namespace hvstack::internal

#endif  // HVSTACK_PROTO_HVSTACK_INTERNAL_SANDBOX_VIOLATION_H_
