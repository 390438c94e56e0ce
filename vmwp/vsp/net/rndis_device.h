#ifndef HVSTACK_VMWP_VSP_NET_RNDIS_DEVICE_H_
#define HVSTACK_VMWP_VSP_NET_RNDIS_DEVICE_H_

// The RNDIS miniport the guest talks to over NVSP: initialization, the OIDs
// Linux's hv_netvsc queries and sets, keepalive, reset, link indications, and
// the receive filter. Pure logic, single-threaded (the adapter's device
// thread owns it): control messages in, response messages out.
//
// What the adapter offers (see README.md): 802.3, MAC and MTU from the
// configuration, a 10 Gb/s link, no checksum / LSO / RSC / RSS offloads
// (OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES answers an NDIS_OFFLOAD with no
// capability bits, so Linux computes every checksum itself), no MAC change
// (RNDIS_CONFIG_PARAMETER "NetworkAddress" is refused).

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmwp/vsp/net/rndis.h"

namespace vsp::net {

using MacAddress = std::array<uint8_t, 6>;

struct RndisDeviceConfig {
  MacAddress mac{};
  uint32_t mtu = 1500;
  // OID_GEN_LINK_SPEED reports this (in its units of 100 b/s).
  uint64_t link_speed_bps = 10'000'000'000;
};

// What the INIT_C tells the guest about batching in a send section.
inline constexpr uint32_t kMaxPacketsPerMessage = 8;
inline constexpr uint32_t kPacketAlignmentFactor = 3;  // 8 bytes
inline constexpr uint32_t kMaxTransferSize = 64 * 1024;

class RndisDevice {
 public:
  explicit RndisDevice(RndisDeviceConfig config) : config_(config) {}

  // A control message from the guest (anything but PACKET). The response to
  // send back through the receive buffer, or nullopt when there is none
  // (HALT; messages a host never answers, which are errors: see `error`).
  struct Result {
    std::optional<std::vector<uint8_t>> response;
    absl::Status error;  // the message was malformed or unexpected
  };
  Result HandleControl(const RndisView& message, uint32_t nvsp_version);

  // The guest's INIT completed and no HALT followed.
  bool initialized() const { return initialized_; }
  uint32_t packet_filter() const { return packet_filter_; }
  // Whether a frame to `destination` passes the guest's packet filter.
  bool Accepts(std::span<const uint8_t> frame) const;

  // Link state as reported to the guest (MEDIA_CONNECT_STATUS); the adapter
  // sends the indication BuildLinkIndication returns when it changes.
  bool link_up() const { return link_up_; }
  void set_link_up(bool up) { link_up_ = up; }
  static std::vector<uint8_t> BuildLinkIndication(bool up);

  const RndisDeviceConfig& config() const { return config_; }
  // The largest frame (Ethernet header and one 802.1Q tag included) the
  // adapter passes either way.
  uint32_t max_frame_size() const { return config_.mtu + 14 + 4; }

 private:
  Result Query(const RndisOidRequestView& r, uint32_t nvsp_version);
  Result Set(const RndisOidRequestView& r);

  const RndisDeviceConfig config_;
  bool initialized_ = false;
  bool link_up_ = true;
  uint32_t packet_filter_ = 0;
};

}  // namespace vsp::net

#endif  // HVSTACK_VMWP_VSP_NET_RNDIS_DEVICE_H_
