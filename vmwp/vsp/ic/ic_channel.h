#ifndef HVSTACK_VMWP_VSP_IC_IC_CHANNEL_H_
#define HVSTACK_VMWP_VSP_IC_IC_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "base/log_rate_limiter.h"
#include "vmwp/vmbus/vsp.h"
#include "vmwp/vsp/ic/ic_framework.h"

namespace hvstack::saved {
class IcState;
}  // namespace hvstack::saved

namespace vsp::ic {

// The VMBus side shared by every integration component: one channel, the
// framework/service version negotiation the host starts as soon as the guest
// opens it (hv_utils waits for it), then the service's requests out and the
// guest's answers in. Services derive and implement OnServiceResponse.
class IcChannel : public vmbus::Vsp {
 public:
  IcChannel(std::string name, vmbus::Guid interface_type,
            vmbus::Guid interface_instance, uint16_t message_type,
            std::span<const IcVersion> service_versions);

  const std::string& name() const { return name_; }
  bool negotiated() const;
  // The guest has the channel open (negotiated or not yet).
  bool open() const;
  IcVersions versions() const;

  // vmbus::Vsp.
  const vmbus::VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                      std::span<const uint8_t> user_data) override;
  void OnPacket(vmbus::ChannelEndpoint& endpoint,
                const vmbus::Packet& packet) override;
  void OnClose(uint32_t relid) override;
  // Save and restore (issue 14; ic_state.cc): the negotiated versions and
  // next transaction id, plus the service's own state (SaveService /
  // RestoreService). A restored channel needs no new negotiation.
  absl::StatusOr<std::string> SaveState() override;
  absl::Status RestoreState(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                            std::string_view state) override;

 protected:
  // Sends a service request (built with BuildIcRequest & co.). Fails before
  // negotiation, after close, or when the ring is full.
  absl::Status SendRequest(std::span<const uint8_t> bytes);
  // Called once versions are agreed (from the guest's VP thread).
  virtual void OnNegotiated(const IcVersions& versions) {}
  // A response of the service's message type.
  virtual void OnServiceResponse(std::span<const uint8_t> bytes) = 0;
  virtual void OnChannelClosed() {}
  // The service's part of a save / restore (the base has filled and checked
  // the channel's part). RestoreService runs before the channel is usable.
  virtual void SaveService(hvstack::saved::IcState& state) const {}
  virtual absl::Status RestoreService(const hvstack::saved::IcState& state) {
    return absl::OkStatus();
  }

 private:
  const std::string name_;
  const uint16_t message_type_;
  const std::vector<IcVersion> service_versions_;
  vmbus::VspOffer offer_;
  std::atomic<uint64_t> next_transaction_{1};
  // The guest decides how many bad packets it sends.
  base::LogRateLimiter bad_packets_log_{"dropped IC packets"};

  mutable absl::Mutex mu_;
  std::shared_ptr<vmbus::ChannelEndpoint> endpoint_ ABSL_GUARDED_BY(mu_);
  bool negotiated_ ABSL_GUARDED_BY(mu_) = false;
  IcVersions versions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsp::ic

#endif  // HVSTACK_VMWP_VSP_IC_IC_CHANNEL_H_
