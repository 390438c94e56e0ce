#ifndef HVSTACK_BASE_LOG_PATTERN_H_
#define HVSTACK_BASE_LOG_PATTERN_H_

#include <string>
#include <string_view>

namespace base {

// The spdlog pattern every hvstack program logs with, so that vmms's and the
// workers' lines sort and grep alike when read side by side:
//   2026-11-23T20:44:33.231 info vmms[4711]: message
//   2026-11-23T20:44:33.240 info vmwp[4790] web1: message
// `context` (e.g. the VM's name) is optional; "%^...%$" colours the level on
// a terminal only.
inline std::string LogLinePattern(std::string_view program,
                                  std::string_view context = {}) {
  std::string pattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ ";
  pattern.append(program);
  pattern.append("[%P]");
  if (!context.empty()) {
    pattern.push_back(' ');
    pattern.append(context);
  }
  pattern.append(": %v");
  return pattern;
}

}  // namespace base

#endif  // HVSTACK_BASE_LOG_PATTERN_H_
