#include "tests/harness/vmms_fixture.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {

std::string Guest(const std::string& name) {
  return Runfile("guest/" + name + ".elf");
}

void VmmsTest::SetUp() {
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP()
        << "needs read/write access to /dev/kvm, which this host lacks";
  }
  vmms_ = std::make_unique<VmmsInstance>(dir_.path());
  absl::Status started = vmms_->Start();
  ASSERT_TRUE(started.ok()) << started;
}

CommandResult VmmsTest::Vmctl(const std::vector<std::string>& args) {
  absl::StatusOr<CommandResult> result = vmms_->Vmctl(args);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : CommandResult{};
}

nlohmann::json VmmsTest::Show(const std::string& name) {
  CommandResult r = Vmctl({"--json", "show", name});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
}

nlohmann::json VmmsTest::WaitForState(const std::string& name,
                                      const std::string& state,
                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(timeout);
  nlohmann::json vm;
  while (absl::Now() < deadline) {
    vm = Show(name);
    if (vm.is_object() && vm.value("state", "") == state) return vm;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ADD_FAILURE() << name << " did not reach " << state
                << "; last: " << vm.dump();
  return vm;
}

}  // namespace hvtest
