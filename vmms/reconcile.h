#ifndef HVSTACK_VMMS_RECONCILE_H_
#define HVSTACK_VMMS_RECONCILE_H_

#include <string>

#include "absl/status/status.h"
#include "vmms/vm_store.h"

namespace vmms {

// Run once at start-up, before serving: a VM recorded Starting/Running/Stopping
// belonged to a previous vmms. Its worker is either gone (recorded Crashed:
// "vmms restarted; worker <pid> was no longer running") or still running; this
// vmms cannot reattach to it yet, so it is killed and recorded Off ("vmms
// restarted; worker stopped"). A pid only counts as that worker when its
// /proc/<pid>/cmdline names the VM's runtime directory, so a recycled pid is
// never killed.
absl::Status ReconcileAfterRestart(VmStore& store,
                                   const std::string& state_dir);

// Whether `pid` is alive (not a zombie) and its command line mentions `needle`.
bool ProcessMentions(int64_t pid, const std::string& needle);

}  // namespace vmms

#endif  // HVSTACK_VMMS_RECONCILE_H_
