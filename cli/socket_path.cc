#include "cli/socket_path.h"

#include <cstdlib>
#include <filesystem>

namespace vmctl {

inline constexpr char kInstalledSocket[] = "/var/lib/hvstack/vmms.sock";
inline constexpr char kReadOnlySocket[] = "/run/hvstack/vmms-ro.sock";

std::string DefaultSocketPath(
    const std::function<std::optional<std::string>(const char*)>& getenv,
    const std::function<bool(const std::string&)>& exists) {
  if (auto socket = getenv("HVSTACK_SOCKET");
      socket.has_value() && !socket->empty()) {
    return *socket;
  }
  if (auto dir = getenv("HVSTACK_STATE_DIR");
      dir.has_value() && !dir->empty()) {
    return *dir + "/vmms.sock";
  }
  if (exists(kInstalledSocket)) return kInstalledSocket;
  // A user outside group hvstack cannot see the main socket (its directory
  // is 0750) but may read through this one; changes are refused there with a
  // message saying who may make them.
  if (exists(kReadOnlySocket)) return kReadOnlySocket;
  return "state/vmms.sock";
}

std::string DefaultSocketPath() {
  return DefaultSocketPath(
      [](const char* name) -> std::optional<std::string> {
        const char* value = std::getenv(name);
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      },
      [](const std::string& path) {
        std::error_code ec;
        return std::filesystem::exists(path, ec);
      });
}

}  // namespace vmctl
