#ifndef HVSTACK_CLI_TERMINAL_H_
#define HVSTACK_CLI_TERMINAL_H_

#include <termios.h>

namespace vmctl {

// Puts a terminal in raw mode (cfmakeraw: no echo, no line editing, no
// signal keys, no output processing) for an interactive console, and restores
// the saved settings on every exit path: destruction, and SIGINT, SIGTERM,
// SIGHUP and SIGQUIT (the handlers restore the terminal, then let the signal
// take its default action). At most one exists at a time.
class RawTerminal {
 public:
  // Does nothing (active() false) when `fd` is not a terminal.
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  bool active() const { return active_; }
  // Restores the terminal now (idempotent).
  void Restore();

 private:
  int fd_;
  bool active_ = false;
};

}  // namespace vmctl

#endif  // HVSTACK_CLI_TERMINAL_H_
