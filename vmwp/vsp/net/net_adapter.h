#ifndef HVSTACK_VMWP_VSP_NET_NET_ADAPTER_H_
#define HVSTACK_VMWP_VSP_NET_NET_ADAPTER_H_

// One synthetic network adapter: the VMBus offer hv_netvsc binds to, and a
// device thread of its own that does all the work. VP threads only post to
// it: a guest signal wakes it (eventfd), channel open/close and GPADL
// teardown are queued for it. The thread drains the channel (in budgets),
// writes the guest's frames to the TAP device, reads frames from the TAP
// device for the guest (epoll), and never blocks on either.

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/scoped_fd.h"
#include "vmwp/vmbus/vsp.h"
#include "vmwp/vsp/net/lent_buffer.h"
#include "vmwp/vsp/net/netvsp_session.h"
#include "vmwp/vsp/net/nic_counters.h"
#include "vmwp/vsp/net/rndis_device.h"
#include "vmwp/vsp/net/tap_device.h"

namespace vsp::net {

class NetAdapter final : public vmbus::Vsp, private FrameSink {
 public:
  struct Config {
    uint32_t index = 0;
    MacAddress mac{};
    uint32_t mtu = 1500;  // 68..9000
    // The TAP descriptor (non-blocking), owned from here on.
    base::ScopedFd tap;
    bool vnet_header = false;
    vmbus::Guid instance;  // stable per VM and index
    std::string name;      // for logs, e.g. "nic0 (hvtap0a1b n0 on br0)"
  };
  struct Options {
    // Run first on the device thread (the sandbox's device-thread filter).
    // On an error the thread logs it and ends: the adapter stays silent.
    std::function<absl::Status()> on_thread_start;
    NetvspSession::Limits limits;
    // No thread: the owner calls Poll() (tests, benchmarks).
    bool manual = false;
  };
  static constexpr uint32_t kMinMtu = 68;    // ETH_MIN_MTU
  static constexpr uint32_t kMaxMtu = 9000;  // jumbo frames

  // InvalidArgument for an MTU out of range or a bad descriptor.
  static absl::StatusOr<std::unique_ptr<NetAdapter>> Create(Config config,
                                                            Options options);
  ~NetAdapter() override;
  NetAdapter(const NetAdapter&) = delete;
  NetAdapter& operator=(const NetAdapter&) = delete;

  // Starts the device thread (after the sandbox's lock-down: the thread
  // installs a filter of its own). Not in manual mode.
  void Start();
  // Tells the guest the link is down (the adapter is detached), then stops
  // and joins the device thread. Idempotent; the destructor calls it.
  void Stop();
  // Connects or disconnects the adapter as the guest sees it.
  void SetLink(bool up);
  // Manual mode: one round of the device loop, without waiting.
  void Poll();

  uint32_t index() const { return config_.index; }
  const std::string& name() const { return config_.name; }
  const NicCounters& counters() const { return counters_; }

  // vmbus::Vsp. OnOpen/OnClose/OnGpadlTeardown come under the server's
  // lock, OnGuestSignal on a VP thread: all only post to the device thread
  // (teardown also revokes the buffer at once). OnPacket is called by the
  // device thread's own Drain.
  const vmbus::VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                      std::span<const uint8_t> user_data) override;
  void OnPacket(vmbus::ChannelEndpoint& endpoint,
                const vmbus::Packet& packet) override;
  void OnGuestSignal(vmbus::ChannelEndpoint& endpoint) override;
  void OnClose(uint32_t relid) override;
  void OnGpadlTeardown(uint32_t relid, uint32_t handle) override;

 private:
  struct Event {
    enum class Kind { kOpen, kClose, kGpadlRevoked, kLink, kStop } kind;
    std::shared_ptr<vmbus::ChannelEndpoint> endpoint;
    uint32_t value = 0;
  };
  static constexpr uint32_t kDrainBudget = 64;
  static constexpr uint32_t kReadBudget = 64;

  NetAdapter(Config config, Options options, base::ScopedFd epoll,
             base::ScopedFd wake);
  void Post(Event event);
  void Loop();
  // One round; true if work is left that needs no new event (a budget ran
  // out), so the caller goes again without waiting.
  bool RunOnce();
  // false: a Stop event was processed.
  bool ProcessEvents();
  bool DrainGuest();
  bool ReadTap();
  void UpdateTapInterest();
  absl::Status WriteFrame(
      std::span<const std::span<const uint8_t>> pieces) override;

  Config config_;
  const Options options_;
  vmbus::VspOffer offer_;
  RndisDevice device_;
  TapDevice tap_;
  NicCounters counters_;
  LentBuffers buffers_;
  base::ScopedFd epoll_;
  base::ScopedFd wake_;  // eventfd: events posted, guest signals

  absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);

  // Device thread only.
  std::unique_ptr<NetvspSession> session_;
  std::shared_ptr<vmbus::ChannelEndpoint> endpoint_;
  std::vector<vmbus::Packet> drained_;  // reused between rounds
  size_t drained_count_ = 0;
  std::vector<uint8_t> frame_;  // TAP read buffer
  bool tap_interest_ = true;
  bool stopped_ = false;

  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_NET_ADAPTER_H_
