#include "hvcore/hyperv/hostile_guest.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>

#include "hvcore/hyperv/byte_array_guest_ram.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/hv_partition.h"

namespace hvcore::hyperv {
namespace {

constexpr uint64_t kRamSize = 16 * kPageSize;
constexpr uint32_t kVps = 2;

#define HOSTILE_CHECK(cond)                                           \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, \
                   __LINE__, #cond);                                  \
      std::abort();                                                   \
    }                                                                 \
  } while (0)

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  uint8_t U8() { return pos_ < s_.size() ? s_[pos_++] : 0; }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
  // A GPA that is usually interesting: in RAM, at its edges, or anywhere.
  uint64_t Gpa() {
    switch (U8() % 4) {
      case 0:
        return (U8() % 18) * kPageSize;  // pages, two past the end
      case 1:
        return (U8() % 16) * kPageSize + (U64() & kPageMask);
      case 2:
        return kRamSize - (U8() % 300);
      default:
        return U64();
    }
  }

 private:
  std::span<const uint8_t> s_;
  size_t pos_ = 0;
};

class CountingPort final : public MessagePortHandler, public EventPortHandler {
 public:
  HvStatus OnMessage(uint32_t vp, uint32_t type,
                     std::span<const uint8_t> payload) override {
    HOSTILE_CHECK(vp < kVps);
    HOSTILE_CHECK(payload.size() <= kMessagePayloadSize);
    HOSTILE_CHECK(type != 0 && !(type & kMessageTypeHypervisorMask));
    return (++calls % 3 == 0) ? kHvStatusInsufficientBuffers : kHvStatusSuccess;
  }
  HvStatus OnEvent(uint32_t vp, uint16_t flag) override {
    HOSTILE_CHECK(vp < kVps);
    return flag < 128 ? kHvStatusSuccess : kHvStatusInvalidParameter;
  }
  int calls = 0;
};

// Mostly the MSRs we implement, sometimes anything in the range.
uint32_t Msr(Reader& r) {
  static constexpr uint32_t kInteresting[] = {
      kMsrGuestOsId,    kMsrHypercall,    kMsrVpIndex,   kMsrTimeRefCount,
      kMsrReferenceTsc, kMsrVpAssistPage, kMsrScontrol,  kMsrSiefp,
      kMsrSimp,         kMsrEom,          kMsrSint0 + 2, kMsrSint15};
  const uint8_t pick = r.U8();
  if (pick < 192) return kInteresting[pick % std::size(kInteresting)];
  return kMsrRangeBase + (r.U8() | (r.U8() & 1) << 8);
}

constexpr HypercallCaller kKernel64{.cpl = 0, .long_mode = true};

bool KnownStatus(uint64_t result) {
  switch (static_cast<uint16_t>(result)) {
    case kHvStatusSuccess:
    case kHvStatusInvalidHypercallCode:
    case kHvStatusInvalidHypercallInput:
    case kHvStatusInvalidAlignment:
    case kHvStatusInvalidParameter:
    case kHvStatusInvalidConnectionId:
    case kHvStatusInsufficientBuffers:
      return (result >> 16) == 0;
    default:
      return false;
  }
}

}  // namespace

