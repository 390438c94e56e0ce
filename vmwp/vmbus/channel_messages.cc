#include "vmwp/vmbus/channel_messages.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace vmbus {
namespace {

template <typename T>
T Copy(std::span<const uint8_t> bytes) {
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

absl::Status WrongSize(uint32_t type, size_t got, const char* want) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s message of %d bytes: expected %s", MessageTypeName(type), got, want));
}

template <typename T>
absl::StatusOr<GuestMessage> Fixed(uint32_t type,
                                   std::span<const uint8_t> bytes) {
  if (bytes.size() != sizeof(T)) {
    return WrongSize(type, bytes.size(),
                     absl::StrFormat("%d", sizeof(T)).c_str());
  }
  return GuestMessage(Copy<T>(bytes));
}

}  // namespace

const char* MessageTypeName(uint32_t type) {
  switch (type) {
    case kMsgOfferChannel:
      return "OFFERCHANNEL";
    case kMsgRescindChannelOffer:
      return "RESCIND_CHANNELOFFER";
    case kMsgRequestOffers:
      return "REQUESTOFFERS";
    case kMsgAllOffersDelivered:
      return "ALLOFFERS_DELIVERED";
    case kMsgOpenChannel:
      return "OPENCHANNEL";
    case kMsgOpenChannelResult:
      return "OPENCHANNEL_RESULT";
    case kMsgCloseChannel:
      return "CLOSECHANNEL";
    case kMsgGpadlHeader:
      return "GPADL_HEADER";
    case kMsgGpadlBody:
      return "GPADL_BODY";
    case kMsgGpadlCreated:
      return "GPADL_CREATED";
    case kMsgGpadlTeardown:
      return "GPADL_TEARDOWN";
    case kMsgGpadlTorndown:
      return "GPADL_TORNDOWN";
    case kMsgRelidReleased:
      return "RELID_RELEASED";
    case kMsgInitiateContact:
      return "INITIATE_CONTACT";
    case kMsgVersionResponse:
      return "VERSION_RESPONSE";
    case kMsgUnload:
      return "UNLOAD";
    case kMsgUnloadResponse:
      return "UNLOAD_RESPONSE";
    case kMsgTlConnectRequest:
      return "TL_CONNECT_REQUEST";
    case kMsgModifyChannel:
      return "MODIFYCHANNEL";
    case kMsgTlConnectResult:
      return "TL_CONNECT_RESULT";
    case kMsgModifyChannelResponse:
      return "MODIFYCHANNEL_RESPONSE";
    default:
      return "unknown";
  }
}

Guid Guid::FromFields(uint32_t d1, uint16_t d2, uint16_t d3,
                      std::array<uint8_t, 8> d4) {
  Guid g;
  for (int i = 0; i < 4; ++i) g.bytes[i] = static_cast<uint8_t>(d1 >> (8 * i));
  g.bytes[4] = static_cast<uint8_t>(d2);
  g.bytes[5] = static_cast<uint8_t>(d2 >> 8);
  g.bytes[6] = static_cast<uint8_t>(d3);
  g.bytes[7] = static_cast<uint8_t>(d3 >> 8);
  for (int i = 0; i < 8; ++i) g.bytes[8 + i] = d4[i];
  return g;
}

std::string Guid::ToString() const {
  const auto& b = bytes;
  return absl::StrFormat(
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11],
      b[12], b[13], b[14], b[15]);
}

absl::StatusOr<GuestMessage> ParseGuestMessage(std::span<const uint8_t> bytes) {
  if (bytes.size() < sizeof(MessageHeader)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "channel message of %d bytes is shorter than its header",
        bytes.size()));
  }
  if (bytes.size() > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "channel message of %d bytes exceeds the %d-byte SynIC payload",
        bytes.size(), kMaxMessageSize));
  }
  const uint32_t type = Copy<MessageHeader>(bytes).msgtype;
  switch (type) {
    case kMsgInitiateContact:
      if (bytes.size() < sizeof(InitiateContact)) {
        return WrongSize(type, bytes.size(), "at least 40");
      }
      return GuestMessage(Copy<InitiateContact>(bytes));
    case kMsgRequestOffers:
      return Fixed<RequestOffers>(type, bytes);
    case kMsgOpenChannel:
      return Fixed<OpenChannel>(type, bytes);
    case kMsgCloseChannel:
      return Fixed<CloseChannel>(type, bytes);
    case kMsgGpadlTeardown:
      return Fixed<GpadlTeardown>(type, bytes);
    case kMsgRelidReleased:
      return Fixed<RelidReleased>(type, bytes);
    case kMsgUnload:
      return Fixed<Unload>(type, bytes);
    case kMsgModifyChannel:
      return Fixed<ModifyChannel>(type, bytes);
    case kMsgTlConnectRequest:
      return Fixed<TlConnectRequest>(type, bytes);
    case kMsgGpadlHeader: {
      const size_t rest =
          bytes.size() - std::min(bytes.size(), sizeof(GpadlHeader));
      if (bytes.size() < sizeof(GpadlHeader) + sizeof(GpaRangeHeader) ||
          rest % 8 != 0) {
        return WrongSize(type, bytes.size(),
                         "20 + a range header and PFNs in 8-byte units");
      }
      GpadlHeaderMessage m;
      m.fixed = Copy<GpadlHeader>(bytes);
      if (rest > m.fixed.range_buflen) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "GPADL_HEADER carries %d range bytes, more than range_buflen %d",
            rest, m.fixed.range_buflen));
      }
      m.range_bytes.assign(bytes.begin() + sizeof(GpadlHeader), bytes.end());
      return GuestMessage(std::move(m));
    }
    case kMsgGpadlBody: {
      const size_t rest =
          bytes.size() - std::min(bytes.size(), sizeof(GpadlBody));
      if (bytes.size() < sizeof(GpadlBody) + 8 || rest % 8 != 0) {
        return WrongSize(type, bytes.size(), "16 + whole PFNs (at least one)");
      }
      GpadlBodyMessage m;
      m.fixed = Copy<GpadlBody>(bytes);
      m.pfns.resize(rest / 8);
      std::memcpy(m.pfns.data(), bytes.data() + sizeof(GpadlBody), rest);
      return GuestMessage(std::move(m));
    }
    case kMsgOfferChannel:
    case kMsgRescindChannelOffer:
    case kMsgAllOffersDelivered:
    case kMsgOpenChannelResult:
    case kMsgGpadlCreated:
    case kMsgGpadlTorndown:
    case kMsgVersionResponse:
    case kMsgUnloadResponse:
    case kMsgTlConnectResult:
    case kMsgModifyChannelResponse:
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s is a host-to-guest message; a guest may not send it",
          MessageTypeName(type)));
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown channel message type %d", type));
  }
}

}  // namespace vmbus
