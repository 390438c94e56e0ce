#ifndef HVSTACK_VMMS_REQUEST_PEER_H_
#define HVSTACK_VMMS_REQUEST_PEER_H_

#include <string>

namespace vmms {

// The client on whose behalf the current thread is changing the store, for the
// `peer` columns of the event log and the state history.
//
// Why a thread-local and not a parameter: gRPC's synchronous server runs one
// handler on one thread from start to end, so the handler sets it once and
// every row that handler writes, however deep in the worker manager, carries
// it; no signature between the service and the store has to know about
// callers. Rows written by vmms's own threads (a supervisor recording that a
// worker exited or the guest powered off) carry none: they are vmms's own
// decisions, which the proto documents as an empty peer.
class ScopedRequestPeer {
 public:
  explicit ScopedRequestPeer(std::string peer);
  ~ScopedRequestPeer();
  ScopedRequestPeer(const ScopedRequestPeer&) = delete;
  ScopedRequestPeer& operator=(const ScopedRequestPeer&) = delete;

 private:
  std::string previous_;
};

// The peer set by the innermost ScopedRequestPeer on this thread, else "".
const std::string& CurrentRequestPeer();

}  // namespace vmms

#endif  // HVSTACK_VMMS_REQUEST_PEER_H_
