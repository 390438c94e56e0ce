#ifndef HVSTACK_VMWP_VSP_IC_KVP_H_
#define HVSTACK_VMWP_VSP_IC_KVP_H_

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmwp/vsp/ic/ic_framework.h"

namespace vsp::ic {

enum class KvpOperation : uint8_t {
  kGet = 0,
  kSet = 1,
  kDelete = 2,
  kEnumerate = 3,
  kGetIpInfo = 4,
  kSetIpInfo = 5,
};

// Pools as the Linux KVP daemon keeps them: EXTERNAL holds what the host
// set, GUEST what the guest set, AUTO the guest's intrinsic items (FQDN, OS
// name and version, addresses ...).
enum class KvpPool : uint8_t {
  kExternal = 0,
  kGuest = 1,
  kAuto = 2,
  kAutoExternal = 3,
  kAutoInternal = 4,
};

inline constexpr uint32_t kRegSz = 1;
inline constexpr uint32_t kRegU32 = 4;
inline constexpr uint32_t kRegU64 = 8;

struct KvpRequest {
  KvpOperation op = KvpOperation::kGet;
  KvpPool pool = KvpPool::kExternal;
  std::string key;     // UTF-8; UTF-16 with NUL must fit 512 bytes
  std::string value;   // UTF-8, for SET; UTF-16 with NUL must fit 2048 bytes
  uint32_t index = 0;  // for ENUMERATE
};

struct KvpResult {
  KvpOperation op = KvpOperation::kGet;
  KvpPool pool = KvpPool::kExternal;
  uint32_t status = 0;  // HRESULT: S_OK, S_CONT (enumeration ended), E_FAIL
  std::string key;
  std::string value;
};

// hv_kvp_msg for GET / SET / DELETE / ENUMERATE (the full union is sent, as
// hv_utils answers in the buffer it received).
absl::StatusOr<std::vector<uint8_t>> BuildKvpRequest(
    const KvpRequest& request, const IcVersions& versions);
// Checks sizes before decoding: key_size <= 512, value_size <= 2048.
absl::StatusOr<KvpResult> ParseKvpResponse(std::span<const uint8_t> bytes);

// The host's KVP transactions: one outstanding at a time (the protocol's
// rule), the rest queued; pool scans enumerate from index 0 until the guest
// says there is no more. Not thread-safe: the VSP serializes.
class KvpExchange {
 public:
  static constexpr uint32_t kMaxEnumerateIndex = 1024;

  void Enqueue(KvpRequest request) { queue_.push_back(std::move(request)); }
  // Enumerates `pool` from index 0; what was known of the pool is forgotten
  // (items the guest removed must not linger).
  void ScanPool(KvpPool pool);

  // The next request to send, if none is outstanding.
  absl::StatusOr<std::optional<std::vector<uint8_t>>> NextMessage(
      const IcVersions& versions);
  // Completes the outstanding transaction; updates what is known of the
  // guest's pools.
  absl::StatusOr<KvpResult> OnResponse(std::span<const uint8_t> bytes);
  // The channel closed: the outstanding request is lost.
  void Reset() { outstanding_.reset(); }
  // Forgets queued requests (the channel closed; nobody will answer them).
  void DropQueued() { queue_.clear(); }

  // Save and restore (issue 14).
  const std::deque<KvpRequest>& queued() const { return queue_; }
  const std::optional<KvpRequest>& outstanding() const { return outstanding_; }
  void Restore(std::deque<KvpRequest> queue,
               std::optional<KvpRequest> outstanding,
               std::array<std::map<std::string, std::string>, 5> pools) {
    queue_ = std::move(queue);
    outstanding_ = std::move(outstanding);
    for (size_t i = 0; i < pools.size(); ++i) pools_[i] = std::move(pools[i]);
  }

  bool busy() const { return outstanding_.has_value(); }
  bool idle() const { return queue_.empty() && !outstanding_.has_value(); }
  const std::map<std::string, std::string>& pool(KvpPool pool) const {
    return pools_[static_cast<int>(pool)];
  }

 private:
  std::deque<KvpRequest> queue_;
  std::optional<KvpRequest> outstanding_;
  std::map<std::string, std::string> pools_[5];
};

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_KVP_H_
