#include "vmms/state_machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vmms {
namespace {

using hvstack::v1::Vm;
using hvstack::v1::VmState;
using ::testing::HasSubstr;

Vm InState(VmState state) {
  Vm vm;
  vm.set_name("web1");
  vm.set_state(state);
  return vm;
}

TEST(StateMachineTest, RequestsFollowTheTable) {
  struct Row {
    VmState state;
    // start stop delete pause resume reset reboot shutdown update checkpoint
    const char* allowed;
  };
  const Row rows[] = {
      {hvstack::v1::VM_STATE_OFF, "y.y.....yy"},
      {hvstack::v1::VM_STATE_CRASHED, "y.y.....yy"},
      {hvstack::v1::VM_STATE_STARTING, ".y........"},
      {hvstack::v1::VM_STATE_RUNNING, ".y.y.yyy.."},
      {hvstack::v1::VM_STATE_PAUSED, ".y..yy...."},
      {hvstack::v1::VM_STATE_STOPPING, ".y........"},
      {hvstack::v1::VM_STATE_SAVING, ".y........"},
      {hvstack::v1::VM_STATE_RESTORING, ".y........"},
  };
  const VmRequest requests[] = {
      VmRequest::kStart,     VmRequest::kStop,     VmRequest::kDelete,
      VmRequest::kPause,     VmRequest::kResume,   VmRequest::kReset,
      VmRequest::kReboot,    VmRequest::kShutdown, VmRequest::kUpdateHardware,
      VmRequest::kCheckpoint};
  for (const Row& row : rows) {
    for (int i = 0; i < 10; ++i) {
      absl::Status s = CheckRequest(InState(row.state), requests[i]);
      EXPECT_EQ(s.ok(), row.allowed[i] == 'y')
          << hvstack::v1::VmState_Name(row.state) << " "
          << RequestName(requests[i]) << ": " << s;
      if (!s.ok()) {
        EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_THAT(s.message(), HasSubstr("VM 'web1' is "));
      }
    }
  }
}

TEST(StateMachineTest, RefusalsNameTheStateAndWhatToDo) {
  EXPECT_EQ(
      CheckRequest(InState(hvstack::v1::VM_STATE_PAUSED), VmRequest::kShutdown)
          .message(),
      "VM 'web1' is paused; cannot shut it down: resume it first");
  EXPECT_EQ(
      CheckRequest(InState(hvstack::v1::VM_STATE_RUNNING), VmRequest::kDelete)
          .message(),
      "VM 'web1' is running; cannot delete it: stop it first");
  EXPECT_EQ(CheckRequest(InState(hvstack::v1::VM_STATE_OFF), VmRequest::kStop)
                .message(),
            "VM 'web1' is off; cannot stop it: it is not running");
}

TEST(StateMachineTest, Transitions) {
  using hvstack::v1::VM_STATE_CRASHED;
  using hvstack::v1::VM_STATE_OFF;
  using hvstack::v1::VM_STATE_PAUSED;
  using hvstack::v1::VM_STATE_RUNNING;
  using hvstack::v1::VM_STATE_STARTING;
  using hvstack::v1::VM_STATE_STOPPING;
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_OFF, VM_STATE_STARTING));
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_CRASHED, VM_STATE_STARTING));
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_RUNNING, VM_STATE_PAUSED));
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_PAUSED, VM_STATE_RUNNING));
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_PAUSED, VM_STATE_CRASHED));
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_STOPPING, VM_STATE_OFF));
  EXPECT_FALSE(IsAllowedTransition(VM_STATE_OFF, VM_STATE_RUNNING));
  EXPECT_FALSE(IsAllowedTransition(VM_STATE_OFF, VM_STATE_CRASHED));
  EXPECT_FALSE(IsAllowedTransition(VM_STATE_STOPPING, VM_STATE_RUNNING));
  EXPECT_FALSE(IsAllowedTransition(VM_STATE_STARTING, VM_STATE_PAUSED));
  EXPECT_FALSE(IsAllowedTransition(VM_STATE_CRASHED, VM_STATE_OFF));
  // A checkpoint of a Saved VM applied to an Off or Crashed one (issue 14).
  EXPECT_TRUE(IsAllowedTransition(VM_STATE_OFF, hvstack::v1::VM_STATE_SAVED));
  EXPECT_TRUE(
      IsAllowedTransition(VM_STATE_CRASHED, hvstack::v1::VM_STATE_SAVED));
}

}  // namespace
}  // namespace vmms
