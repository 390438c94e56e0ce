#include "vmwp/vsp/ic/kvp.h"

#include <cstring>
#include <memory>

#include "absl/strings/str_format.h"
#include "vmwp/vsp/ic/utf16.h"

namespace vsp::ic {
namespace {

// Size of `utf8` as UTF-16 with its NUL (to refuse rather than truncate).
size_t Utf16Size(const std::string& utf8) {
  std::vector<uint8_t> scratch(2 * utf8.size() + 2);
  return EncodeUtf16(utf8, scratch.data(), scratch.size());
}

absl::Status FillValue(KvpExchangeValue& v, const KvpRequest& r) {
  if (Utf16Size(r.key) > kKvpMaxKeySize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP key of %d bytes is too long (at most 255 UTF-16 characters)",
        r.key.size()));
  }
  if (Utf16Size(r.value) > kKvpMaxValueSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP value of %d bytes is too long (at most 1023 UTF-16 characters)",
        r.value.size()));
  }
  v.value_type = kRegSz;
  v.key_size = static_cast<uint32_t>(EncodeUtf16(r.key, v.key, sizeof(v.key)));
  if (r.op == KvpOperation::kSet) {
    v.value_size =
        static_cast<uint32_t>(EncodeUtf16(r.value, v.value, sizeof(v.value)));
  }
  return absl::OkStatus();
}

std::string DecodeValue(const KvpExchangeValue& v) {
  if (v.value_type == kRegU32 && v.value_size >= 4) {
    uint32_t x;
    std::memcpy(&x, v.value, 4);
    return std::to_string(x);
  }
  if (v.value_type == kRegU64 && v.value_size >= 8) {
    uint64_t x;
    std::memcpy(&x, v.value, 8);
    return std::to_string(x);
  }
  return DecodeUtf16(std::span<const uint8_t>(v.value, v.value_size));
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> BuildKvpRequest(
    const KvpRequest& request, const IcVersions& versions) {
  auto msg = std::make_unique<KvpMessage>();
  std::memset(msg.get(), 0, sizeof(KvpMessage));
  msg->header.operation = static_cast<uint8_t>(request.op);
  msg->header.pool = static_cast<uint8_t>(request.pool);
  switch (request.op) {
    case KvpOperation::kGet:
    case KvpOperation::kSet:
      if (absl::Status s = FillValue(msg->body.get_set, request); !s.ok()) {
        return s;
      }
      break;
    case KvpOperation::kDelete: {
      KvpExchangeValue v{};
      if (absl::Status s = FillValue(v, request); !s.ok()) return s;
      msg->body.del.key_size = v.key_size;
      std::memcpy(msg->body.del.key, v.key, sizeof(v.key));
      break;
    }
    case KvpOperation::kEnumerate:
      msg->body.enumerate.index = request.index;
      break;
    default:
      return absl::UnimplementedError(
          absl::StrFormat("KVP operation %d is not supported by the host",
                          static_cast<int>(request.op)));
  }
  return BuildIcRequest(
      kIcKvpExchange, versions,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(msg.get()),
                               sizeof(KvpMessage)));
}

absl::StatusOr<KvpResult> ParseKvpResponse(std::span<const uint8_t> bytes) {
  absl::StatusOr<IcResponse> r = ParseIcResponse(bytes, kIcKvpExchange);
  if (!r.ok()) return r.status();
  if (r->body.size() < sizeof(KvpHeader)) {
    return absl::InvalidArgumentError("KVP response without a KVP header");
  }
  auto msg = std::make_unique<KvpMessage>();
  std::memset(msg.get(), 0, sizeof(KvpMessage));
  std::memcpy(msg.get(), r->body.data(),
              std::min(r->body.size(), sizeof(KvpMessage)));
  KvpResult result;
  result.op = static_cast<KvpOperation>(msg->header.operation);
  result.pool = static_cast<KvpPool>(msg->header.pool);
  result.status = r->header.status;
  if (msg->header.pool > static_cast<uint8_t>(KvpPool::kAutoInternal)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("KVP response names pool %d", msg->header.pool));
  }
  if (result.status != kHvSOk) return result;
  const KvpExchangeValue* v = nullptr;
  size_t needed = sizeof(KvpHeader);
  if (result.op == KvpOperation::kGet) {
    v = &msg->body.get_set;
    needed += sizeof(KvpExchangeValue);
  } else if (result.op == KvpOperation::kEnumerate) {
    v = &msg->body.enumerate.data;
    needed += 4 + sizeof(KvpExchangeValue);
  }
  if (v == nullptr) return result;  // SET / DELETE: status only
  if (r->body.size() < needed) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP response of %d bytes, %d needed", r->body.size(), needed));
  }
  if (v->key_size > kKvpMaxKeySize || v->value_size > kKvpMaxValueSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP response with key_size %d / value_size %d past the limits",
        v->key_size, v->value_size));
  }
  result.key = DecodeUtf16(std::span<const uint8_t>(v->key, v->key_size));
  result.value = DecodeValue(*v);
  return result;
}

void KvpExchange::ScanPool(KvpPool pool) {
  pools_[static_cast<int>(pool)].clear();
  KvpRequest r;
  r.op = KvpOperation::kEnumerate;
  r.pool = pool;
  r.index = 0;
  queue_.push_back(r);
}

absl::StatusOr<std::optional<std::vector<uint8_t>>> KvpExchange::NextMessage(
    const IcVersions& versions) {
  while (!outstanding_.has_value() && !queue_.empty()) {
    KvpRequest r = std::move(queue_.front());
    queue_.pop_front();
    absl::StatusOr<std::vector<uint8_t>> bytes = BuildKvpRequest(r, versions);
    if (!bytes.ok()) return bytes.status();
    outstanding_ = std::move(r);
    return std::optional<std::vector<uint8_t>>(*std::move(bytes));
  }
  return std::optional<std::vector<uint8_t>>();
}

absl::StatusOr<KvpResult> KvpExchange::OnResponse(
    std::span<const uint8_t> bytes) {
  if (!outstanding_.has_value()) {
    return absl::FailedPreconditionError("KVP response with no request");
  }
  absl::StatusOr<KvpResult> result = ParseKvpResponse(bytes);
  if (!result.ok()) {
    outstanding_.reset();
    return result;
  }
  const KvpRequest request = *std::move(outstanding_);
  outstanding_.reset();
  if (result->op != request.op || result->pool != request.pool) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVP response for operation %d pool %d answers operation %d pool %d",
        static_cast<int>(result->op), static_cast<int>(result->pool),
        static_cast<int>(request.op), static_cast<int>(request.pool)));
  }
  auto& pool = pools_[static_cast<int>(request.pool)];
  if (result->status == kHvSOk) {
    switch (request.op) {
      case KvpOperation::kEnumerate: {
        pool[result->key] = result->value;
        // Keep scanning until the guest says stop (bounded: a guest that
        // never does cannot keep the host busy forever).
        if (request.index + 1 < kMaxEnumerateIndex) {
          KvpRequest next = request;
          ++next.index;
          queue_.push_front(next);
        }
        break;
      }
      case KvpOperation::kGet:
        pool[result->key] = result->value;
        break;
      case KvpOperation::kSet:
        pool[request.key] = request.value;
        break;
      case KvpOperation::kDelete:
        pool.erase(request.key);
        break;
      default:
        break;
    }
  } else if (request.op == KvpOperation::kGet) {
    pool.erase(request.key);  // the guest no longer has it
  }
  return result;
}

}  // namespace vsp::ic
