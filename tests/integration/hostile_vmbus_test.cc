// //guest:hostile_vmbus through the real binaries (vmctl -> vmms -> vmwp ->
// vid/hvcore -> KVM): bad hypercall inputs, bogus GPADLs and OPENCHANNELs,
// garbage in rings and malformed channel messages. The guest gets the error
// statuses it expects, the worker stays up (the host still opens a channel
// cleanly afterwards and answers UNLOAD) and the VM powers off cleanly.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HostileVmbusTest : public VmmsTest {};

TEST_F(HostileVmbusTest, GuestGetsErrorStatusesAndTheWorkerStaysUp) {
  CommandResult create = Vmctl({"create", "hostile", "--kernel",
                                Guest("hostile_vmbus"), "--memory", "64"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  CommandResult start = Vmctl({"start", "hostile"});
  ASSERT_EQ(start.exit_code, 0) << start.err;

  nlohmann::json vm =
      WaitForState("hostile", "VM_STATE_OFF", absl::Seconds(60));
  // Powered off by the guest itself, after its last probe: not crashed, not
  // stopped by a dying worker.
  EXPECT_EQ(vm.value("stateReason", ""), "guest powered off") << vm.dump();

  CommandResult console = Vmctl({"console", "hostile", "--no-follow"});
  ASSERT_EQ(console.exit_code, 0) << console.err;
  const std::string& out = console.out;
  // Print what the guest got: the report quotes these lines.
  for (absl::string_view line : absl::StrSplit(out, "\r\n")) {
    if (absl::StartsWith(line, "hostile:")) std::cout << line << "\n";
  }
  EXPECT_THAT(out, HasSubstr("hostile: done, 0 unexpected"));
  EXPECT_THAT(out, Not(HasSubstr("UNEXPECTED")));
  EXPECT_THAT(out, Not(HasSubstr("FAILED")));
  // A few of the probes by name, so that a guest that skipped them fails.
  EXPECT_THAT(out, HasSubstr("hostile: trap port before the hypercall page is "
                             "enabled: #UD ok"));
  EXPECT_THAT(out, HasSubstr("hostile: flood: 200 INITIATE_CONTACT without "
                             "reading replies"));
  EXPECT_THAT(out, HasSubstr("hostile: post: input crosses a page: status "
                             "0x0004 (expected 0x0004) ok"));
  EXPECT_THAT(out, HasSubstr("hostile: post: input outside RAM: status 0x0004 "
                             "(expected 0x0004) ok"));
  EXPECT_THAT(out, HasSubstr("hostile: control: unknown call code 0x7fff: "
                             "status 0x0002 (expected 0x0002) ok"));
  EXPECT_THAT(out, HasSubstr("hostile: gpadl: page outside RAM: status "
                             "0xc0000001 refused ok"));
  EXPECT_THAT(out, HasSubstr("hostile: gpadl: overlapping ranges: status "
                             "0xc0000001 refused ok"));
  EXPECT_THAT(out, HasSubstr("hostile: ring: oversized descriptor, signal"));
  EXPECT_THAT(out, HasSubstr("hostile: after the garbage: open shutdown "
                             "cleanly: status 0x0000 (expected 0x0000) ok"));
  EXPECT_THAT(out, HasSubstr("hostile: unload answered: status 0x0000 "
                             "(expected 0x0000) ok"));

  // What the guest made the worker log is bounded: each kind of complaint is
  // logged individually up to base::LogRateLimiter's burst, then summarized
  // (the flood alone would otherwise write 200+ lines).
  const std::string worker_log = ReadFileOrEmpty(
      absl::StrCat(dir_.path(), "/vms/", vm.value("uuid", ""), "/worker.log"));
  ASSERT_FALSE(worker_log.empty());
  size_t dropped = 0;
  size_t worker_lines = 0;
  for (absl::string_view line : absl::StrSplit(worker_log, '\n')) {
    ++worker_lines;
    if (absl::StrContains(line, "dropped a channel message")) ++dropped;
  }
  std::cout << "worker.log: " << worker_lines << " lines, " << dropped
            << " 'dropped a channel message'\n";
  EXPECT_LE(dropped, 16u);
  EXPECT_THAT(worker_log, HasSubstr("further dropped VMBus channel messages "
                                    "are summarized"));

  // vmms is unharmed and the VM can run again.
  CommandResult list = Vmctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("hostile"));
}

}  // namespace
}  // namespace hvtest
