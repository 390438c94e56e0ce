#include "tests/harness/private_network.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/harness/process.h"

namespace hvtest {
namespace {

absl::StatusOr<CommandResult> RunIp(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const char* dir :
       {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(dir, X_OK) == 0) {
      argv[0] = dir;
      break;
    }
  }
  return RunCommand(argv, {}, absl::Seconds(20));
}

}  // namespace

absl::Status EnterPrivateNetworkNamespace() {
  if (::geteuid() != 0) {
    return absl::FailedPreconditionError(
        "needs root for a network namespace of its own");
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create a network namespace: ", std::strerror(errno)));
  }
  return Ip("link set lo up");
}

absl::Status Ip(const std::string& args) {
  return Ip(
      std::vector<std::string>(absl::StrSplit(args, ' ', absl::SkipEmpty())));
}

absl::Status Ip(const std::vector<std::string>& args) {
  absl::StatusOr<CommandResult> r = RunIp(args);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("ip ", absl::StrJoin(args, " "),
                                            " failed (", r->exit_code,
                                            "): ", r->err));
  }
  return absl::OkStatus();
}

absl::Status AddBridge(const std::string& name, const std::string& cidr) {
  if (absl::Status s = Ip(absl::StrCat("link add ", name, " type bridge"));
      !s.ok()) {
    return s;
  }
  if (!cidr.empty()) {
    if (absl::Status s = Ip(absl::StrCat("addr add ", cidr, " dev ", name));
        !s.ok()) {
      return s;
    }
  }
  return Ip(absl::StrCat("link set ", name, " up"));
}

nlohmann::json LinkDetails(const std::string& name) {
  absl::StatusOr<CommandResult> r =
      RunIp({"-d", "-j", "link", "show", "dev", name});
  if (!r.ok() || r->exit_code != 0) return nullptr;
  nlohmann::json links =
      nlohmann::json::parse(r->out, nullptr, /*allow_exceptions=*/false);
  if (!links.is_array() || links.empty()) return nullptr;
  return links[0];
}

}  // namespace hvtest
