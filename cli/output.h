#ifndef HVSTACK_CLI_OUTPUT_H_
#define HVSTACK_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "proto/hvstack/v1/vm.pb.h"

namespace vmctl {

// "running", "off", ...: the state without its VM_STATE_ prefix, lowercase.
std::string StateText(hvstack::v1::VmState state);

// Rows of cells as a table: columns padded to their widest cell plus two
// blanks, no trailing blanks.
std::string FormatColumns(const std::vector<std::vector<std::string>>& rows);

// The `list` table: a header (NAME STATE CPUS MEMORY UUID REASON) and one line
// per VM, columns padded to their widest cell.
std::string FormatTable(const hvstack::v1::ListVmsResponse& vms);

// `show`: one "key: value" line per field.
std::string FormatVm(const hvstack::v1::Vm& vm);
// The guest integration lines of FormatVm: "heartbeat: OK (seq 12)",
// "vmbus: 5.3", "integration_services: heartbeat shutdown ...", "guest_os:
// ...".
std::string FormatIntegration(const hvstack::v1::GuestIntegration& gi);
// The VM's disks: a table ADDRESS FORMAT MODE SERIAL PATH, or "no disks".
std::string FormatDisks(const hvstack::v1::Vm& vm);

// One "key=value" line per item.
std::string FormatKvpItems(const hvstack::v1::ListKvpResponse& items);

// `events`: the header line, then one line per event (SEQ TIME VM KIND STATE
// REASON), fixed widths so that a followed stream lines up without buffering.
std::string EventTableHeader();
std::string FormatEventLine(const hvstack::v1::VmEvent& event);

// The proto3 canonical JSON mapping of `message`, followed by a newline.
std::string FormatJson(const google::protobuf::Message& message);

}  // namespace vmctl

#endif  // HVSTACK_CLI_OUTPUT_H_
