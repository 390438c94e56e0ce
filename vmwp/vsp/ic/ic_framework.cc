#include "vmwp/vsp/ic/ic_framework.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace vsp::ic {

std::string VersionString(IcVersion v) {
  return absl::StrFormat("%d.%d", v.major, v.minor);
}

std::vector<uint8_t> BuildIcRequest(uint16_t type, const IcVersions& versions,
                                    std::span<const uint8_t> body) {
  std::vector<uint8_t> out(kIcHeadersSize + body.size());
  PipeHeader pipe{0, static_cast<uint32_t>(sizeof(IcMsgHeader) + body.size())};
  IcMsgHeader h{};
  h.icverframe = versions.framework;
  h.icmsgtype = type;
  h.icvermsg = versions.message;
  h.icmsgsize = static_cast<uint16_t>(body.size());
  h.icflags = kIcFlagTransaction | kIcFlagRequest;
  std::memcpy(out.data(), &pipe, sizeof(pipe));
  std::memcpy(out.data() + sizeof(pipe), &h, sizeof(h));
  if (!body.empty()) {
    std::memcpy(out.data() + kIcHeadersSize, body.data(), body.size());
  }
  return out;
}

std::vector<uint8_t> BuildNegotiate(std::span<const IcVersion> framework,
                                    std::span<const IcVersion> message) {
  std::vector<uint8_t> body(sizeof(IcNegotiate) +
                            (framework.size() + message.size()) *
                                sizeof(IcVersion));
  IcNegotiate n{static_cast<uint16_t>(framework.size()),
                static_cast<uint16_t>(message.size()), 0};
  std::memcpy(body.data(), &n, sizeof(n));
  uint8_t* at = body.data() + sizeof(n);
  for (auto list : {framework, message}) {
    std::memcpy(at, list.data(), list.size() * sizeof(IcVersion));
    at += list.size() * sizeof(IcVersion);
  }
  // The header's versions mean nothing during negotiation; hv_utils ignores
  // them.
  return BuildIcRequest(kIcNegotiate, IcVersions{{1, 0}, {1, 0}}, body);
}

absl::StatusOr<IcResponse> ParseIcResponse(std::span<const uint8_t> bytes,
                                           uint16_t expected_type) {
  if (bytes.size() < kIcHeadersSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IC response of %d bytes is shorter than its headers (%d)",
        bytes.size(), kIcHeadersSize));
  }
  IcResponse r;
  std::memcpy(&r.header, bytes.data() + sizeof(PipeHeader), sizeof(r.header));
  if ((r.header.icflags & kIcFlagResponse) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IC packet with flags 0x%x is not a response", r.header.icflags));
  }
  if (r.header.icmsgtype != expected_type) {
    return absl::InvalidArgumentError(
        absl::StrFormat("IC response of type %d, expected %d",
                        r.header.icmsgtype, expected_type));
  }
  r.body = bytes.subspan(kIcHeadersSize);
  return r;
}

absl::StatusOr<IcVersions> ParseNegotiateResponse(
    std::span<const uint8_t> bytes, std::span<const IcVersion> framework,
    std::span<const IcVersion> message) {
  absl::StatusOr<IcResponse> r = ParseIcResponse(bytes, kIcNegotiate);
  if (!r.ok()) return r.status();
  if (r->body.size() < sizeof(IcNegotiate) + 2 * sizeof(IcVersion)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IC negotiate response body of %d bytes", r->body.size()));
  }
  IcNegotiate n;
  std::memcpy(&n, r->body.data(), sizeof(n));
  IcVersion picked[2];
  std::memcpy(picked, r->body.data() + sizeof(n), sizeof(picked));
  if (n.icframe_vercnt == 0 || n.icmsg_vercnt == 0) {
    return absl::FailedPreconditionError(
        "the guest supports none of the offered IC versions");
  }
  if (n.icframe_vercnt != 1 || n.icmsg_vercnt != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("IC negotiate response with %d framework and %d "
                        "message versions, expected 1 and 1",
                        n.icframe_vercnt, n.icmsg_vercnt));
  }
  auto offered = [](std::span<const IcVersion> list, IcVersion v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  if (!offered(framework, picked[0]) || !offered(message, picked[1])) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest picked IC versions %s / %s, which were not offered",
        VersionString(picked[0]), VersionString(picked[1])));
  }
  return IcVersions{picked[0], picked[1]};
}

}  // namespace vsp::ic
