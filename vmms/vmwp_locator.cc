#include "vmms/vmwp_locator.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace vmms {
namespace {

bool IsExecutableFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) &&
         ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

absl::StatusOr<std::string> LocateVmwp(const std::string& flag_value) {
  auto check_explicit =
      [](const std::string& path,
         absl::string_view origin) -> absl::StatusOr<std::string> {
    if (IsExecutableFile(path)) return path;
    return absl::FailedPreconditionError(absl::StrCat(
        "vmwp '", path, "' (from ", origin, ") is not an executable file"));
  };
  if (!flag_value.empty()) return check_explicit(flag_value, "--vmwp");
  if (const char* env = std::getenv("HVSTACK_VMWP");
      env != nullptr && *env != '\0') {
    return check_explicit(env, "$HVSTACK_VMWP");
  }
  std::error_code ec;
  std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot find vmwp: /proc/self/exe is unreadable (",
                     ec.message(), "); pass --vmwp"));
  }
  std::vector<std::string> tried = {
      (self.parent_path() / "vmwp").string(),
      (self.parent_path() / ".." / "vmwp" / "vmwp").string()};
  for (const std::string& candidate : tried) {
    if (IsExecutableFile(candidate)) {
      return std::filesystem::weakly_canonical(candidate, ec).string();
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot find vmwp (looked at ", absl::StrJoin(tried, ", "),
                   "); pass --vmwp PATH or set HVSTACK_VMWP"));
}

}  // namespace vmms
