#ifndef HVSTACK_CLI_SOCKET_PATH_H_
#define HVSTACK_CLI_SOCKET_PATH_H_

#include <functional>
#include <optional>
#include <string>

namespace vmctl {

// Where vmctl looks for vmms when --socket is not given, first match wins:
//   1. $HVSTACK_SOCKET
//   2. $HVSTACK_STATE_DIR/vmms.sock
//   3. /var/lib/hvstack/vmms.sock, if it exists (an installed vmms) and this
//      user may see it (root, group hvstack)
//   4. /run/hvstack/vmms-ro.sock, if it exists: the installed vmms's read-only
//      socket, for everyone else
//   5. ./state/vmms.sock (vmms started from a checkout with --state-dir state)
// `getenv` and `exists` are injectable for tests.
std::string DefaultSocketPath(
    const std::function<std::optional<std::string>(const char*)>& getenv,
    const std::function<bool(const std::string&)>& exists);

// The same, from the real environment and file system.
std::string DefaultSocketPath();

}  // namespace vmctl

#endif  // HVSTACK_CLI_SOCKET_PATH_H_
