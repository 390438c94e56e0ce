#include "guest/unixhv/hyperv.h"

#include "guest/unixhv/cpu.h"

namespace unixhv::hv {
namespace {

// Set once by EnableHypercalls / EnableSynic / EnableReferenceTsc; a UnixHv
// guest runs its enlightenments on the boot VP only.
void* hypercall_page = nullptr;
uint8_t post_input[4096] __attribute__((aligned(4096)));
Message* simp_page = nullptr;
uint8_t* siefp_page = nullptr;

struct ReferenceTscPage {
  volatile uint32_t tsc_sequence;
  uint32_t reserved1;
  volatile uint64_t tsc_scale;
  volatile int64_t tsc_offset;
};
ReferenceTscPage* tsc_page = nullptr;

// Linux's generate_guest_id(): open-source bit 63, vendor 0x100 (Linux) in
// 62:48; we put a made-up kernel version 1.0 in 47:16.
constexpr uint64_t kGuestOsId = (0x8100ull << 48) | (0x010000ull << 16);

}  // namespace

Features Detect() {
  Features f;
  if ((Cpuid(1).ecx & (1u << 31)) == 0) return f;  // no hypervisor bit
  CpuidResult vendor = Cpuid(0x40000000);
  // "Microsoft Hv" as EBX, ECX, EDX.
  if (vendor.ebx != 0x7263694D || vendor.ecx != 0x666F736F ||
      vendor.edx != 0x76482074) {
    return f;
  }
  f.max_leaf = vendor.eax;
  if (f.max_leaf < 0x40000005) return f;
  if (Cpuid(0x40000001).eax != 0x31237648) return f;  // "Hv#1"
  CpuidResult version = Cpuid(0x40000002);
  f.build = version.eax;
  f.major = version.ebx >> 16;
  f.minor = version.ebx & 0xFFFF;
  CpuidResult features = Cpuid(0x40000003);
  f.privileges_low = features.eax;
  f.privileges_high = features.ebx;
  f.features_edx = features.edx;
  f.present = true;
  return f;
}

bool EnableHypercalls(void* page) {
  Wrmsr(kMsrGuestOsId, kGuestOsId);
  const uint64_t gpa = reinterpret_cast<uint64_t>(page);
  // Keep the RsvdP bits 11:1 as read (TLFS), set the page and enable.
  const uint64_t old = Rdmsr(kMsrHypercall);
  Wrmsr(kMsrHypercall, (old & 0xFFE) | gpa | 1);
  if ((Rdmsr(kMsrHypercall) & 1) == 0) return false;
  hypercall_page = page;
  return true;
}

uint64_t Hypercall(uint64_t control, uint64_t input, uint64_t output) {
  uint64_t status;
  register uint64_t r8 asm("r8") = output;
  // The page preserves every register but RAX (Hyper-V's ABI); tell the
  // compiler less than that anyway, as Linux does.
  asm volatile("call *%[page]"
               : "=a"(status), "+c"(control), "+d"(input), "+r"(r8)
               : [page] "m"(hypercall_page)
               : "cc", "memory", "r9", "r10", "r11");
  return status;
}

uint16_t PostMessage(uint32_t connection_id, uint32_t message_type,
                     const void* payload, uint32_t size) {
  struct Input {
    uint32_t connection_id;
    uint32_t reserved;
    uint32_t message_type;
    uint32_t payload_size;
    uint8_t payload[kMessagePayloadSize];
  };
  static_assert(sizeof(Input) == 256);
  auto* in = reinterpret_cast<Input*>(post_input);
  in->connection_id = connection_id;
  in->reserved = 0;
  in->message_type = message_type;
  in->payload_size = size;
  const uint8_t* src = static_cast<const uint8_t*>(payload);
  for (uint32_t i = 0; i < kMessagePayloadSize; ++i) {
    in->payload[i] = i < size ? src[i] : 0;
  }
  return static_cast<uint16_t>(
      Hypercall(kCallPostMessage, reinterpret_cast<uint64_t>(in), 0));
}

uint16_t SignalEvent(uint32_t connection_id, uint16_t flag) {
  return static_cast<uint16_t>(
      Hypercall(kCallSignalEvent | kCallFast,
                uint64_t{connection_id} | (uint64_t{flag} << 32), 0));
}

void EnableSynic(void* simp, void* siefp, uint8_t sint, uint8_t vector) {
  simp_page = static_cast<Message*>(simp);
  siefp_page = static_cast<uint8_t*>(siefp);
  Wrmsr(kMsrSimp,
        (Rdmsr(kMsrSimp) & 0xFFE) | reinterpret_cast<uint64_t>(simp) | 1);
  Wrmsr(kMsrSiefp,
        (Rdmsr(kMsrSiefp) & 0xFFE) | reinterpret_cast<uint64_t>(siefp) | 1);
  // Keep the reserved bits; vector in 7:0, clear masked (16), auto-EOI (17)
  // and polling (18).
  const uint32_t msr = kMsrSint0 + sint;
  uint64_t v = Rdmsr(msr);
  v &= ~(0xFFull | (1ull << 16) | (1ull << 17) | (1ull << 18));
  Wrmsr(msr, v | vector);
  Wrmsr(kMsrScontrol, Rdmsr(kMsrScontrol) | 1);
}

Message* MessageSlot(uint8_t sint) { return simp_page + sint; }

void FinishMessage(Message* slot) {
  slot->message_type = 0;  // HVMSG_NONE
  // The type must be visibly free before we look at the pending flag: the
  // hypervisor sets the flag only while the slot is busy (Linux: mb()).
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (slot->message_flags & 1) Wrmsr(kMsrEom, 0);
}

bool TestAndClearEvent(uint8_t sint, uint32_t flag) {
  auto* word = reinterpret_cast<uint64_t*>(siefp_page + sint * 256) + flag / 64;
  const uint64_t bit = 1ull << (flag % 64);
  return (__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST) & bit) != 0;
}

