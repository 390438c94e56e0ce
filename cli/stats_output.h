#ifndef HVSTACK_CLI_STATS_OUTPUT_H_
#define HVSTACK_CLI_STATS_OUTPUT_H_

#include <string>

#include "proto/hvstack/v1/vm.pb.h"

namespace vmctl {

// `stats NAME`: "key: value" lines, then one "vpN: cpu ... exits ..." line per
// VP.
std::string FormatStats(const hvstack::v1::VmStats& stats);
// `stats`: NAME STATE UPTIME CPU RSS EXITS CONSOLE, one line per VM.
std::string FormatStatsTable(const hvstack::v1::ListVmStatsResponse& all);
// `hostinfo`: "key: value" lines, capabilities sorted by name.
std::string FormatHostInfo(const hvstack::v1::HostInfo& info);

}  // namespace vmctl

#endif  // HVSTACK_CLI_STATS_OUTPUT_H_
