#ifndef HVSTACK_VMWP_VMBUS_SYNIC_SEAM_H_
#define HVSTACK_VMWP_VMBUS_SYNIC_SEAM_H_

// The seam between the VMBus server and the synthetic interrupt controller
// (the SynIC, emulated in hvcore/). Two directions:
//  - SynicPort: what the server asks of the SynIC (post a message into a VP's
//    SINT message slot; set an event flag and assert the SINT). hvcore
//    implements it (behind an adapter in vmwp/: hvcore knows no devices).
//  - SynicGuestCalls: what the SynIC calls when the guest issues
//    HvPostMessage / HvSignalEvent. VmbusServer implements it.
// Both are called from VP threads; implementations lock for themselves.

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace vmbus {

// Hypercall status codes (Hyper-V TLFS, HV_STATUS_*) the guest sees.
enum class HvStatus : uint16_t {
  kSuccess = 0x0000,
  kInvalidHypercallInput = 0x0003,
  kInvalidParameter = 0x0005,
  kInsufficientMemory = 0x000B,
  kInvalidConnectionId = 0x0012,
  kInsufficientBuffers = 0x0013,
};

class SynicPort {
 public:
  virtual ~SynicPort() = default;

  // Posts a SynIC message (header message_type = `message_type`, payload of
  // at most 240 bytes) to SINT `sint` of virtual processor `vp`. The SynIC
  // queues it while the slot is busy and delivers queued messages in order
  // as the guest writes EOM; an error means the message can never be
  // delivered (no such VP, SINT masked for good ...).
  virtual absl::Status PostMessage(uint32_t vp, uint8_t sint,
                                   uint32_t message_type,
                                   std::span<const uint8_t> payload) = 0;

  // Sets bit `flag` of SINT `sint`'s event flags in `vp`'s SIEF page and, if
  // it was clear, asserts the SINT (an interrupt to the guest).
  virtual absl::Status SignalEvent(uint32_t vp, uint8_t sint,
                                   uint32_t flag) = 0;
};

class SynicGuestCalls {
 public:
  virtual ~SynicGuestCalls() = default;

  // HvPostMessage from `vp`: the SynIC has copied the input page; payload
  // is at most 240 bytes (the SynIC rejects larger ones itself with
  // kInvalidParameter). The return value is the hypercall's status.
  virtual HvStatus OnPostMessage(uint32_t vp, uint32_t connection_id,
                                 uint32_t message_type,
                                 std::span<const uint8_t> payload) = 0;

  // HvSignalEvent from `vp` (the fast hypercall: connection id and flag
  // number in registers).
  virtual HvStatus OnSignalEvent(uint32_t vp, uint32_t connection_id,
                                 uint16_t flag_number) = 0;
};

}  // namespace vmbus

#endif  // HVSTACK_VMWP_VMBUS_SYNIC_SEAM_H_
