#ifndef HVSTACK_VMMS_INTEGRATION_CACHE_H_
#define HVSTACK_VMMS_INTEGRATION_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/hvstack/v1/vm.pb.h"

namespace vmms {

// What GetVm shows of a running guest's integration components, answered from
// what vmms knows, never by waiting on the worker: the last snapshot read from
// the VM's current worker, refreshed in the background when a read finds it
// older than `max_age`. A worker that is slow, hung or going away only leaves
// the snapshot older (or, after a failed refresh, carrying `error`); the
// reader never waits for it. Before the first snapshot of a worker, an
// enlightened VM shows what every fresh worker reports: heartbeat NO_CONTACT,
// VMBus not connected.
class IntegrationCache {
 public:
  // How a refresh asks the worker: GetStatus on `socket` within `timeout`
  // (QueryIntegration; a test may pass its own).
  using Query = std::function<hvstack::v1::GuestIntegration(
      const std::string& socket, absl::Duration timeout)>;

  explicit IntegrationCache(
      Query query, absl::Duration max_age = absl::Milliseconds(250),
      absl::Duration query_timeout = absl::Milliseconds(500));
  ~IntegrationCache();
  IntegrationCache(const IntegrationCache&) = delete;
  IntegrationCache& operator=(const IntegrationCache&) = delete;

  // The snapshot of VM `uuid`'s worker `generation` (reached at `socket`);
  // queues a refresh if it is stale. Returns at once.
  hvstack::v1::GuestIntegration Get(const std::string& uuid,
                                    uint64_t generation,
                                    const std::string& socket);

 private:
  struct Entry {
    uint64_t generation = 0;
    std::string socket;
    hvstack::v1::GuestIntegration snapshot;
    absl::Time read_at = absl::InfinitePast();
    absl::Time last_asked = absl::InfinitePast();
    bool queued = false;
  };
  void RefreshLoop();

  const Query query_;
  const absl::Duration max_age_;
  const absl::Duration query_timeout_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

}  // namespace vmms

#endif  // HVSTACK_VMMS_INTEGRATION_CACHE_H_
