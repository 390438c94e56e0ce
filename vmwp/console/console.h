#ifndef HVSTACK_VMWP_CONSOLE_CONSOLE_H_
#define HVSTACK_VMWP_CONSOLE_CONSOLE_H_

#include <memory>
#include <string_view>

#include "vmwp/console/console_log_file.h"
#include "vmwp/console/console_ring.h"

namespace vmwp {

// Where a VM's console output goes: the in-memory ring (for streams) and,
// optionally, the console log file. The UART's output sink is Console::Write.
class Console {
 public:
  explicit Console(std::unique_ptr<ConsoleLogFile> log_file,
                   size_t ring_capacity = ConsoleRing::kDefaultCapacity)
      : ring_(ring_capacity), log_file_(std::move(log_file)) {}

  void Write(std::string_view bytes) {
    if (log_file_) log_file_->Write(bytes);
    ring_.Append(bytes);
  }
  // The VM is gone: followers see the end of the stream.
  void Close() { ring_.Close(); }

  ConsoleRing& ring() { return ring_; }
  ConsoleLogFile* log_file() { return log_file_.get(); }

 private:
  ConsoleRing ring_;
  const std::unique_ptr<ConsoleLogFile> log_file_;
};

}  // namespace vmwp

#endif  // HVSTACK_VMWP_CONSOLE_CONSOLE_H_
