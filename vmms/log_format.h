#ifndef HVSTACK_VMMS_LOG_FORMAT_H_
#define HVSTACK_VMMS_LOG_FORMAT_H_

// Lets spdlog/fmt print absl::string_view (e.g. absl::Status::message()).
// Debian builds Abseil with its own string_view type, which fmt does not know.
#include <fmt/format.h>

#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  auto format(absl::string_view s, fmt::format_context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(
        fmt::string_view(s.data(), s.size()), ctx);
  }
};

#endif  // HVSTACK_VMMS_LOG_FORMAT_H_
