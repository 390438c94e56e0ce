#include "vmms/nic_config.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "vmms/validation.h"

namespace vmms {
namespace {

constexpr absl::string_view kAliasPrefix = "hvstack vm ";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<MacAddress> ParseMac(absl::string_view text,
                                    absl::string_view field) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " ", Quoted(text), " is not a valid MAC address: ", why,
        " (write it as xx:xx:xx:xx:xx:xx in hex)"));
  };
  // 6 pairs of hex digits and 5 colons.
  if (text.size() != 17) return invalid("wrong length");
  MacAddress mac{};
  for (size_t i = 0; i < 6; ++i) {
    const int hi = HexValue(text[3 * i]);
    const int lo = HexValue(text[3 * i + 1]);
    if (hi < 0 || lo < 0) return invalid("not a hex digit");
    if (i < 5 && text[3 * i + 2] != ':')
      return invalid("octets are not ':'-separated");
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return mac;
}

std::string FormatMac(const MacAddress& mac) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
                         mac[2], mac[3], mac[4], mac[5]);
}

MacAddress GenerateMac() {
  MacAddress mac = kGeneratedMacPrefix;
  size_t done = 3;
  while (done < mac.size()) {
    ssize_t n = ::getrandom(mac.data() + done, mac.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    // Only a kernel without getrandom or a bad buffer fails; neither can be
    // handled here.
    if (n < 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return mac;
}

std::string HostInterfaceName(absl::string_view vm_uuid, uint32_t index) {
  std::string hex;
  for (char c : vm_uuid) {
    if (hex.size() == 10) break;
    if (absl::ascii_isxdigit(c)) hex.push_back(absl::ascii_tolower(c));
  }
  return absl::StrCat("hv", hex, "n", index);
}

std::string HostInterfaceAlias(absl::string_view vm_uuid, uint32_t index) {
  return absl::StrCat(kAliasPrefix, vm_uuid, " nic ", index);
}

bool ParseHostInterfaceAlias(absl::string_view alias, std::string* vm_uuid,
                             uint32_t* index) {
  if (!absl::ConsumePrefix(&alias, kAliasPrefix)) return false;
  std::vector<absl::string_view> parts = absl::StrSplit(alias, ' ');
  if (parts.size() != 3 || parts[1] != "nic" || parts[0].size() != 36)
    return false;
  uint32_t parsed = 0;
  if (!absl::SimpleAtoi(parts[2], &parsed) || parsed >= kMaxNics) return false;
  *vm_uuid = std::string(parts[0]);
  *index = parsed;
  return true;
}

absl::Status ValidateInterfaceName(absl::string_view name,
                                   absl::string_view field) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " ", Quoted(name), " is not a valid interface name: ", why));
  };
  if (name.empty()) return invalid("empty");
  if (name.size() > 15) return invalid("longer than 15 characters");
  if (name == "." || name == "..") return invalid("'.' and '..' are reserved");
  for (char c : name) {
    if (c == '/' || c == ':' || absl::ascii_isspace(c) || c == '\0')
      return invalid("'/', ':', NUL and whitespace are not allowed");
  }
  return absl::OkStatus();
}

absl::StatusOr<hvstack::v1::NicConfig> NormalizeNic(
    const hvstack::v1::NicConfig& nic, absl::string_view field) {
  hvstack::v1::NicConfig out = nic;
  if (!nic.mac().empty()) {
    const std::string mac_field = absl::StrCat(field, ".mac");
    absl::StatusOr<MacAddress> mac = ParseMac(nic.mac(), mac_field);
    if (!mac.ok()) return mac.status();
    if ((*mac)[0] & 0x01) {
      return absl::InvalidArgumentError(absl::StrCat(
          mac_field, " ", Quoted(nic.mac()),
          " is a multicast address (the first octet is odd): an adapter "
          "needs a unicast MAC, e.g. 02:xx:xx:xx:xx:xx"));
    }
    if (*mac == MacAddress{}) {
      return absl::InvalidArgumentError(
          absl::StrCat(mac_field, " ", Quoted(nic.mac()),
                       " is all zeros: give a unicast MAC, or none for one "
                       "vmms generates"));
    }
    out.set_mac(FormatMac(*mac));
  }
  if (!nic.bridge().empty()) {
    if (absl::Status s =
            ValidateInterfaceName(nic.bridge(), absl::StrCat(field, ".bridge"));
        !s.ok()) {
      return s;
    }
  }
  if (nic.mtu() != 0 && (nic.mtu() < kMinNicMtu || nic.mtu() > kMaxNicMtu)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".mtu ", nic.mtu(), " is out of range: give ", kMinNicMtu, "..",
        kMaxNicMtu, " bytes, or 0 for ", kDefaultNicMtu));
  }
  if (out.mtu() == 0) out.set_mtu(kDefaultNicMtu);
  out.set_index(0);
  return out;
}

absl::Status NormalizeNics(hvstack::v1::VmConfig& config) {
  if (static_cast<uint32_t>(config.nics_size()) > kMaxNics) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.nics has ", config.nics_size(),
                     " adapters; a VM has at most ", kMaxNics));
  }
  for (int i = 0; i < config.nics_size(); ++i) {
    const std::string field = absl::StrCat("config.nics[", i, "]");
    absl::StatusOr<hvstack::v1::NicConfig> nic =
        NormalizeNic(config.nics(i), field);
    if (!nic.ok()) return nic.status();
    nic->set_index(static_cast<uint32_t>(i));
    for (int j = 0; j < i; ++j) {
      if (!nic->mac().empty() && config.nics(j).mac() == nic->mac()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".mac ", Quoted(nic->mac()),
                         " is a duplicate: config.nics[", j, "] has it too"));
      }
    }
    *config.mutable_nics(i) = *std::move(nic);
  }
  return absl::OkStatus();
}

hvstack::v1::NicStatus DescribeNic(absl::string_view vm_uuid,
                                   const hvstack::v1::NicConfig& nic) {
  hvstack::v1::NicStatus status;
  status.set_index(nic.index());
  status.set_mac(nic.mac());
  status.set_bridge(nic.bridge());
  status.set_mtu(nic.mtu());
  status.set_host_interface(HostInterfaceName(vm_uuid, nic.index()));
  return status;
}

}  // namespace vmms
