// Issue 12 must-show: Linux's own hv_netvsc, unchanged, on hvstack's network
// VSP. One boot of the Linux test kernel with a network adapter on a bridge
// this test makes inside a network namespace of its own (vmms and dnsmasq run
// in it too; nothing touches the host's network):
//   - the kernel configures eth0 from its command line, `ip=dhcp`, and gets
//     its lease from a dnsmasq the test runs on the bridge (a reservation
//     for the adapter's MAC);
//   - pings both ways: the guest's busybox pings the bridge's address, the
//     test pings the guest's (answered in the guest kernel);
//   - `netconsole=` sends the guest's kernel log over UDP to the bridge's
//     address, where the test receives it;
//   - `vmctl stats` counts the adapter's frames both ways and they move with
//     the pings; after the stop the TAP device is gone.
// The kernel boots `quiet`: in kvmbox every console byte is a VM exit, so
// the guest prints only the lines asserted on.
// On hosts without /dev/kvm it re-runs inside kvmbox (tests/kvmbox).
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "tests/harness/private_network.h"
#include "tests/harness/process.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr char kBridgeCidr[] = "10.98.0.1/24";
constexpr char kHostAddress[] = "10.98.0.1";
constexpr char kGuestAddress[] = "10.98.0.50";
constexpr char kGuestMac[] = "02:00:00:0a:62:32";
constexpr int kNetconsolePort = 6666;

