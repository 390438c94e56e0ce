#ifndef HVSTACK_TESTS_KVMBOX_KVMBOX_H_
#define HVSTACK_TESTS_KVMBOX_KVMBOX_H_

#include "absl/time/time.h"

namespace kvmbox {

// For tests that need /dev/kvm: call first thing in main(). On a host without
// /dev/kvm (see README.md: build hosts that are PVM guests), re-runs this
// binary with its arguments inside kvmbox (a QEMU/TCG VM with nested KVM and
// the host's filesystem) and never returns: the process becomes kvmbox, whose
// exit status is the test's. Returns (and the test runs here) when /dev/kvm
// exists, when already inside kvmbox, when HVSTACK_KVMBOX=never, or when
// kvmbox cannot run here (it then says why on stderr, and KVM tests skip).
//
// `in_suite` is the test's own choice: kRun for tests that hold up under
// nested TCG (their steps are few and their waits scaled), kSkip for tests
// whose scenarios are sized for real KVM (dozens of worker starts, sub-second
// races): those skip on a host without /dev/kvm unless HVSTACK_KVMBOX=always.
enum class InSuite { kRun, kSkip };
void RunInKvmboxIfNeeded(int argc, char** argv, InSuite in_suite);

// True inside kvmbox's VM.
bool InsideKvmbox();

// How much slower than the host this process runs: 1 normally; inside
// kvmbox, HVSTACK_TIME_SCALE if set, else 10 (the VM's CPU is emulated).
// Tests scale the waits that bound other processes' progress with it
// (Scaled), never the figures they measure.
double TimeScale();
absl::Duration Scaled(absl::Duration d);

}  // namespace kvmbox

#endif  // HVSTACK_TESTS_KVMBOX_KVMBOX_H_
