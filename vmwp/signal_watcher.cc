#include "vmwp/signal_watcher.h"

#include <signal.h>
#include <time.h>

#include <utility>

namespace vmwp {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void SignalWatcher::BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalWatcher::SignalWatcher() : thread_([this] { Loop(); }) {}

SignalWatcher::~SignalWatcher() {
  done_.store(true);
  thread_.join();
}

void SignalWatcher::SetHandler(std::function<void(int)> handler) {
  absl::MutexLock lock(&mu_);
  handler_ = std::move(handler);
  if (handler_ && pending_signal_ != 0) {
    handler_(std::exchange(pending_signal_, 0));
  }
}

void SignalWatcher::Loop() {
  const sigset_t set = TerminationSignals();
  // Polls so that the destructor can end the thread without sending it a
  // signal.
  const timespec timeout = {0, 100 * 1000 * 1000};
  while (!done_.load()) {
    const int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig <= 0) continue;
    absl::MutexLock lock(&mu_);
    if (handler_) {
      handler_(sig);
    } else {
      pending_signal_ = sig;
    }
  }
}

}  // namespace vmwp
