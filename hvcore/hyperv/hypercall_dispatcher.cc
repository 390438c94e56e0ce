#include "hvcore/hyperv/hypercall_dispatcher.h"

#include <cstring>
#include <span>

namespace hvcore::hyperv {
namespace {

// None of the implemented calls is a rep call or takes a variable header.
bool IsSimpleCall(const HypercallControl& c) {
  return c.rep_count == 0 && c.rep_start == 0 && c.var_header_qwords == 0;
}

}  // namespace

HvStatus HypercallDispatcher::ReadInput(uint64_t gpa, void* out,
                                        uint64_t size) {
  if (gpa % 8 != 0) return kHvStatusInvalidAlignment;
  if ((gpa & kPageMask) + size > kPageSize) return kHvStatusInvalidAlignment;
  // TLFS, common status codes: a GPA "not within the bounds of the GPA
  // space" is INVALID_ALIGNMENT too. We have no memory-intercept path for
  // MMIO, so anything that is not RAM answers the same.
  if (!ReadGuest(ram_, gpa,
                 std::span<uint8_t>(static_cast<uint8_t*>(out), size))
           .ok()) {
    return kHvStatusInvalidAlignment;
  }
  return kHvStatusSuccess;
}

uint64_t HypercallDispatcher::Dispatch(uint32_t vp_index,
                                       const HypercallArgs& args) {
  const std::optional<HypercallControl> control = DecodeControl(args.control);
  if (!control) return HypercallResult(kHvStatusInvalidHypercallInput);
  HvStatus status;
  switch (control->code) {
    case kHvCallPostMessage:
      status = PostMessage(vp_index, *control, args);
      break;
    case kHvCallSignalEvent:
      status = SignalEvent(vp_index, *control, args);
      break;
    case kHvCallNotifyLongSpinWait:
      status = NotifyLongSpinWait(*control, args);
      break;
    default:
      status = kHvStatusInvalidHypercallCode;
      break;
  }
  return HypercallResult(status);
}

HvStatus HypercallDispatcher::PostMessage(uint32_t vp_index,
                                          const HypercallControl& control,
                                          const HypercallArgs& args) {
  // 256 bytes of input do not fit the two fast-call registers, and we do not
  // offer XMM input.
  if (!IsSimpleCall(control) || control.fast) {
    return kHvStatusInvalidHypercallInput;
  }
  HvPostMessageInput input;
  if (HvStatus s = ReadInput(args.input, &input, sizeof(input));
      s != kHvStatusSuccess) {
    return s;
  }
  if (input.payload_size > kMessagePayloadSize || input.reserved != 0 ||
      input.message_type == kMessageTypeNone ||
      (input.message_type & kMessageTypeHypervisorMask)) {
    return kHvStatusInvalidParameter;
  }
  std::shared_ptr<MessagePortHandler> port =
      connections_.FindMessagePort(input.connection_id);
  if (port == nullptr) return kHvStatusInvalidConnectionId;
  return port->OnMessage(
      vp_index, input.message_type,
      std::span<const uint8_t>(input.payload, input.payload_size));
}

HvStatus HypercallDispatcher::SignalEvent(uint32_t vp_index,
                                          const HypercallControl& control,
                                          const HypercallArgs& args) {
  if (!IsSimpleCall(control)) return kHvStatusInvalidHypercallInput;
  HvSignalEventInput input;
  if (control.fast) {
    std::memcpy(&input, &args.input, sizeof(input));
  } else if (HvStatus s = ReadInput(args.input, &input, sizeof(input));
             s != kHvStatusSuccess) {
    return s;
  }
  if (input.reserved != 0) return kHvStatusInvalidParameter;
  std::shared_ptr<EventPortHandler> port =
      connections_.FindEventPort(input.connection_id);
  if (port == nullptr) return kHvStatusInvalidConnectionId;
  return port->OnEvent(vp_index, input.flag_number);
}

HvStatus HypercallDispatcher::NotifyLongSpinWait(
    const HypercallControl& control, const HypercallArgs& args) {
  if (!IsSimpleCall(control)) return kHvStatusInvalidHypercallInput;
  if (!control.fast) {
    uint64_t spin_count;
    if (HvStatus s = ReadInput(args.input, &spin_count, sizeof(spin_count));
        s != kHvStatusSuccess) {
      return s;
    }
  }
  // A hint that a VP spins on a lock held by a preempted VP; KVM schedules
  // our vCPU threads, so there is nothing to do. CPUID asks guests never to
  // send it (spinlock retries = all ones).
  return kHvStatusSuccess;
}

}  // namespace hvcore::hyperv
