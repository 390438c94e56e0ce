#include "vmwp/vsp/ic/ic_channel.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace vsp::ic {

IcChannel::IcChannel(std::string name, vmbus::Guid interface_type,
                     vmbus::Guid interface_instance, uint16_t message_type,
                     std::span<const IcVersion> service_versions)
    : name_(std::move(name)),
      message_type_(message_type),
      service_versions_(service_versions.begin(), service_versions.end()) {
  offer_.interface_type = interface_type;
  offer_.interface_instance = interface_instance;
  // IC messages are small (KVP, the largest, is ~7.5 KiB); hv_utils opens
  // 3-page rings.
  offer_.max_packet_size = 16384;
  offer_.max_ring_data_bytes = 1u << 20;
}

bool IcChannel::negotiated() const {
  absl::MutexLock lock(&mu_);
  return negotiated_;
}

bool IcChannel::open() const {
  absl::MutexLock lock(&mu_);
  return endpoint_ != nullptr;
}

IcVersions IcChannel::versions() const {
  absl::MutexLock lock(&mu_);
  return versions_;
}

absl::Status IcChannel::OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                               std::span<const uint8_t> user_data) {
  std::vector<uint8_t> negotiate =
      BuildNegotiate(kFrameworkVersions, service_versions_);
  absl::StatusOr<vmbus::WriteResult> sent = endpoint->Send(
      vmbus::kPacketDataInband, vmbus::kPacketFlagCompletionRequested,
      next_transaction_++, negotiate);
  if (!sent.ok()) return sent.status();
  if (!sent->written) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: ring too small for the IC negotiation", name_));
  }
  absl::MutexLock lock(&mu_);
  endpoint_ = std::move(endpoint);
  negotiated_ = false;
  return absl::OkStatus();
}

void IcChannel::OnPacket(vmbus::ChannelEndpoint& endpoint,
                         const vmbus::Packet& packet) {
  if (packet.type != vmbus::kPacketDataInband) return;
  std::span<const uint8_t> bytes = packet.data();
  // Peek at icmsgtype (pipe header + icverframe = byte 12) to check the
  // response against its own type; ParseIcResponse checks the size first.
  uint16_t type = kIcNegotiate;
  if (bytes.size() >= kIcHeadersSize) {
    type = static_cast<uint16_t>(bytes[12] | (bytes[13] << 8));
  }
  absl::StatusOr<IcResponse> any = ParseIcResponse(bytes, type);
  if (!any.ok()) {
    bad_packets_log_.Note(
        [&] {
          spdlog::warn("ic {}: dropped a packet: {}", name_,
                       any.status().ToString());
        },
        [&] { return any.status().ToString(); });
    return;
  }
  if (any->header.icmsgtype == kIcNegotiate) {
    absl::StatusOr<IcVersions> v =
        ParseNegotiateResponse(bytes, kFrameworkVersions, service_versions_);
    if (!v.ok()) {
      bad_packets_log_.Note(
          [&] {
            spdlog::warn("ic {}: negotiation failed: {}", name_,
                         v.status().ToString());
          },
          [&] { return v.status().ToString(); });
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      versions_ = *v;
      negotiated_ = true;
    }
    spdlog::info("ic {}: framework {}, service {}", name_,
                 VersionString(v->framework), VersionString(v->message));
    OnNegotiated(*v);
    return;
  }
  if (any->header.icmsgtype != message_type_ || !negotiated()) {
    const uint16_t type = any->header.icmsgtype;
    bad_packets_log_.Note(
        [&] { spdlog::warn("ic {}: unexpected message type {}", name_, type); },
        [&] { return absl::StrCat("message type ", type); });
    return;
  }
  OnServiceResponse(bytes);
}

void IcChannel::OnClose(uint32_t relid) {
  {
    absl::MutexLock lock(&mu_);
    endpoint_.reset();
    negotiated_ = false;
  }
  OnChannelClosed();
}

absl::Status IcChannel::SendRequest(std::span<const uint8_t> bytes) {
  std::shared_ptr<vmbus::ChannelEndpoint> endpoint;
  {
    absl::MutexLock lock(&mu_);
    if (!negotiated_ || endpoint_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the guest has not opened and negotiated the %s channel", name_));
    }
    endpoint = endpoint_;
  }
  absl::StatusOr<vmbus::WriteResult> sent = endpoint->Send(
      vmbus::kPacketDataInband, vmbus::kPacketFlagCompletionRequested,
      next_transaction_++, bytes);
  if (!sent.ok()) return sent.status();
  if (!sent->written) {
    return absl::UnavailableError(
        absl::StrFormat("%s: the guest's ring is full", name_));
  }
  return absl::OkStatus();
}

}  // namespace vsp::ic
