#ifndef HVSTACK_VMWP_VSP_IC_SHUTDOWN_H_
#define HVSTACK_VMWP_VSP_IC_SHUTDOWN_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "vmwp/vsp/ic/ic_framework.h"

namespace vsp::ic {

// shutdown_msg_data.flags as hv_utils reads them: 0 shut down, 2 restart,
// 4 hibernate, each optionally | 1 (force).
enum class ShutdownKind : uint32_t {
  kShutdown = 0,
  kRestart = 2,
  kHibernate = 4
};
inline constexpr uint32_t kShutdownFlagForce = 1;

struct ShutdownRequest {
  ShutdownKind kind = ShutdownKind::kShutdown;
  bool force = false;
  uint32_t reason_code = 0;
  uint32_t timeout_seconds = 0;
  // Shown by guests that display it (Linux ignores it); UTF-16LE on the
  // wire, truncated to fit with its NUL.
  std::string_view message;
};

std::vector<uint8_t> BuildShutdownRequest(const ShutdownRequest& request,
                                          const IcVersions& versions);
// OK when the guest accepted (it then shuts down on its own); otherwise
// FailedPrecondition with the guest's HRESULT (e.g. hibernation refused).
absl::Status ParseShutdownResponse(std::span<const uint8_t> bytes);

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_SHUTDOWN_H_
