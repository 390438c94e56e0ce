#include "vmwp/guest_crash.h"

#include <spdlog/spdlog.h>

#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/display_text.h"

namespace vmwp {
namespace {

using hvstack::internal::GuestCrashAction;
using hvstack::internal::GuestCrashReport;

constexpr absl::string_view kLinuxPanic = "Kernel panic - not syncing:";

// "[   48.123456] text" -> "text" (printk's timestamp, CONFIG_PRINTK_TIME).
absl::string_view StripPrintkTime(absl::string_view line) {
  if (line.empty() || line.front() != '[') return line;
  const size_t close = line.find(']');
  if (close == absl::string_view::npos || close > 20) return line;
  for (char c : line.substr(1, close - 1)) {
    if (c != ' ' && c != '.' && !absl::ascii_isdigit(c)) return line;
  }
  return absl::StripLeadingAsciiWhitespace(line.substr(close + 1));
}

const char* ActionName(GuestCrashAction action) {
  switch (action) {
    case hvstack::internal::GUEST_CRASH_ACTION_REBOOT:
      return "reboot";
    case hvstack::internal::GUEST_CRASH_ACTION_PAUSE:
      return "pause";
    default:
      return "end";
  }
}

GuestCrashAction Normalized(GuestCrashAction action) {
  switch (action) {
    case hvstack::internal::GUEST_CRASH_ACTION_REBOOT:
    case hvstack::internal::GUEST_CRASH_ACTION_PAUSE:
      return action;
    default:
      return hvstack::internal::GUEST_CRASH_ACTION_END;
  }
}

}  // namespace

std::string SummarizeGuestCrash(absl::string_view message,
                                const std::array<uint64_t, 5>& params) {
  absl::string_view chosen;
  if (size_t at = message.find(kLinuxPanic); at != absl::string_view::npos) {
    chosen = message.substr(at);
    chosen = chosen.substr(0, chosen.find('\n'));
  } else {
    for (absl::string_view line : absl::StrSplit(message, '\n')) {
      line = absl::StripAsciiWhitespace(StripPrintkTime(line));
      // A line of NULs or other non-text is not a summary.
      if (!line.empty() && line.find('\0') == absl::string_view::npos) {
        chosen = line;
        break;
      }
    }
  }
  chosen = absl::StripAsciiWhitespace(chosen);
  if (chosen.empty()) {
    return absl::StrFormat(
        "crash parameters P0=0x%x P1=0x%x P2=0x%x P3=0x%x P4=0x%x", params[0],
        params[1], params[2], params[3], params[4]);
  }
  return base::DisplayText(std::string_view(chosen.data(), chosen.size()),
                           kMaxCrashSummaryBytes);
}

GuestCrashReport DescribeGuestCrash(
    const hvcore::hyperv::GuestCrashReport& report, absl::Time when) {
  GuestCrashReport out;
  out.set_time_us(absl::ToUnixMicros(when));
  out.set_vp(report.vp_index);
  for (uint64_t p : report.params) out.add_parameters(p);
  // A message ends at its first NUL (Linux's is text; the rest of its page
  // is not).
  absl::string_view message = report.message;
  message = message.substr(0, message.find('\0'));
  out.set_message(base::DisplayTextTail(
      std::string_view(message.data(), message.size()), kMaxCrashMessageBytes));
  out.set_summary(SummarizeGuestCrash(message, report.params));
  return out;
}

GuestCrashMonitor::GuestCrashMonitor(GuestCrashAction action)
    : action_(Normalized(action)) {}

void GuestCrashMonitor::SetAction(GuestCrashAction action) {
  absl::MutexLock lock(&mu_);
  action_ = Normalized(action);
}

GuestCrashAction GuestCrashMonitor::action() const {
  absl::MutexLock lock(&mu_);
  return action_;
}

void GuestCrashMonitor::SetActions(Actions actions) {
  absl::MutexLock lock(&mu_);
  actions_ = std::move(actions);
}

void GuestCrashMonitor::OnGuestCrash(
    const hvcore::hyperv::GuestCrashReport& report) {
  GuestCrashReport described = DescribeGuestCrash(report, absl::Now());
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    if (handling_) {
      if (last_.has_value())
        last_->set_suppressed_reports(last_->suppressed_reports() + 1);
      reports_log_.Note(
          [&] {
            spdlog::warn(
                "guest reported another crash on vp{} while its first is "
                "handled: counted, not acted upon",
                report.vp_index);
          },
          [&] { return described.summary(); });
      return;
    }
    handling_ = true;
    described.set_action(action_);
    last_ = described;
    actions = actions_;
  }
  reports_log_.Note([&] {
    spdlog::error(
        "guest reported a crash on vp{}: {} (P0-P4 0x{:x} 0x{:x} 0x{:x} 0x{:x} "
        "0x{:x}); action: {}",
        described.vp(), described.summary(), report.params[0], report.params[1],
        report.params[2], report.params[3], report.params[4],
        ActionName(described.action()));
  });
  if (actions.hold_vps) actions.hold_vps();
  if (actions.publish) actions.publish(described);
  switch (described.action()) {
    case hvstack::internal::GUEST_CRASH_ACTION_REBOOT:
      if (actions.reboot)
        actions.reboot(absl::StrCat("guest crashed: ", described.summary()));
      break;
    case hvstack::internal::GUEST_CRASH_ACTION_PAUSE:
      break;  // Held until vmms resumes or stops the VM.
    default:
      if (actions.end) actions.end(described.summary());
      break;
  }
}

void GuestCrashMonitor::OnResume() {
  absl::MutexLock lock(&mu_);
  handling_ = false;
}

std::optional<GuestCrashReport> GuestCrashMonitor::last() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

}  // namespace vmwp
