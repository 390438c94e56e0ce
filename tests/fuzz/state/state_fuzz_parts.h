#ifndef HVSTACK_TESTS_FUZZ_STATE_STATE_FUZZ_PARTS_H_
#define HVSTACK_TESTS_FUZZ_STATE_STATE_FUZZ_PARTS_H_

// The host side a saved state is restored into, for fuzz_state_file and
// make_state_seeds: the worker's KVM-free parts (COM1, i8042, CMOS RTC, PM1a
// event and control blocks, a VMBus server with two VSPs over 64 pages of
// guest RAM), built as the worker builds them for a boot.

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "vmwp/devices/acpi_pm1_event.h"
#include "vmwp/devices/acpi_power_port.h"
#include "vmwp/devices/cmos_rtc.h"
#include "vmwp/devices/i8042.h"
#include "vmwp/devices/uart16550.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/vsp.h"

namespace state_fuzz {

#define STATE_FUZZ_CHECK(cond) \
  if (!(cond)) __builtin_trap()

inline constexpr uint32_t kVps = 2;
inline constexpr uint64_t kGuestPages = 64;

class NullSynic : public vmbus::SynicPort {
 public:
  absl::Status PostMessage(uint32_t vp, uint8_t sint, uint32_t,
                           std::span<const uint8_t> payload) override {
    STATE_FUZZ_CHECK(payload.size() <= vmbus::kMaxMessageSize);
    STATE_FUZZ_CHECK(sint < 16);
    STATE_FUZZ_CHECK(vp < kVps);
    return absl::OkStatus();
  }
  absl::Status SignalEvent(uint32_t vp, uint8_t, uint32_t) override {
    STATE_FUZZ_CHECK(vp < kVps);
    return absl::OkStatus();
  }
};

// Echoes packets; saves "echo" + its packet count, and refuses anything else
// at restore, as a real VSP refuses a state it cannot read.
class EchoVsp : public vmbus::Vsp {
 public:
  explicit EchoVsp(uint8_t instance) {
    offer_.max_packet_size = 8192;
    offer_.interface_type.bytes[0] = 0xEC;
    offer_.interface_instance.bytes[0] = instance;
  }
  const vmbus::VspOffer& offer() const override { return offer_; }
  absl::Status OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> ep,
                      std::span<const uint8_t>) override {
    ep_ = std::move(ep);
    return absl::OkStatus();
  }
  void OnPacket(vmbus::ChannelEndpoint& ep, const vmbus::Packet& p) override {
    ++packets_;
    (void)ep.Send(vmbus::kPacketCompletion, 0, p.trans_id, p.data());
  }
  void OnClose(uint32_t) override { ep_.reset(); }
  absl::StatusOr<std::string> SaveState() override {
    return "echo" + std::to_string(packets_);
  }
  absl::Status RestoreState(std::shared_ptr<vmbus::ChannelEndpoint> ep,
                            std::string_view state) override {
    if (state.substr(0, 4) != "echo") {
      return absl::InvalidArgumentError("not an echo VSP state");
    }
    ep_ = std::move(ep);
    return absl::OkStatus();
  }

 private:
  vmbus::VspOffer offer_;
  std::shared_ptr<vmbus::ChannelEndpoint> ep_;
  uint64_t packets_ = 0;
};

struct Parts {
  vmwp::Uart16550 com1{[](std::string_view) {}};
  vmwp::I8042 i8042{[] {}};
  vmwp::CmosRtc rtc{[] { return absl::FromUnixSeconds(1'700'000'000); }};
  vmwp::AcpiPm1Event pm1_event;
  vmwp::AcpiPowerPort power{[] {}};
  vmbus::FlatGuestPages memory{kGuestPages};
  NullSynic synic;
  std::deque<EchoVsp> vsps;
  vmbus::VmbusServer server{memory, synic, {.vp_count = kVps}};

  Parts() {
    vsps.emplace_back(1);
    vsps.emplace_back(2);
    for (EchoVsp& v : vsps) STATE_FUZZ_CHECK(server.AddVsp(&v).ok());
  }
};

}  // namespace state_fuzz

#endif  // HVSTACK_TESTS_FUZZ_STATE_STATE_FUZZ_PARTS_H_
