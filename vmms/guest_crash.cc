#include "vmms/guest_crash.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "base/display_text.h"

namespace vmms {

using google::protobuf::util::TimeUtil;

namespace {
// As the worker bounds them (vmwp/guest_crash.h), with room for escapes.
constexpr size_t kMaxMessageBytes = 4096;
constexpr size_t kMaxSummaryBytes = 256;
constexpr int kParameters = 5;
}  // namespace

hvstack::internal::GuestCrashAction GuestCrashActionFor(
    hvstack::v1::GuestCrashPolicy policy) {
  switch (policy) {
    case hvstack::v1::GUEST_CRASH_POLICY_RESTART:
      return hvstack::internal::GUEST_CRASH_ACTION_REBOOT;
    case hvstack::v1::GUEST_CRASH_POLICY_PRESERVE:
      return hvstack::internal::GUEST_CRASH_ACTION_PAUSE;
    default:
      return hvstack::internal::GUEST_CRASH_ACTION_END;
  }
}

hvstack::v1::GuestCrash ToPublicGuestCrash(
    const hvstack::internal::GuestCrashReport& report) {
  hvstack::v1::GuestCrash out;
  *out.mutable_time() = TimeUtil::MicrosecondsToTimestamp(report.time_us());
  out.set_vp(report.vp());
  for (int i = 0; i < kParameters; ++i) {
    out.add_parameters(i < report.parameters_size() ? report.parameters(i) : 0);
  }
  // DisplayText is idempotent on its own output (escapes are printable).
  out.set_message(base::DisplayTextTail(report.message(), kMaxMessageBytes));
  out.set_summary(base::DisplayText(report.summary(), kMaxSummaryBytes));
  if (out.summary().empty()) out.set_summary("no description");
  out.set_suppressed_reports(report.suppressed_reports());
  return out;
}

std::optional<hvstack::v1::VmState> StateAfterGuestCrash(
    const hvstack::internal::GuestCrashReport& report) {
  if (report.action() == hvstack::internal::GUEST_CRASH_ACTION_PAUSE)
    return hvstack::v1::VM_STATE_PAUSED;
  return std::nullopt;
}

std::string GuestCrashReason(const hvstack::v1::GuestCrash& crash) {
  return absl::StrCat("guest crashed: ", crash.summary());
}

}  // namespace vmms
