#ifndef HVSTACK_HVCORE_HYPERV_TLFS_H_
#define HVSTACK_HVCORE_HYPERV_TLFS_H_

// Numbers and guest-visible layouts of the Hyper-V synthetic interface, as the
// Hyper-V TLFS v6.0b defines them (Linux spells the same things in
// asm-generic/hyperv-tlfs.h and arch/x86/include/asm/hyperv-tlfs.h). Only what
// this package uses is here; every layout has a size check because the guest
// reads these bytes with its own definitions.

#include <cstdint>

namespace hvcore::hyperv {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageMask = kPageSize - 1;

// --- CPUID leaves -----------------------------------------------------------
inline constexpr uint32_t kCpuidVendorAndMax = 0x40000000;
inline constexpr uint32_t kCpuidInterface = 0x40000001;
inline constexpr uint32_t kCpuidVersion = 0x40000002;
inline constexpr uint32_t kCpuidFeatures = 0x40000003;
inline constexpr uint32_t kCpuidRecommendations = 0x40000004;
inline constexpr uint32_t kCpuidLimits = 0x40000005;
inline constexpr uint32_t kCpuidHardwareFeatures = 0x40000006;
inline constexpr uint32_t kCpuidMaxLeaf = 0x4000000A;
inline constexpr uint32_t kInterfaceSignatureHv1 = 0x31237648;  // "Hv#1"

// 0x40000003 EAX: HV_PARTITION_PRIVILEGE_MASK bits 31:0.
inline constexpr uint32_t kPrivVpRuntime = 1u << 0;
inline constexpr uint32_t kPrivTimeRefCount = 1u << 1;
inline constexpr uint32_t kPrivSynicRegs = 1u << 2;
inline constexpr uint32_t kPrivSyntheticTimers = 1u << 3;
inline constexpr uint32_t kPrivApicMsrs = 1u << 4;
inline constexpr uint32_t kPrivHypercallMsrs = 1u << 5;
inline constexpr uint32_t kPrivVpIndex = 1u << 6;
inline constexpr uint32_t kPrivResetMsr = 1u << 7;
inline constexpr uint32_t kPrivReferenceTsc = 1u << 9;
inline constexpr uint32_t kPrivFrequencyMsrs = 1u << 11;
// 0x40000003 EBX: HV_PARTITION_PRIVILEGE_MASK bits 63:32.
inline constexpr uint32_t kPrivPostMessages = 1u << 4;
inline constexpr uint32_t kPrivSignalEvents = 1u << 5;
// 0x40000003 EDX: miscellaneous features.
inline constexpr uint32_t kFeatFrequencyMsrsAvailable = 1u << 8;
inline constexpr uint32_t kFeatGuestCrashMsrsAvailable = 1u << 10;
inline constexpr uint32_t kFeatSintPollingAvailable = 1u << 17;
inline constexpr uint32_t kFeatHypercallMsrLockAvailable = 1u << 18;
// 0x40000004 EAX: implementation recommendations.
inline constexpr uint32_t kRecRelaxedTiming = 1u << 5;
inline constexpr uint32_t kRecDeprecateAutoEoi = 1u << 9;
// 0x40000004 EBX: spinlock retries before HvNotifyLongSpinWait; all ones
// means "never notify".
inline constexpr uint32_t kSpinlockRetriesNever = 0xFFFFFFFF;

// --- Synthetic MSRs ---------------------------------------------------------
inline constexpr uint32_t kMsrGuestOsId = 0x40000000;
inline constexpr uint32_t kMsrHypercall = 0x40000001;
inline constexpr uint32_t kMsrVpIndex = 0x40000002;
inline constexpr uint32_t kMsrTimeRefCount = 0x40000020;
inline constexpr uint32_t kMsrReferenceTsc = 0x40000021;
inline constexpr uint32_t kMsrTscFrequency = 0x40000022;
inline constexpr uint32_t kMsrApicFrequency = 0x40000023;
inline constexpr uint32_t kMsrVpAssistPage = 0x40000073;
inline constexpr uint32_t kMsrScontrol = 0x40000080;
inline constexpr uint32_t kMsrSversion = 0x40000081;
inline constexpr uint32_t kMsrSiefp = 0x40000082;
inline constexpr uint32_t kMsrSimp = 0x40000083;
inline constexpr uint32_t kMsrEom = 0x40000084;
inline constexpr uint32_t kMsrSint0 = 0x40000090;
inline constexpr uint32_t kMsrSint15 = 0x4000009F;
// Guest crash notification: P0-P4 are free-form parameters (Linux: error
// code, guest id, RIP, RAX, RSP -- or, with NOTIFY_MSG, P3 = GPA and P4 =
// length of a panic message); writing CTL with NOTIFY reports the crash.
inline constexpr uint32_t kMsrCrashP0 = 0x40000100;
inline constexpr uint32_t kMsrCrashP4 = 0x40000104;
inline constexpr uint32_t kMsrCrashCtl = 0x40000105;
inline constexpr uint64_t kCrashCtlNotify = 1ull << 63;
inline constexpr uint64_t kCrashCtlNotifyMsg = 1ull << 62;

// The MSR range the VMM must route to this package (KVM_X86_SET_MSR_FILTER
// deny range): everything the TLFS puts at 0x40000000-0x400001FF, so that
// MSRs we do not implement get a #GP from us rather than from KVM's in-kernel
// Hyper-V on hosts that happen to have one.
inline constexpr uint32_t kMsrRangeBase = 0x40000000;
inline constexpr uint32_t kMsrRangeCount = 0x200;

// Page-address MSRs (HYPERCALL, REFERENCE_TSC, SIMP, SIEFP, VP_ASSIST_PAGE):
// bit 0 enable, bits 63:12 guest page number. Bits 11:1 are RsvdP ("value
// should be preserved", read/write): the TLFS lets guests write them and
// expects them back, so they are stored, never a #GP. HYPERCALL uses bit 1 as
// its lock.
inline constexpr uint64_t kMsrPageEnable = 1;
inline constexpr uint64_t kMsrPageAddressMask = ~kPageMask;
inline constexpr uint64_t kHypercallLocked = 1ull << 1;

inline constexpr uint64_t kScontrolEnable = 1;
inline constexpr uint64_t kSynicVersion = 1;
inline constexpr uint32_t kSintCount = 16;
inline constexpr uint64_t kSintVectorMask = 0xFF;
inline constexpr uint64_t kSintMasked = 1ull << 16;
inline constexpr uint64_t kSintAutoEoi = 1ull << 17;
inline constexpr uint64_t kSintPolling = 1ull << 18;
inline constexpr uint64_t kSintResetValue = kSintMasked;
inline constexpr uint32_t kSintFirstValidVector = 16;

// --- Hypercalls -------------------------------------------------------------
// Control word (RCX).
inline constexpr uint64_t kHcCodeMask = 0xFFFF;
inline constexpr uint64_t kHcFast = 1ull << 16;
inline constexpr int kHcVarHeaderShift = 17;
inline constexpr uint64_t kHcVarHeaderMask = 0x3FFull << kHcVarHeaderShift;
inline constexpr int kHcRepCountShift = 32;
inline constexpr uint64_t kHcRepCountMask = 0xFFFull << kHcRepCountShift;
inline constexpr int kHcRepStartShift = 48;
inline constexpr uint64_t kHcRepStartMask = 0xFFFull << kHcRepStartShift;
// Bits 31:27 (incl. "nested", bit 31), 47:44 and 63:60.
inline constexpr uint64_t kHcReservedMask =
    (0x1Full << 27) | (0xFull << 44) | (0xFull << 60);
// Result (RAX): status in 15:0, reps completed in 43:32.
inline constexpr int kHcResultRepsShift = 32;

enum HvCallCode : uint16_t {
  kHvCallFlushVirtualAddressSpace = 0x0002,
  kHvCallFlushVirtualAddressList = 0x0003,
  kHvCallNotifyLongSpinWait = 0x0008,
  kHvCallSendSyntheticClusterIpi = 0x000B,
  kHvCallSendSyntheticClusterIpiEx = 0x0015,
  kHvCallPostMessage = 0x005C,
  kHvCallSignalEvent = 0x005D,
};

// HV_STATUS values.
enum HvStatus : uint16_t {
  kHvStatusSuccess = 0x0000,
  kHvStatusInvalidHypercallCode = 0x0002,
  kHvStatusInvalidHypercallInput = 0x0003,
  kHvStatusInvalidAlignment = 0x0004,
  kHvStatusInvalidParameter = 0x0005,
  kHvStatusAccessDenied = 0x0006,
  kHvStatusInvalidPortId = 0x0011,
  kHvStatusInvalidConnectionId = 0x0012,
  kHvStatusInsufficientBuffers = 0x0013,
  // For port handlers: the target VP is gone / its SynIC cannot take it.
  kHvStatusInvalidVpIndex = 0x000E,
  kHvStatusInvalidSynicState = 0x0018,
};

// --- SynIC pages ------------------------------------------------------------
inline constexpr uint32_t kMessageSize = 256;
inline constexpr uint32_t kMessagePayloadSize = 240;
inline constexpr uint32_t kMessageTypeNone = 0;
// Message types with bit 31 set belong to the hypervisor; guests may not post
// them.
inline constexpr uint32_t kMessageTypeHypervisorMask = 0x80000000;
inline constexpr uint8_t kMessageFlagPending = 1;
inline constexpr uint32_t kEventFlagsPerSint = 2048;
inline constexpr uint32_t kEventFlagsBytesPerSint = kEventFlagsPerSint / 8;

// hv_message_header + payload. The first 8 bytes (type, size, flags,
// reserved) are one naturally aligned word: the SynIC claims and marks slots
// with atomic operations on it, racing the guest's own writes.
struct HvMessage {
  uint32_t message_type;
  uint8_t payload_size;
  uint8_t message_flags;
  uint8_t reserved[2];
  uint64_t sender;  // port id / sender; 0 for messages from the host
  uint8_t payload[kMessagePayloadSize];
};
static_assert(sizeof(HvMessage) == kMessageSize);

// Connection ids are 24 bits; bits 31:24 are reserved.
inline constexpr uint32_t kConnectionIdMask = 0x00FFFFFF;

// HvPostMessage input (hv_input_post_message).
struct HvPostMessageInput {
  uint32_t connection_id;
  uint32_t reserved;
  uint32_t message_type;
  uint32_t payload_size;
  uint8_t payload[kMessagePayloadSize];
};
static_assert(sizeof(HvPostMessageInput) == 256);

// HvSignalEvent input (hv_input_signal_event), 8 bytes: fits a fast call.
struct HvSignalEventInput {
  uint32_t connection_id;
  uint16_t flag_number;
  uint16_t reserved;
};
static_assert(sizeof(HvSignalEventInput) == 8);

// The reference TSC page (ms_hyperv_tsc_page): the guest computes
// ((rdtsc() * tsc_scale) >> 64) + tsc_offset, in 100 ns units, retrying while
// tsc_sequence changes; sequence 0 means "invalid, use the MSR".
struct HvReferenceTscPage {
  uint32_t tsc_sequence;
  uint32_t reserved1;
  uint64_t tsc_scale;
  int64_t tsc_offset;
};
static_assert(sizeof(HvReferenceTscPage) == 24);

// The partition reference clock ticks at 10 MHz (100 ns).
inline constexpr uint64_t kReferenceHz = 10'000'000;

}  // namespace hvcore::hyperv

#endif  // HVSTACK_HVCORE_HYPERV_TLFS_H_
