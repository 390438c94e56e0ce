#ifndef HVSTACK_VMWP_SIGNAL_WATCHER_H_
#define HVSTACK_VMWP_SIGNAL_WATCHER_H_

#include <atomic>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace vmwp {

// Turns SIGTERM/SIGINT into a stop request. BlockTerminationSignals() must run
// in main() before any thread exists, so that every thread inherits the mask
// and only the watcher's sigtimedwait receives them. A signal that arrives
// before a handler is set is remembered and delivered when SetHandler is
// called.
class SignalWatcher {
 public:
  static void BlockTerminationSignals();

  SignalWatcher();
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // `handler` gets the signal number; it runs on the watcher thread.
  void SetHandler(std::function<void(int)> handler);
  void ClearHandler() { SetHandler(nullptr); }

 private:
  void Loop();

  std::atomic<bool> done_{false};
  absl::Mutex mu_;
  std::function<void(int)> handler_ ABSL_GUARDED_BY(mu_);
  int pending_signal_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_SIGNAL_WATCHER_H_