HvStatsSnapshot RunHostileGuestScript(std::span<const uint8_t> script) {
  ByteArrayGuestRam ram(kRamSize);
  FakeTsc tsc;
  RecordingInjector injector;
  HvPartitionConfig config;
  config.vp_count = kVps;
  config.tsc_hz = 2'000'000'000;
  config.max_queued_messages_per_sint = 8;
  auto partition = HvPartition::Create(config, ram, tsc, injector);
  HOSTILE_CHECK(partition.ok());
  HvPartition& p = **partition;
  auto port = std::make_shared<CountingPort>();
  HOSTILE_CHECK(p.connections().RegisterMessagePort(4, port).ok());
  HOSTILE_CHECK(p.connections().RegisterEventPort(7, port).ok());

  Reader r(script);
  // Most scripts start from a guest that booted like Linux, so that they get
  // past the #UD / FailedPrecondition gates into the interesting paths.
  if (r.U8() % 4 != 0) {
    for (uint32_t vp = 0; vp < kVps; ++vp) {
      (void)p.WriteMsr(vp, kMsrGuestOsId, 0x8100ull << 48);
      (void)p.WriteMsr(vp, kMsrHypercall, 1 * kPageSize | 1);
      (void)p.WriteMsr(vp, kMsrSimp, (2 + 2 * vp) * kPageSize | 1);
      (void)p.WriteMsr(vp, kMsrSiefp, (3 + 2 * vp) * kPageSize | 1);
      (void)p.WriteMsr(vp, kMsrSint0 + 2, 0xF3);
      (void)p.WriteMsr(vp, kMsrScontrol, 1);
    }
  }
  while (!r.done()) {
    const uint32_t vp = r.U8() % (kVps + 1);  // sometimes a VP that is not
    switch (r.U8() % 8) {
      case 0: {  // write a synthetic MSR: page-like values are common
        const uint32_t msr = Msr(r);
        const uint64_t value =
            (r.U8() & 1) ? (r.Gpa() | (r.U8() & 3)) : r.U64();
        (void)p.WriteMsr(vp, msr, value);
        break;
      }
      case 1: {
        (void)p.ReadMsr(vp, Msr(r));
        break;
      }
      case 2: {  // a hypercall
        uint64_t control = r.U64();
        if (r.U8() & 1) control = (control & ~kHcCodeMask) | (r.U8() % 0x60);
        if (r.U8() & 1) control &= ~(kHcReservedMask | kHcRepCountMask);
        const HypercallOutcome out =
            p.Hypercall(vp, {control, r.Gpa(), r.Gpa()},
                        {.cpl = static_cast<uint8_t>(r.U8() % 4 == 0),
                         .long_mode = r.U8() % 8 != 0});
        if (!out.inject_ud) HOSTILE_CHECK(KnownStatus(out.result));
        break;
      }
      case 3: {  // a well-formed post message input, at a random place
        HvPostMessageInput in{};
        in.connection_id = (r.U8() & 1) ? 4 : r.U64();
        in.message_type = (r.U8() & 1) ? 1 : static_cast<uint32_t>(r.U64());
        in.payload_size = r.U8();
        const uint64_t gpa = r.Gpa();
        if (uint8_t* dst = ram.HostPointer(gpa, sizeof(in))) {
          std::memcpy(dst, &in, sizeof(in));
        }
        const HypercallOutcome out =
            p.Hypercall(vp, {kHvCallPostMessage, gpa, 0}, kKernel64);
        if (!out.inject_ud) HOSTILE_CHECK(KnownStatus(out.result));
        break;
      }
      case 4: {  // the guest scribbles anywhere, SynIC pages included
        const uint64_t gpa = r.Gpa();
        const uint8_t len = r.U8() % 16;
        if (uint8_t* dst = ram.HostPointer(gpa, len)) {
          for (uint8_t i = 0; i < len; ++i) dst[i] = r.U8();
        }
        break;
      }
      case 5: {  // host posts
        uint8_t payload[kMessagePayloadSize + 8] = {};
        const size_t size = r.U8() % sizeof(payload);
        (void)p.PostMessage(vp, r.U8() % 17, 1 + r.U8(),
                            std::span<const uint8_t>(payload, size));
        break;
      }
      case 6:
        (void)p.SignalEvent(vp, r.U8() % 17, r.U8() | (r.U8() & 0xF) << 8);
        break;
      default:  // the guest frees a slot and writes EOM
        if (vp < kVps) {
          const uint64_t simp = p.ReadMsr(vp, kMsrSimp).value;
          if (uint8_t* slot = ram.HostPointer(
                  (simp & kMsrPageAddressMask) + (r.U8() % 16) * 256, 4)) {
            std::memset(slot, 0, 4);
          }
          (void)p.WriteMsr(vp, kMsrEom, 0);
        }
        break;
    }
    tsc.tsc += r.U8();
    for (uint32_t v = 0; v < kVps; ++v) {
      for (uint32_t s = 0; s < kSintCount; ++s) {
        HOSTILE_CHECK(p.synic(v).QueuedMessages(s) <=
                      config.max_queued_messages_per_sint);
      }
    }
    for (const auto& i : injector.Take()) {
      HOSTILE_CHECK(i.vp_index < kVps);
      HOSTILE_CHECK(i.vector >= kSintFirstValidVector);
    }
  }
  return p.stats();
}

}  // namespace hvcore::hyperv
