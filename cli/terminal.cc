#include "cli/terminal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace vmctl {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// For the signal handlers: plain data, set before the handlers are installed.
struct termios saved_termios;
std::atomic<int> saved_fd{-1};
struct sigaction previous_actions[sizeof(kSignals) / sizeof(kSignals[0])];

void RestoreFromSignal(int sig) {
  const int fd = saved_fd.exchange(-1);
  if (fd >= 0) ::tcsetattr(fd, TCSAFLUSH, &saved_termios);  // async-signal-safe
  // Default action (terminate) with the terminal usable again.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (fd < 0 || !::isatty(fd) || ::tcgetattr(fd, &saved_termios) != 0) return;
  saved_fd = fd;
  struct sigaction action {};
  action.sa_handler = RestoreFromSignal;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i)
    ::sigaction(kSignals[i], &action, &previous_actions[i]);
  struct termios raw = saved_termios;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSAFLUSH, &raw) != 0) {
    Restore();
    return;
  }
  active_ = true;
}

RawTerminal::~RawTerminal() { Restore(); }

void RawTerminal::Restore() {
  const int fd = saved_fd.exchange(-1);
  if (fd >= 0) ::tcsetattr(fd, TCSAFLUSH, &saved_termios);
  if (active_ || fd >= 0) {
    for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i)
      ::sigaction(kSignals[i], &previous_actions[i], nullptr);
  }
  active_ = false;
}

}  // namespace vmctl
