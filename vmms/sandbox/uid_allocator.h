#ifndef HVSTACK_VMMS_SANDBOX_UID_ALLOCATOR_H_
#define HVSTACK_VMMS_SANDBOX_UID_ALLOCATOR_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace sandbox {

struct Identity {
  uid_t uid;
  gid_t gid;  // equal to uid: one private group per VM
};

// Hands out one uid/gid per VM slot from a configured range. The mapping is
// deterministic (slot -> base + slot), so vmms needs no extra state: it keeps
// the slot in its VM row and recomputes the uid after a restart. Ids that
// belong to a real account or group (/etc/passwd, /etc/group) are refused,
// so a worker can never act as, or read files of, a real user.
class UidAllocator {
 public:
  // Default range: high above useradd's (1000..60000) and the usual
  // subordinate-id blocks (100000 + 65536 * n for the first users).
  static constexpr uid_t kDefaultBase = 1500000000;
  static constexpr uint32_t kDefaultCount = 65536;

  // Reads the account databases once (paths are parameters for tests).
  static absl::StatusOr<UidAllocator> Create(
      uid_t base = kDefaultBase, uint32_t count = kDefaultCount,
      const std::string& passwd_path = "/etc/passwd",
      const std::string& group_path = "/etc/group");

  // The identity of `slot` (0 <= slot < count). Fails with
  // FAILED_PRECONDITION if that id is a real account or group: vmms should
  // skip the slot.
  absl::StatusOr<Identity> ForSlot(uint32_t slot) const;

  uid_t base() const { return base_; }
  uint32_t count() const { return count_; }

 private:
  UidAllocator(uid_t base, uint32_t count) : base_(base), count_(count) {}

  uid_t base_;
  uint32_t count_;
  absl::flat_hash_set<uint32_t> taken_;  // uids and gids in the databases
};

}  // namespace sandbox

#endif  // HVSTACK_VMMS_SANDBOX_UID_ALLOCATOR_H_
