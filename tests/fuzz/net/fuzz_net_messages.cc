// libFuzzer target: what a hostile netvsc can hand netvsp's parsers and its
// RNDIS miniport (vmwp/vsp/net: nvsp.h, rndis.h, rndis_device.h).
//
// Input: [0] the negotiated NVSP version (index into the versions Linux
// offers), then records of [kind:1][length:2 LE][bytes]. Kind even: the
// bytes are a VMBus packet's payload for ParseNvsp, read as every fixed body
// the host accepts. Kind odd: the bytes are a send section, RNDIS messages
// back to back as netvsp walks them: PACKETs through ParseRndisPacket and
// the packet filter, everything else through one RndisDevice (its state
// carries over from record to record).
// Checks: views stay inside their input; a response is a whole RNDIS
// message with the length in its header, at most one receive section;
// errors are INVALID_ARGUMENT; the device accepts frames only with a
// packet filter set.

#include <cstdint>
#include <cstring>
#include <span>

#include "vmwp/vsp/net/nvsp.h"
#include "vmwp/vsp/net/nvsp_protocol.h"
#include "vmwp/vsp/net/rndis.h"
#include "vmwp/vsp/net/rndis_device.h"
#include "vmwp/vsp/net/rndis_protocol.h"

#define CHECK(cond) \
  if (!(cond)) __builtin_trap()

namespace {

using namespace vsp::net;

constexpr uint32_t kVersions[] = {0x2,     0x30002, 0x40000,
                                  0x50000, 0x60000, 0x60001};
// A sanity bound: netvsp refuses (as a protocol error) a response larger
// than its receive section.
constexpr size_t kMaxResponse = kMaxTransferSize;

bool Inside(std::span<const uint8_t> part, std::span<const uint8_t> whole) {
  return part.empty() ||
         (part.data() >= whole.data() &&
          part.data() + part.size() <= whole.data() + whole.size());
}

template <typename T>
void Body(const NvspView& v) {
  absl::StatusOr<T> b = NvspBody<T>(v);
  CHECK(b.ok() == (v.body.size() >= sizeof(T)));
}

void Nvsp(std::span<const uint8_t> bytes) {
  absl::StatusOr<NvspView> v = ParseNvsp(bytes);
  if (!v.ok()) {
    CHECK(v.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  CHECK(Inside(v->body, bytes));
  CHECK(v->body.size() >= MinGuestBodySize(v->type));
  (void)NvspTypeName(v->type);
  Body<NvspInit>(*v);
  Body<Nvsp1SendNdisVersion>(*v);
  Body<Nvsp1SendBuffer>(*v);
  Body<Nvsp1RevokeBuffer>(*v);
  Body<Nvsp1SendRndisPacket>(*v);
  Body<Nvsp1SendRndisPacketComplete>(*v);
  Body<Nvsp2SendNdisConfig>(*v);
  Body<Nvsp4SwitchDataPath>(*v);
  Body<Nvsp5SubchannelRequest>(*v);
}

void Rndis(std::span<const uint8_t> section, RndisDevice& device,
           uint32_t nvsp_version) {
  while (!section.empty()) {
    absl::StatusOr<RndisView> m = ParseRndisMessage(section);
    if (!m.ok()) {
      CHECK(m.status().code() == absl::StatusCode::kInvalidArgument);
      return;
    }
    CHECK(m->length >= 8 && m->length <= section.size());
    CHECK(Inside(m->body, section.subspan(0, m->length)));
    (void)RndisTypeName(m->type);
    if (m->type == kRndisMsgPacket) {
      absl::StatusOr<RndisPacketView> p = ParseRndisPacket(m->body);
      if (p.ok()) {
        CHECK(Inside(p->frame, m->body));
        const bool accepted = device.Accepts(p->frame);
        CHECK(!accepted || device.packet_filter() != 0);
      } else {
        CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
      }
    } else {
      RndisDevice::Result r = device.HandleControl(*m, nvsp_version);
      if (r.response.has_value()) {
        const std::vector<uint8_t>& out = *r.response;
        CHECK(out.size() >= 8 && out.size() <= kMaxResponse);
        uint32_t length;
        std::memcpy(&length, out.data() + 4, 4);
        CHECK(length == out.size());
        absl::StatusOr<RndisView> echo = ParseRndisMessage(out);
        CHECK(echo.ok());
      }
    }
    // netvsp walks the next message at the header's length.
    section = section.subspan(m->length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint32_t version = kVersions[data[0] % std::size(kVersions)];
  RndisDeviceConfig config;
  config.mac = {0x02, 0, 0, 0, 0, 0x01};
  RndisDevice device(config);
  size_t at = 1;
  while (at + 3 <= size) {
    const uint8_t kind = data[at];
    const size_t length = std::min<size_t>(
        size - at - 3, data[at + 1] | (size_t{data[at + 2]} << 8));
    std::span<const uint8_t> bytes(data + at + 3, length);
    at += 3 + length;
    if (kind % 2 == 0) {
      Nvsp(bytes);
    } else {
      Rndis(bytes, device, version);
    }
  }
  return 0;
}
