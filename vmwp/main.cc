// vmwp: the per-VM worker process. See README.md and worker_main.h.
#include "absl/synchronization/mutex.h"
#include "vmwp/worker_main.h"

int main(int argc, char** argv) {
  // Debian's libabsl is built without NDEBUG, so every absl::Mutex lock runs
  // the debug-only deadlock detector (a global lock graph under a global
  // lock): about a fifth of storvsp's CPU per 4 KiB read in
  // tests/bench:storage, and the same on every other device path. The
  // installed worker turns it off; unit tests and vmwp_testing keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return vmwp::WorkerMain(argc, argv, nullptr);
}