// Kernel log lines netconsole sends to the host's UDP port, as received.
class NetconsoleReceiver {
 public:
  absl::Status Start() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return absl::InternalError("socket");
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(kNetconsolePort);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return absl::InternalError(
          absl::StrCat("bind UDP ", kNetconsolePort, ": ", strerror(errno)));
    }
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }
  ~NetconsoleReceiver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  std::string Text() {
    absl::MutexLock lock(&mu_);
    return text_;
  }
  int Datagrams() {
    absl::MutexLock lock(&mu_);
    return datagrams_;
  }

 private:
  void Run() {
    char buf[2048];
    while (!stop_) {
      pollfd p = {fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      absl::MutexLock lock(&mu_);
      text_.append(buf, static_cast<size_t>(n));
      ++datagrams_;
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  int datagrams_ ABSL_GUARDED_BY(mu_) = 0;
};

uint16_t InternetChecksum(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < size; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (size % 2) sum += p[size - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

struct PingResult {
  int sent = 0;
  int received = 0;
  std::vector<absl::Duration> rtts;
};

// ICMP echo requests to `address` (a raw socket: the test runs as root),
// one per `interval`, each waited for up to `wait`.
PingResult Ping(const std::string& address, int count, absl::Duration wait) {
  PingResult result;
  int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) return result;
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = inet_addr(address.c_str());
  const uint16_t id = static_cast<uint16_t>(::getpid());
  for (int seq = 1; seq <= count; ++seq) {
    icmphdr echo = {};
    echo.type = ICMP_ECHO;
    echo.un.echo.id = htons(id);
    echo.un.echo.sequence = htons(static_cast<uint16_t>(seq));
    char packet[sizeof(icmphdr) + 32];
    std::memcpy(packet, &echo, sizeof(echo));
    std::memset(packet + sizeof(echo), 'h', 32);
    reinterpret_cast<icmphdr*>(packet)->checksum =
        InternetChecksum(packet, sizeof(packet));
    const absl::Time sent = absl::Now();
    if (::sendto(fd, packet, sizeof(packet), 0,
                 reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
      continue;
    }
    ++result.sent;
    const absl::Time deadline = sent + wait;
    while (absl::Now() < deadline) {
      pollfd p = {fd, POLLIN, 0};
      const int ms = static_cast<int>(
          absl::ToInt64Milliseconds(deadline - absl::Now()) + 1);
      if (::poll(&p, 1, ms) <= 0) break;
      char reply[1500];
      sockaddr_in from = {};
      socklen_t from_len = sizeof(from);
      const ssize_t n =
          ::recvfrom(fd, reply, sizeof(reply), 0,
                     reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < static_cast<ssize_t>(sizeof(iphdr) + sizeof(icmphdr))) continue;
      const auto* ip = reinterpret_cast<const iphdr*>(reply);
      const auto* icmp = reinterpret_cast<const icmphdr*>(reply + ip->ihl * 4);
      if (from.sin_addr.s_addr != to.sin_addr.s_addr ||
          icmp->type != ICMP_ECHOREPLY || ntohs(icmp->un.echo.id) != id ||
          ntohs(icmp->un.echo.sequence) != seq) {
        continue;
      }
      ++result.received;
      result.rtts.push_back(absl::Now() - sent);
      break;
    }
  }
  ::close(fd);
  return result;
}

double Since(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

uint64_t Counter(const nlohmann::json& nic, const char* field) {
  // proto3 JSON writes uint64 as a string.
  const nlohmann::json& v = nic.contains(field) ? nic[field] : nlohmann::json();
  if (v.is_string()) return std::stoull(v.get<std::string>());
  if (v.is_number()) return v.get<uint64_t>();
  return 0;
}

// `vmctl --json stats NAME`'s first adapter; null if there is none.
nlohmann::json NicStats(LinuxVm& vm) {
  absl::StatusOr<CommandResult> stats =
      vm.Vmctl({"--json", "stats", vm.name()});
  if (!stats.ok() || stats->exit_code != 0) return nlohmann::json();
  nlohmann::json s = nlohmann::json::parse(stats->out, nullptr, false);
  if (!s.is_object() || !s.contains("nics") || s["nics"].empty()) {
    return nlohmann::json();
  }
  return s["nics"][0];
}

std::string DescribeNic(const nlohmann::json& nic) {
  std::string drops;
  if (nic.contains("dropsByReason")) {
    for (const auto& [reason, count] : nic["dropsByReason"].items()) {
      absl::StrAppend(
          &drops, " ", reason, "=",
          count.is_string() ? count.get<std::string>() : count.dump());
    }
  }
  return absl::StrCat(
      "from guest ", Counter(nic, "fromGuestPackets"), " packets/",
      Counter(nic, "fromGuestBytes"), " B (", Counter(nic, "fromGuestDrops"),
      " drops), to guest ", Counter(nic, "toGuestPackets"), " packets/",
      Counter(nic, "toGuestBytes"), " B (", Counter(nic, "toGuestDrops"),
      " drops), protocol errors ", Counter(nic, "protocolErrors"),
      drops.empty() ? "" : ", drops by reason:", drops);
}

// The kernel boots `quiet` (every console byte is a VM exit; minutes in
// kvmbox) and configures eth0 itself from `ip=dhcp`; netconsole sends what
// the console would print. Then /init prints only the lines asserted on:
// hv_netvsc's and IP-Config's from the kernel log, the guest's own ping of
// the host, and a line it logs through /dev/kmsg at a level the quiet console
// passes (netconsole's proof). It then sleeps: Linux answers the host's pings
// in the kernel.
absl::Status MakeTestInitramfs(const std::string& path) {
  return MakeInitramfs(
      path, "unused",
      {.run = {
           "dmesg | grep -E 'netvsc|IP-Config|device=|netconsole: |netpoll: "
           ".*(fail|abort|error|timeout)' | cut -c1-200",
           absl::StrCat("ping -c 3 -W 10 ", kHostAddress,
                        " | grep -E 'transmitted|round-trip' | "
                        "sed 's/^/GUEST-PING: /'"),
           "echo '<3>hvstack-netconsole: guest kernel log over UDP' > "
           "/dev/kmsg",
           "echo NET-TEST-READY",
           "while :; do sleep 3600; done",
       }});
}

// Where main() puts the initramfs before the test enters kvmbox
// (make_initramfs.sh forks once per busybox applet: minutes under kvmbox's
// emulated CPU); the same path inside, through the shared filesystem.
std::string InitrdPath() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                      "/linux_network_test.initrd");
}

TEST(LinuxNetworkTest, DhcpLeasePingAndNetconsoleOverNetvsc) {
  const absl::Time test_start = absl::Now();
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/kvm";
  absl::Status private_net = EnterPrivateNetworkNamespace();
  if (!private_net.ok()) GTEST_SKIP() << private_net.message();
  ASSERT_TRUE(AddBridge("br0", kBridgeCidr).ok());

  TempDir dir;
  // dnsmasq: DHCP only (no DNS), on br0, with a reservation for the guest.
  const std::string dnsmasq_log = dir.path() + "/dnsmasq.log";
  absl::StatusOr<ChildProcess> dnsmasq = ChildProcess::Start(
      {"/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
       "--no-resolv", "--no-hosts", "--port=0", "--interface=br0",
       "--bind-interfaces", "--except-interface=lo", "--user=root",
       "--dhcp-authoritative", "--no-ping", "--log-dhcp",
       absl::StrCat("--log-facility=", dnsmasq_log),
       absl::StrCat("--dhcp-leasefile=", dir.path(), "/leases"),
       absl::StrCat("--pid-file=", dir.path(), "/dnsmasq.pid"),
       "--dhcp-range=10.98.0.100,10.98.0.150,255.255.255.0,10m",
       absl::StrCat("--dhcp-host=", kGuestMac, ",", kGuestAddress)},
      dir.path() + "/dnsmasq.stderr");
  ASSERT_TRUE(dnsmasq.ok()) << dnsmasq.status();
  NetconsoleReceiver netconsole;
  ASSERT_TRUE(netconsole.Start().ok());
  std::printf("[%6.1f s] bridge, dnsmasq and UDP receiver up\n",
              Since(test_start));

  const std::string initrd = InitrdPath();
  if (access(initrd.c_str(), R_OK) != 0) {
    ASSERT_TRUE(MakeTestInitramfs(initrd).ok());
  }
  std::printf("[%6.1f s] initramfs ready\n", Since(test_start));
  absl::StatusOr<std::unique_ptr<LinuxVm>> vm = LinuxVm::Boot(
      {.name = "net1",
       .initrd = initrd,
       .extra_cmdline =
           absl::StrCat("quiet ip=dhcp netconsole=6665@", kGuestAddress,
                        "/eth0,", kNetconsolePort, "@", kHostAddress, "/"),
       .create_args = {"--nic", absl::StrCat("bridge=br0,mac=", kGuestMac)}});
  ASSERT_TRUE(vm.ok()) << vm.status();

  std::printf("[%6.1f s] VM started\n", Since(test_start));
  // Linux's netvsc binds the adapter (its MAC from the host), then
  // IP-Config asks dnsmasq; /init prints what the kernel logged about it.
  absl::StatusOr<absl::Duration> lease = (*vm)->WaitForConsole(
      "IP-Config: Complete", kvmbox::Scaled(absl::Minutes(5)));
  ASSERT_TRUE(lease.ok()) << lease.status() << "\ndnsmasq:\n"
                          << ReadFileOrEmpty(dnsmasq_log) << "\nservice log:\n"
                          << (*vm)->ServiceLog();
  (*vm)->Mark("DHCP lease (printed by /init)", *lease);
  absl::StatusOr<absl::Duration> ready =
      (*vm)->WaitForConsole("NET-TEST-READY", kvmbox::Scaled(absl::Minutes(2)));
  ASSERT_TRUE(ready.ok()) << ready.status();
  (*vm)->Mark("/init done (guest pinged the host)", *ready);
  std::printf("[%6.1f s] guest ready\n", Since(test_start));
  const std::string console = (*vm)->Console();
  // What the guest's kernel said about its network, as /init printed it.
  std::printf("guest:\n%s\n",
              (*vm)
                  ->ConsoleLines({"netvsc", "IP-Config", "device=", "netpoll",
                                  "netconsole", "eth0", "GUEST-PING"})
                  .c_str());
  EXPECT_THAT(console, ContainsRegex(absl::StrCat(
                           "IP-Config: Got DHCP answer from ", kHostAddress,
                           ", my address is ", kGuestAddress, "[^0-9]")));
  EXPECT_THAT(console, HasSubstr(absl::StrCat("hwaddr=", kGuestMac)));
  EXPECT_THAT(console, HasSubstr(absl::StrCat("ipaddr=", kGuestAddress)));
  EXPECT_THAT(
      ReadFileOrEmpty(dnsmasq_log),
      HasSubstr(absl::StrCat("DHCPACK(br0) ", kGuestAddress, " ", kGuestMac)));
  // The guest's ping of the host (busybox ping: user space in the guest).
  EXPECT_THAT(console, HasSubstr("3 packets transmitted, 3 packets received"));

  std::printf("[%6.1f s] asking for stats\n", Since(test_start));
  const nlohmann::json before = NicStats(**vm);
  ASSERT_FALSE(before.is_null());
  std::printf("adapter before the host's pings: %s\n",
              DescribeNic(before).c_str());

  // Pings from the namespace, answered by the guest's kernel.
  PingResult ping = Ping(kGuestAddress, 5, kvmbox::Scaled(absl::Seconds(2)));
  (*vm)->Mark(absl::StrCat("host pinged the guest: ", ping.received, "/",
                           ping.sent, " replies"),
              (*vm)->Elapsed());
  EXPECT_EQ(ping.received, ping.sent);
  EXPECT_EQ(ping.sent, 5);
  std::vector<std::string> rtts;
  for (absl::Duration rtt : ping.rtts) {
    rtts.push_back(absl::FormatDuration(rtt));
  }
  std::printf("host ping %s: %d/%d replies, rtt %s\n", kGuestAddress,
              ping.received, ping.sent, absl::StrJoin(rtts, " ").c_str());

  // The adapter's counters moved with the pings (each echo and reply is one
  // frame; ARP may add a few).
  const nlohmann::json after = NicStats(**vm);
  ASSERT_FALSE(after.is_null());
  std::printf("adapter after the host's pings:  %s\n",
              DescribeNic(after).c_str());
  EXPECT_GE(Counter(after, "toGuestPackets"),
            Counter(before, "toGuestPackets") + ping.sent);
  EXPECT_GE(Counter(after, "fromGuestPackets"),
            Counter(before, "fromGuestPackets") + ping.received);
  EXPECT_GT(Counter(after, "toGuestBytes"), Counter(before, "toGuestBytes"));
  EXPECT_GT(Counter(after, "fromGuestBytes"),
            Counter(before, "fromGuestBytes"));
  EXPECT_EQ(Counter(after, "protocolErrors"), 0u);
  EXPECT_TRUE(after.value("guestReady", false));
  EXPECT_TRUE(after.value("linkUp", false));
  absl::StatusOr<CommandResult> stats_text =
      (*vm)->Vmctl({"stats", (*vm)->name()});
  ASSERT_TRUE(stats_text.ok());
  std::printf("vmctl stats (exit %d):\n%s%s", stats_text->exit_code,
              stats_text->out.c_str(), stats_text->err.c_str());

  // netconsole: the guest's kernel log reaches the host over UDP.
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(30));
  while (netconsole.Text().find("hvstack-netconsole") == std::string::npos &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  const std::string received = netconsole.Text();
  EXPECT_THAT(received,
              HasSubstr("hvstack-netconsole: guest kernel log over UDP"))
      << "netconsole datagrams: " << netconsole.Datagrams() << "\n"
      << received;
  std::printf("netconsole: %d datagrams, %zu bytes:\n%s\n",
              netconsole.Datagrams(), received.size(), received.c_str());

  nlohmann::json shown = (*vm)->Show();
  ASSERT_TRUE(shown.contains("nics")) << shown.dump();
  const std::string tap = shown["nics"][0].value("hostInterface", "");
  EXPECT_FALSE(LinkDetails(tap).is_null());
  std::printf("[%6.1f s] stopping the VM\n", Since(test_start));
  absl::StatusOr<CommandResult> stop = (*vm)->Vmctl({"stop", "net1"});
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ(stop->exit_code, 0) << stop->err;
  const absl::Time gone_by = absl::Now() + kvmbox::Scaled(absl::Seconds(10));
  while (!LinkDetails(tap).is_null() && absl::Now() < gone_by) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(LinkDetails(tap).is_null())
      << tap << ": the TAP device should go with the worker";
  std::printf("%s", (*vm)->Timeline().c_str());
  std::printf("[%6.1f s] VM stopped, TAP device gone\n", Since(test_start));
}

}  // namespace
}  // namespace hvtest

// kvmbox's gtest main, after making the initramfs here on the host.
int main(int argc, char** argv) {
  const char* mode = std::getenv("HVSTACK_KVMBOX");
  const bool never = mode != nullptr && std::string(mode) == "never";
  if (!kvmbox::InsideKvmbox() &&
      (access("/dev/kvm", R_OK | W_OK) == 0 || !never)) {
    const std::string initrd = hvtest::InitrdPath();
    if (absl::Status s = hvtest::MakeTestInitramfs(initrd); !s.ok()) {
      std::fprintf(stderr, "initramfs: %s\n", std::string(s.message()).c_str());
    }
  }
  kvmbox::RunInKvmboxIfNeeded(argc, argv, kvmbox::InSuite::kRun);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