bool ClearAllEvents(uint8_t sint) {
  auto* words = reinterpret_cast<uint64_t*>(siefp_page + sint * 256);
  uint64_t any = 0;
  for (int i = 0; i < 32; ++i) {
    if (__atomic_load_n(&words[i], __ATOMIC_RELAXED) != 0) {
      any |= __atomic_exchange_n(&words[i], 0, __ATOMIC_SEQ_CST);
    }
  }
  return any != 0;
}

uint64_t ReadTimeRefCount() { return Rdmsr(kMsrTimeRefCount); }

bool EnableReferenceTsc(void* page) {
  Wrmsr(kMsrReferenceTsc, (Rdmsr(kMsrReferenceTsc) & 0xFFE) |
                              reinterpret_cast<uint64_t>(page) | 1);
  if ((Rdmsr(kMsrReferenceTsc) & 1) == 0) return false;
  tsc_page = static_cast<ReferenceTscPage*>(page);
  return true;
}

uint64_t ReadReferenceTime() {
  if (tsc_page == nullptr) return ReadTimeRefCount();
  for (int tries = 0; tries < 16; ++tries) {
    const uint32_t seq = tsc_page->tsc_sequence;
    if (seq == 0 || seq == 0xFFFFFFFF) break;  // invalid: use the MSR
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    const uint64_t scale = tsc_page->tsc_scale;
    const int64_t offset = tsc_page->tsc_offset;
    const uint64_t tsc = Rdtsc();
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (tsc_page->tsc_sequence != seq) continue;
    const unsigned __int128 product =
        static_cast<unsigned __int128>(tsc) * scale;
    return static_cast<uint64_t>(product >> 64) + offset;
  }
  return ReadTimeRefCount();
}

}  // namespace unixhv::hv
