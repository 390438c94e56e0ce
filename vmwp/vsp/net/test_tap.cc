#include "vmwp/vsp/net/test_tap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_bridge.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vsp::net::testing {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::ErrnoToStatus(errno, what);
}

absl::Status Up(int s, const std::string& name) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return Errno("SIOCGIFFLAGS " + name);
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) return Errno("SIOCSIFFLAGS " + name);
  return absl::OkStatus();
}

}  // namespace

std::string EnterNewNetworkNamespace() {
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::StrCat("cannot create a network namespace (", strerror(errno),
                        "): needs CAP_NET_ADMIN");
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "/dev/net/tun is missing (Debian's kernel: the tun module)";
  }
  base::ScopedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!Up(s.get(), "lo").ok()) return "cannot bring up lo in the namespace";
  return "";
}

absl::StatusOr<TestTap> CreateTap(const std::string& name, bool vnet_header,
                                  uint32_t mtu, uint32_t txqueuelen) {
  TestTap t;
  t.name = name;
  t.fd.reset(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!t.fd.valid()) return Errno("open /dev/net/tun");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_header ? IFF_VNET_HDR : 0);
  if (::ioctl(t.fd.get(), TUNSETIFF, &ifr) != 0) return Errno("TUNSETIFF");
  if (vnet_header && ::ioctl(t.fd.get(), TUNSETOFFLOAD, 0) != 0)
    return Errno("TUNSETOFFLOAD");
  base::ScopedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (::ioctl(s.get(), SIOCSIFMTU, &ifr) != 0) return Errno("SIOCSIFMTU");
  if (txqueuelen != 0) {
    ifr.ifr_qlen = static_cast<int>(txqueuelen);
    if (::ioctl(s.get(), SIOCSIFTXQLEN, &ifr) != 0)
      return Errno("SIOCSIFTXQLEN");
  }
  if (absl::Status st = Up(s.get(), name); !st.ok()) return st;
  t.ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
  t.wire.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        htons(ETH_P_ALL)));
  if (!t.wire.valid()) return Errno("socket(AF_PACKET)");
  // Room for bursts the test reads later.
  const int buffer = 16 << 20;
  (void)::setsockopt(t.wire.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer,
                     sizeof(buffer));
  (void)::setsockopt(t.wire.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buffer,
                     sizeof(buffer));
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = t.ifindex;
  if (::bind(t.wire.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)) != 0)
    return Errno("bind(AF_PACKET)");
  return t;
}

absl::Status CreateBridge(const std::string& name) {
  base::ScopedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (::ioctl(s.get(), SIOCBRADDBR, name.c_str()) != 0)
    return Errno("SIOCBRADDBR " + name);
  return Up(s.get(), name);
}

absl::Status AddToBridge(const std::string& bridge, const std::string& ifname) {
  base::ScopedFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, bridge.c_str(), IFNAMSIZ - 1);
  ifr.ifr_ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
  if (::ioctl(s.get(), SIOCBRADDIF, &ifr) != 0)
    return Errno("SIOCBRADDIF " + ifname);
  return absl::OkStatus();
}

std::optional<std::vector<uint8_t>> WireReceive(TestTap& t, uint16_t ethertype,
                                                absl::Duration timeout) {
  std::vector<uint8_t> buf(65536);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    sockaddr_ll from{};
    socklen_t len = sizeof(from);
    const ssize_t n = ::recvfrom(t.wire.get(), buf.data(), buf.size(), 0,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      // Wait for the next frame without spinning (tests run inside an
      // emulated VM too).
      pollfd p = {t.wire.get(), POLLIN, 0};
      const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left > 0) (void)::poll(&p, 1, static_cast<int>(left) + 1);
      continue;
    }
    if (from.sll_pkttype == PACKET_OUTGOING || n < 14) continue;
    if (((buf[12] << 8) | buf[13]) != ethertype) continue;
    buf.resize(n);
    return buf;
  }
  return std::nullopt;
}

absl::Status WireSend(TestTap& t, std::span<const uint8_t> frame) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = t.ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, frame.data(), 6);
  for (int tries = 0; tries < 1000; ++tries) {
    const ssize_t n = ::sendto(t.wire.get(), frame.data(), frame.size(), 0,
                               reinterpret_cast<sockaddr*>(&to), sizeof(to));
    if (n == static_cast<ssize_t>(frame.size())) return absl::OkStatus();
    if (n < 0 && errno != EAGAIN && errno != ENOBUFS) return Errno("sendto");
    ::usleep(500);
  }
  return absl::UnavailableError("the TAP interface's queue stays full");
}

}  // namespace vsp::net::testing
