#include "vmms/sandbox/uid_allocator.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sandbox {
namespace {

// Adds the third field (uid in passwd, gid in group) of every line.
absl::Status ReadIds(const std::string& path,
                     absl::flat_hash_set<uint32_t>& ids) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox: cannot read ", path, ": ", std::strerror(errno),
                     " (needed to keep VM uids off real accounts)"));
  }
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ':');
    uint32_t id;
    if (fields.size() >= 3 && absl::SimpleAtoi(fields[2], &id)) {
      ids.insert(id);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UidAllocator> UidAllocator::Create(
    uid_t base, uint32_t count, const std::string& passwd_path,
    const std::string& group_path) {
  if (base == 0 || count == 0) {
    return absl::InvalidArgumentError(
        "sandbox: the VM uid range must be non-empty and exclude 0");
  }
  // (uid_t)-1 means "unchanged" to setresuid; 65534 is nobody, shared.
  if (static_cast<uint64_t>(base) + count > std::numeric_limits<uid_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: uid range ", base, "+", count,
                     " runs past the largest usable uid"));
  }
  UidAllocator allocator(base, count);
  if (absl::Status s = ReadIds(passwd_path, allocator.taken_); !s.ok())
    return s;
  if (absl::Status s = ReadIds(group_path, allocator.taken_); !s.ok()) return s;
  return allocator;
}

absl::StatusOr<Identity> UidAllocator::ForSlot(uint32_t slot) const {
  if (slot >= count_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("sandbox: VM slot ", slot, " outside the uid range of ",
                     count_, " slots; raise the range size"));
  }
  uid_t id = base_ + slot;
  if (id == 65534 || taken_.contains(id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox: uid/gid ", id, " (slot ", slot,
                     ") belongs to a real account or group; skip this slot"));
  }
  return Identity{id, id};
}

}  // namespace sandbox
