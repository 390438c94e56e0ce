#include "vmms/event_stream.h"

namespace vmms {
namespace {

constexpr int kBatch = 256;
// How often a waiting stream checks whether its client is still there.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(200);

}  // namespace

absl::Status StreamEvents(
    VmStore& store, const hvstack::v1::WatchEventsRequest& request,
    const std::function<bool()>& cancelled,
    const std::function<bool(const hvstack::v1::VmEvent&)>& write) {
  uint64_t last = request.after_sequence();
  while (!cancelled()) {
    absl::StatusOr<std::vector<hvstack::v1::VmEvent>> events =
        store.ReadEvents(last, kBatch);
    if (!events.ok()) return events.status();
    for (const hvstack::v1::VmEvent& event : *events) {
      if (!write(event)) return absl::OkStatus();
      last = event.sequence();
    }
    if (events->size() == kBatch) continue;
    if (!request.follow()) return absl::OkStatus();
    while (!store.AwaitEventAfter(last, kCancelPoll)) {
      if (cancelled() || store.EventWatchersClosed()) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace vmms
