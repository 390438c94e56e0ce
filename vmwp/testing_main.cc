// vmwp_testing: vmwp plus one test-only path, never in the production binary
// (the target is testonly). With HVSTACK_TEST_FORBIDDEN_SYSCALL=<call> in its
// environment, the worker makes that forbidden call on a fresh thread
// HVSTACK_TEST_FORBIDDEN_DELAY_MS (default 300) after it reported ready, so
// tests can show that vmms records "sandbox violation: <call>".
#include <stdlib.h>

#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "vmwp/sandbox/testing/forbidden_syscall.h"
#include "vmwp/worker_main.h"

int main(int argc, char** argv) {
  const char* which = ::getenv("HVSTACK_TEST_FORBIDDEN_SYSCALL");
  if (which == nullptr || *which == '\0')
    return vmwp::WorkerMain(argc, argv, nullptr);
  int delay_ms = 300;
  if (const char* d = ::getenv("HVSTACK_TEST_FORBIDDEN_DELAY_MS")) {
    if (!absl::SimpleAtoi(d, &delay_ms)) delay_ms = 300;
  }
  const std::string call = which;
  return vmwp::WorkerMain(argc, argv, [call, delay_ms] {
    std::thread([call, delay_ms] {
      absl::SleepFor(absl::Milliseconds(delay_ms));
      // Returns only if the sandbox let the call through.
      (void)sandbox::testing::TriggerForbiddenSyscall(call);
    }).detach();
  });
}
