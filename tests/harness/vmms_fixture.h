#ifndef HVSTACK_TESTS_HARNESS_VMMS_FIXTURE_H_
#define HVSTACK_TESTS_HARNESS_VMMS_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {

// A guest ELF from guest/ in this test's runfiles, e.g. Guest("hello").
std::string Guest(const std::string& name);

// A real vmms on a fresh state directory for each test, driven through vmctl.
// Skips (saying what is missing) where /dev/kvm cannot be opened.
class VmmsTest : public ::testing::Test {
 protected:
  VmmsTest() = default;
  // The state directory (and dir_'s other files) under `tmp_parent` instead
  // of /tmp.
  explicit VmmsTest(const std::string& tmp_parent) : dir_(tmp_parent) {}

  void SetUp() override;

  // `vmctl args...`; a vmctl that could not run at all is a test failure.
  CommandResult Vmctl(const std::vector<std::string>& args);
  // `vmctl --json show NAME`, parsed.
  nlohmann::json Show(const std::string& name);
  // Polls until the VM reaches `state` (the proto enum name) or the timeout
  // passes.
  nlohmann::json WaitForState(const std::string& name, const std::string& state,
                              absl::Duration timeout = absl::Seconds(30));

  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
};

}  // namespace hvtest

#endif  // HVSTACK_TESTS_HARNESS_VMMS_FIXTURE_H_
