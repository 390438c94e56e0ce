// vmwp_testing: vmwp plus test-only paths, never in the production binary
// (the target is testonly). A VM whose kernel command line holds
//   test.forbidden_syscall=<call>  makes that forbidden call
//                                  (sandbox::testing::TriggerForbiddenSyscall),
//   test.allocate_mib=<N>          allocates and touches N MiB (to hit the
//                                  cgroup's memory limit),
// on a fresh worker thread 300 ms after it reported ready, so tests can show
// what vmms records ("sandbox violation: <call>", "out of memory ...").
#include <string.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "vmwp/sandbox/testing/forbidden_syscall.h"
#include "vmwp/worker_main.h"

namespace {

std::string Option(const std::string& cmdline, absl::string_view key) {
  for (absl::string_view token :
       absl::StrSplit(cmdline, ' ', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&token, key) && absl::ConsumePrefix(&token, "="))
      return std::string(token);
  }
  return "";
}

void AfterReady(const hvstack::internal::WorkerConfig& config) {
  const std::string call = Option(config.cmdline(), "test.forbidden_syscall");
  uint64_t allocate_mib = 0;
  (void)absl::SimpleAtoi(Option(config.cmdline(), "test.allocate_mib"),
                         &allocate_mib);
  if (call.empty() && allocate_mib == 0) return;
  std::thread([call, allocate_mib] {
    absl::SleepFor(absl::Milliseconds(300));
    if (!call.empty()) {
      // Returns only if the sandbox let the call through.
      (void)sandbox::testing::TriggerForbiddenSyscall(call);
    }
    std::vector<std::vector<char>> blocks;
    for (uint64_t i = 0; i < allocate_mib; ++i) {
      blocks.emplace_back(1 << 20);
      memset(blocks.back().data(), 0x5a, blocks.back().size());
    }
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  return vmwp::WorkerMain(argc, argv, &AfterReady);
}
