#ifndef HVSTACK_GUEST_UNIXHV_HYPERV_H_
#define HVSTACK_GUEST_UNIXHV_HYPERV_H_

// The Hyper-V synthetic interface as a guest sees it (Hyper-V TLFS v6.0b;
// Linux spells the same numbers in asm-generic/hyperv-tlfs.h): detection
// through CPUID 0x40000000, GUEST_OS_ID, the hypercall page, HvPostMessage /
// HvSignalEvent, the SynIC (message page, event flags page, SINTs, EOM) and
// the partition reference time (TIME_REF_COUNT and the reference TSC page).
// Guest-physical = virtual in UnixHv (identity map), so a pointer is a GPA.

#include <stddef.h>
#include <stdint.h>

namespace unixhv::hv {

// ---- MSRs.
inline constexpr uint32_t kMsrGuestOsId = 0x40000000;
inline constexpr uint32_t kMsrHypercall = 0x40000001;
inline constexpr uint32_t kMsrVpIndex = 0x40000002;
inline constexpr uint32_t kMsrTimeRefCount = 0x40000020;
inline constexpr uint32_t kMsrReferenceTsc = 0x40000021;
inline constexpr uint32_t kMsrTscFrequency = 0x40000022;
inline constexpr uint32_t kMsrScontrol = 0x40000080;
inline constexpr uint32_t kMsrSversion = 0x40000081;
inline constexpr uint32_t kMsrSiefp = 0x40000082;
inline constexpr uint32_t kMsrSimp = 0x40000083;
inline constexpr uint32_t kMsrEom = 0x40000084;
inline constexpr uint32_t kMsrSint0 = 0x40000090;

inline uint64_t Rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return (uint64_t{hi} << 32) | lo;
}
inline void Wrmsr(uint32_t msr, uint64_t v) {
  asm volatile("wrmsr"
               :
               : "c"(msr), "a"(static_cast<uint32_t>(v)),
                 "d"(static_cast<uint32_t>(v >> 32))
               : "memory");
}

// ---- CPUID 0x40000003 (privileges and features).
inline constexpr uint32_t kPrivTimeRefCount = 1u << 1;
inline constexpr uint32_t kPrivSynicRegs = 1u << 2;
inline constexpr uint32_t kPrivHypercallMsrs = 1u << 5;
inline constexpr uint32_t kPrivVpIndex = 1u << 6;
inline constexpr uint32_t kPrivReferenceTsc = 1u << 9;
inline constexpr uint32_t kPrivPostMessages = 1u << 4;  // EBX
inline constexpr uint32_t kPrivSignalEvents = 1u << 5;  // EBX

struct Features {
  bool present = false;          // "Microsoft Hv" at 0x40000000 and "Hv#1"
  uint32_t max_leaf = 0;         // EAX of 0x40000000
  uint32_t privileges_low = 0;   // 0x40000003 EAX
  uint32_t privileges_high = 0;  // 0x40000003 EBX
  uint32_t features_edx = 0;     // 0x40000003 EDX
  uint32_t build = 0, major = 0, minor = 0;  // 0x40000002
};
// Reads the hypervisor leaves; `present` only for a Hyper-V interface.
Features Detect();

// ---- Hypercalls.
inline constexpr uint16_t kCallPostMessage = 0x005C;
inline constexpr uint16_t kCallSignalEvent = 0x005D;
inline constexpr uint64_t kCallFast = 1ull << 16;

inline constexpr uint16_t kStatusSuccess = 0x0000;
inline constexpr uint16_t kStatusInvalidHypercallCode = 0x0002;
inline constexpr uint16_t kStatusInvalidHypercallInput = 0x0003;
inline constexpr uint16_t kStatusInvalidAlignment = 0x0004;
inline constexpr uint16_t kStatusInvalidParameter = 0x0005;
inline constexpr uint16_t kStatusInvalidConnectionId = 0x0012;
inline constexpr uint16_t kStatusInsufficientBuffers = 0x0013;

// Writes GUEST_OS_ID (an open-source id as Linux builds it) and enables the
// hypercall page at `page` (4 KiB, page-aligned). False if the hypervisor did
// not keep the enable bit.
bool EnableHypercalls(void* page);
// Calls the hypercall page: RCX = control, RDX = input GPA (or fast input),
// R8 = output GPA (or second fast input); returns RAX (status in 15:0).
// Only valid after EnableHypercalls.
uint64_t Hypercall(uint64_t control, uint64_t input, uint64_t output);

// HvPostMessage from a 256-byte input block at a page-aligned scratch page
// (owned by this module, set by EnableHypercalls). Returns the HV status.
uint16_t PostMessage(uint32_t connection_id, uint32_t message_type,
                     const void* payload, uint32_t size);
// HvSignalEvent as a fast call (Linux's vmbus_set_event).
uint16_t SignalEvent(uint32_t connection_id, uint16_t flag = 0);

// ---- SynIC.
inline constexpr uint32_t kMessagePayloadSize = 240;
struct Message {
  volatile uint32_t message_type;
  volatile uint8_t payload_size;
  volatile uint8_t message_flags;  // bit 0: more messages pending
  uint8_t reserved[2];
  uint64_t sender;
  uint8_t payload[kMessagePayloadSize];
};
static_assert(sizeof(Message) == 256);

// Enables the SynIC on this VP: message page and event flags page (one page
// each, page-aligned, zeroed by the hypervisor), SINT `sint` to `vector`
// (unmasked, no auto-EOI: KVM's LAPIC cannot do it, and the hypervisor
// deprecates it), and SCONTROL.
void EnableSynic(void* simp, void* siefp, uint8_t sint, uint8_t vector);
// The message slot of `sint`.
Message* MessageSlot(uint8_t sint);
// Frees the slot after its payload was copied out, and asks the hypervisor
// to deliver the next one if it flagged more as pending (Linux's
// vmbus_signal_eom).
void FinishMessage(Message* slot);
// Atomically takes and clears the event flag `flag` of `sint`.
bool TestAndClearEvent(uint8_t sint, uint32_t flag);
// Clears every event flag of `sint`, returning whether any was set.
bool ClearAllEvents(uint8_t sint);

// ---- Partition reference time (100 ns units since the partition started).
uint64_t ReadTimeRefCount();  // the MSR
// Enables the reference TSC page at `page`; false if the hypervisor does not
// offer it.
bool EnableReferenceTsc(void* page);
// Reads the TSC page (retrying while its sequence changes); falls back to the
// MSR if the page is invalid (sequence 0) or not enabled.
uint64_t ReadReferenceTime();

}  // namespace unixhv::hv

#endif  // HVSTACK_GUEST_UNIXHV_HYPERV_H_
