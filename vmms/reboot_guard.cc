#include "vmms/reboot_guard.h"

#include "absl/strings/str_cat.h"

namespace vmms {

RebootGuard::RebootGuard(uint32_t max_reboots, absl::Duration window)
    : max_reboots_(max_reboots), window_(window) {}

bool RebootGuard::Record(absl::Time now) {
  recent_.push_back(now);
  while (!recent_.empty() && now - recent_.front() > window_)
    recent_.pop_front();
  return recent_.size() <= max_reboots_;
}

std::string RebootGuard::Describe() const {
  return absl::StrCat(recent_.size(), " reboots within ",
                      absl::FormatDuration(window_), " (limit ", max_reboots_,
                      ")");
}

}  // namespace vmms
