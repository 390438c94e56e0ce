#ifndef HVSTACK_VMMS_GUEST_CRASH_H_
#define HVSTACK_VMMS_GUEST_CRASH_H_

// vmms's side of the guest's own crash reports: the VM's GuestCrashPolicy as
// the worker's action, and the worker's report in public form.

#include <optional>
#include <string>

#include "proto/hvstack/internal/worker.pb.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

hvstack::internal::GuestCrashAction GuestCrashActionFor(
    hvstack::v1::GuestCrashPolicy policy);

// The worker's report as the API shows it. The worker is ours but runs next
// to an untrusted guest: every string is re-sanitized and bounded here.
hvstack::v1::GuestCrash ToPublicGuestCrash(
    const hvstack::internal::GuestCrashReport& report);

// The state a report's action puts the VM in, recorded with the report:
// Paused for GUEST_CRASH_ACTION_PAUSE; none for the others (the worker's end
// records Crashed, or the respawn records the reboot).
std::optional<hvstack::v1::VmState> StateAfterGuestCrash(
    const hvstack::internal::GuestCrashReport& report);
// "guest crashed: <summary>".
std::string GuestCrashReason(const hvstack::v1::GuestCrash& crash);

}  // namespace vmms

#endif  // HVSTACK_VMMS_GUEST_CRASH_H_
