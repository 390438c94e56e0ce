// The public event log end to end: real vmms, real vmwp workers running the
// spin guest, and vmctl as the client.
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

std::vector<nlohmann::json> ParseJsonLines(const std::string& text) {
  std::vector<nlohmann::json> events;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) events.push_back(j);
  }
  return events;
}

uint64_t Sequence(const nlohmann::json& event) {
  // Canonical JSON spells uint64 as a string.
  return std::stoull(event.value("sequence", "0"));
}

class EventsTest : public ::testing::Test {
 protected:
  void StartVmms(std::vector<std::string> args = {}) {
    if (access("/dev/kvm", R_OK | W_OK) != 0)
      GTEST_SKIP() << "needs read/write access to /dev/kvm";
    vmms_ = std::make_unique<VmmsInstance>(dir_.path(), std::move(args));
    ASSERT_TRUE(vmms_->Start().ok());
  }

  CommandResult Vmctl(const std::vector<std::string>& args) {
    absl::StatusOr<CommandResult> r = vmms_->Vmctl(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }

  void Ok(const std::vector<std::string>& args) {
    CommandResult r = Vmctl(args);
    ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  }

  // Follows `vmctl --json events --follow [--since N]` in the background
  // until `count` events arrived (or 20 s passed); returns them.
  std::vector<nlohmann::json> WaitForLines(const std::string& path,
                                           size_t count) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    std::vector<nlohmann::json> events;
    while (absl::Now() < deadline) {
      events = ParseJsonLines(ReadFileOrEmpty(path));
      if (events.size() >= count) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return events;
  }

  ChildProcess Follow(const std::string& out, uint64_t since) {
    absl::StatusOr<ChildProcess> child = ChildProcess::Start(
        {Runfile("cli/vmctl"), "--socket", vmms_->socket_path(), "--json",
         "events", "--follow", "--since", std::to_string(since)},
        out);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : ChildProcess();
  }

  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
};

TEST_F(EventsTest, ResumedClientReceivesExactlyTheTransitionsItMissed) {
  StartVmms();
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  Ok({"create", "ev1", "--kernel", Runfile("guest/spin.elf"), "--memory",
      "64"});

  // A follower sees the creation, then disconnects.
  const std::string first_out = dir_.path() + "/follow1.jsonl";
  ChildProcess follower = Follow(first_out, 0);
  std::vector<nlohmann::json> seen = WaitForLines(first_out, 1);
  ASSERT_EQ(seen.size(), 1u) << ReadFileOrEmpty(first_out);
  EXPECT_EQ(seen[0]["kind"], "KIND_CREATED");
  EXPECT_EQ(seen[0]["vmName"], "ev1");
  follower = ChildProcess();  // SIGKILLed and reaped: a disconnect.
  const uint64_t last = Sequence(seen.back());

  // Ten transitions while it is away.
  for (int i = 0; i < 2; ++i) {
    Ok({"start", "ev1"});
    Ok({"stop", "ev1"});
  }
  Ok({"start", "ev1"});
  const std::vector<std::string> expected_states = {
      "VM_STATE_STARTING", "VM_STATE_RUNNING",  "VM_STATE_STOPPING",
      "VM_STATE_OFF",      "VM_STATE_STARTING", "VM_STATE_RUNNING",
      "VM_STATE_STOPPING", "VM_STATE_OFF",      "VM_STATE_STARTING",
      "VM_STATE_RUNNING"};

  // It resumes from the last sequence it saw: exactly those ten, in order.
  CommandResult resumed =
      Vmctl({"--json", "events", "--since", std::to_string(last)});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  std::vector<nlohmann::json> missed = ParseJsonLines(resumed.out);
  ASSERT_EQ(missed.size(), expected_states.size()) << resumed.out;
  for (size_t i = 0; i < missed.size(); ++i) {
    EXPECT_EQ(Sequence(missed[i]), last + 1 + i) << missed[i].dump();
    EXPECT_EQ(missed[i]["state"], expected_states[i]) << missed[i].dump();
    EXPECT_EQ(missed[i]["kind"], "KIND_STATE_CHANGED");
    EXPECT_EQ(missed[i]["vmName"], "ev1");
  }

  // Resuming with --follow: the same ten, then live ones, no duplicates.
  const std::string second_out = dir_.path() + "/follow2.jsonl";
  ChildProcess live = Follow(second_out, last);
  ASSERT_EQ(WaitForLines(second_out, 10).size(), 10u);
  Ok({"stop", "ev1"});
  std::vector<nlohmann::json> all = WaitForLines(second_out, 12);
  ASSERT_EQ(all.size(), 12u) << ReadFileOrEmpty(second_out);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(Sequence(all[i]), last + 1 + i);
  EXPECT_EQ(all[10]["state"], "VM_STATE_STOPPING");
  EXPECT_EQ(all[11]["state"], "VM_STATE_OFF");
  EXPECT_EQ(all[11]["reason"], "stopped by user (hard power-off)");

  // The table form.
  CommandResult table = Vmctl({"events"});
  EXPECT_THAT(table.out, HasSubstr("SEQ"));
  EXPECT_THAT(table.out, HasSubstr("state_changed"));
}

TEST_F(EventsTest, TrimmedSequenceIsOutOfRangeNamingTheOldest) {
  StartVmms({"--event-retention", "5"});
  if (IsSkipped() || HasFatalFailure()) return;  // no /dev/kvm, or no vmms
  for (int i = 0; i < 8; ++i) {
    Ok({"create", "r" + std::to_string(i), "--kernel",
        Runfile("guest/spin.elf"), "--memory", "64"});
  }
  CommandResult all = Vmctl({"--json", "events"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  std::vector<nlohmann::json> events = ParseJsonLines(all.out);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(Sequence(events.front()), 4u);
  EXPECT_EQ(Sequence(events.back()), 8u);

  CommandResult trimmed = Vmctl({"events", "--since", "1"});
  EXPECT_EQ(trimmed.exit_code, 6);
  EXPECT_THAT(trimmed.err, HasSubstr("OUT_OF_RANGE"));
  EXPECT_THAT(trimmed.err, HasSubstr("oldest retained is 4"));
  // Right at the edge is fine.
  CommandResult edge = Vmctl({"--json", "events", "--since", "3"});
  EXPECT_EQ(edge.exit_code, 0) << edge.err;
  EXPECT_EQ(ParseJsonLines(edge.out).size(), 5u);
}

}  // namespace
}  // namespace hvtest
