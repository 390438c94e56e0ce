// Network adapters on the management side (issue 12), end to end through the
// real vmctl and vmms, in a network namespace of this test's own (a bridge
// br0 made here; nothing touches the host's interfaces). The worker is
// vmms/testing:fake_vmwp (no KVM needed), started in vmms's sandbox as in
// production; it checks that each adapter's descriptor is the TAP device the
// config names, with the flags it says, and fails the start otherwise.
//
// What it shows: adapters in the definition (generated and given MACs, kept
// across vmms restarts), vmctl create --nic / nic add|remove|list / show,
// changes refused while the VM runs; the TAP devices exist exactly while a
// worker runs (on the bridge or unattached, up, with the MTU and vmms's
// alias) and are gone after a stop, a guest crash, SIGKILL of the worker, a
// guest reboot (fresh ones for the fresh worker), and SIGKILL of vmms plus
// restart (a worker that survived keeps its devices; a leftover of a VM
// without a worker is removed; another vmms's device stays).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/private_network.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class NicTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::Status s = EnterPrivateNetworkNamespace();
    if (s.ok()) s = AddBridge("br0", "10.99.0.1/24");
    if (!s.ok()) skip_ = std::string(s.message());
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    vmms_ = std::make_unique<VmmsInstance>(
        dir_.path(),
        std::vector<std::string>{"--vmwp", Runfile("vmms/testing/fake_vmwp"),
                                 "--kvm-device", "/dev/null"});
    absl::Status started = vmms_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  void TearDown() override {
    if (vmms_ != nullptr) (void)vmms_->Terminate();
  }

  CommandResult Vmctl(const std::vector<std::string>& args) {
    absl::StatusOr<CommandResult> r = vmms_->Vmctl(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }
  // vmctl that must succeed.
  CommandResult Ok(const std::vector<std::string>& args) {
    CommandResult r = Vmctl(args);
    EXPECT_EQ(r.exit_code, 0) << "vmctl " << absl::StrJoin(args, " ") << ": "
                              << r.err << "\nvmms log:\n"
                              << vmms_->Log();
    return r;
  }
  nlohmann::json Show(const std::string& name) {
    CommandResult r = Vmctl({"--json", "show", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  nlohmann::json WaitForState(const std::string& name,
                              const std::string& state) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    nlohmann::json vm;
    while (absl::Now() < deadline) {
      vm = Show(name);
      if (vm.is_object() && vm.value("state", "") == state) return vm;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << name << " did not reach " << state << ": " << vm.dump();
    return vm;
  }
  void Create(const std::string& name, const std::string& mode,
              const std::vector<std::string>& nics) {
    std::vector<std::string> args = {
        "create",   name, "--kernel",  Runfile("guest/hello.elf"),
        "--memory", "16", "--cmdline", mode};
    for (const std::string& nic : nics) {
      args.push_back("--nic");
      args.push_back(nic);
    }
    Ok(args);
  }
  // The host interface names vmms gives the VM's adapters (from show).
  std::vector<std::string> HostInterfaces(const std::string& name) {
    std::vector<std::string> names;
    for (const nlohmann::json& nic :
         Show(name).value("nics", nlohmann::json::array()))
      names.push_back(nic.value("hostInterface", ""));
    return names;
  }
  static bool Exists(const std::string& ifname) {
    return !LinkDetails(ifname).is_null();
  }
  static pid_t WorkerPid(const nlohmann::json& vm) {
    return static_cast<pid_t>(std::stoll(vm.value("workerPid", "0")));
  }

  static inline std::string skip_;
  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
};

TEST_F(NicTest, AdaptersAreDefinedListedAndChangedOnlyWhileOff) {
  CommandResult created =
      Ok({"create", "web1", "--kernel", Runfile("guest/hello.elf"), "--memory",
          "16", "--cmdline", "serve", "--nic", "bridge=br0", "--nic",
          "tap,mac=02:00:00:00:00:42,mtu=9000"});
  EXPECT_THAT(created.out, HasSubstr("nic0: 02:68:76:"));
  EXPECT_THAT(created.out, HasSubstr(" bridge=br0 mtu=1500 host_interface=hv"));
  EXPECT_THAT(created.out,
              HasSubstr("nic1: 02:00:00:00:00:42 bridge=- mtu=9000"));
  nlohmann::json vm = Show("web1");
  const std::string uuid = vm["uuid"];
  std::string hex;
  for (char c : uuid) {
    if (c != '-' && hex.size() < 10) hex.push_back(c);
  }
  const std::string mac0 = vm["config"]["nics"][0]["mac"];
  EXPECT_THAT(mac0, StartsWith("02:68:76:"));
  EXPECT_EQ(vm["nics"][0]["hostInterface"], "hv" + hex + "n0");
  EXPECT_EQ(vm["nics"][1]["hostInterface"], "hv" + hex + "n1");
  EXPECT_FALSE(vm["nics"][0].value("present", false));

  CommandResult list = Ok({"nic", "list", "web1"});
  EXPECT_THAT(list.out, StartsWith("INDEX  MAC  "));
  EXPECT_THAT(list.out, HasSubstr("hv" + hex + "n0  no"));

  // Remove by index, add: the lowest free index; indices otherwise stay.
  Ok({"nic", "remove", "web1", "0"});
  CommandResult again = Vmctl({"nic", "remove", "web1", mac0});
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_THAT(again.err, HasSubstr("has no network adapter with MAC"));
  CommandResult added = Ok({"nic", "add", "web1", "bridge=br0,mtu=4000"});
  EXPECT_THAT(added.out, HasSubstr("nic0: 02:68:76:"));
  EXPECT_THAT(added.out, HasSubstr("mtu=4000"));
  EXPECT_THAT(added.out, HasSubstr("nic1: 02:00:00:00:00:42"));
  const std::string mac0_new = Show("web1")["config"]["nics"][0]["mac"];

  // Bad input names what is wrong, and changes nothing.
  CommandResult no_bridge = Vmctl({"nic", "add", "web1", "bridge=nosuchbr"});
  EXPECT_EQ(no_bridge.exit_code, 4);
  EXPECT_THAT(no_bridge.err, HasSubstr("bridge 'nosuchbr' does not exist"));
  CommandResult dup =
      Vmctl({"nic", "add", "web1", "tap,mac=02:00:00:00:00:42"});
  EXPECT_EQ(dup.exit_code, 4);
  EXPECT_THAT(dup.err, HasSubstr("'02:00:00:00:00:42' is already used by VM "
                                 "'web1' (adapter 1)"));
  CommandResult bad_mac =
      Vmctl({"create", "web2", "--kernel", Runfile("guest/hello.elf"),
             "--memory", "16", "--nic", "mac=02:00:00:00:00"});
  EXPECT_EQ(bad_mac.exit_code, 4);
  EXPECT_THAT(bad_mac.err, HasSubstr("config.nics[0].mac '02:00:00:00:00' is "
                                     "not a valid MAC address"));
  EXPECT_EQ(Vmctl({"show", "web2"}).exit_code, 2) << "nothing was created";
  CommandResult usage = Vmctl({"nic", "add", "web1", "colour=red"});
  EXPECT_EQ(usage.exit_code, 1);
  EXPECT_THAT(usage.err, HasSubstr("unknown key 'colour'"));
  EXPECT_EQ(Show("web1")["config"]["nics"].size(), 2u);

  // Running: the adapters are hardware.
  Ok({"start", "web1"});
  CommandResult running = Vmctl({"nic", "add", "web1", "tap"});
  EXPECT_EQ(running.exit_code, 3) << running.err;
  EXPECT_THAT(running.err, HasSubstr("VM 'web1' is running"));
  EXPECT_EQ(Vmctl({"nic", "remove", "web1", "1"}).exit_code, 3);
  Ok({"stop", "web1"});

  // Persisted: the same MACs after a vmms restart.
  ASSERT_TRUE(vmms_->Terminate().ok());
  ASSERT_TRUE(vmms_->Start().ok());
  nlohmann::json after = Show("web1");
  EXPECT_EQ(after["config"]["nics"][0]["mac"], mac0_new);
  EXPECT_EQ(after["config"]["nics"][1]["mac"], "02:00:00:00:00:42");
  EXPECT_EQ(after["config"]["nics"][0]["mtu"], 4000);
}

TEST_F(NicTest, TapDevicesExistExactlyWhileAWorkerRuns) {
  Create("web1", "serve", {"bridge=br0", "tap,mtu=9000"});
  const std::vector<std::string> taps = HostInterfaces("web1");
  ASSERT_EQ(taps.size(), 2u);
  const std::string uuid = Show("web1")["uuid"];
  Ok({"start", "web1"});
  nlohmann::json on_bridge = LinkDetails(taps[0]);
  ASSERT_FALSE(on_bridge.is_null()) << vmms_->Log();
  EXPECT_EQ(on_bridge["linkinfo"]["info_kind"], "tun");
  EXPECT_EQ(on_bridge["linkinfo"]["info_data"]["type"], "tap");
  EXPECT_EQ(on_bridge["linkinfo"]["info_data"]["vnet_hdr"], true);
  EXPECT_EQ(on_bridge["linkinfo"]["info_data"]["persist"], false);
  EXPECT_EQ(on_bridge.value("master", ""), "br0");
  EXPECT_EQ(on_bridge["mtu"], 1500);
  EXPECT_THAT(on_bridge["flags"].dump(), HasSubstr("\"UP\""));
  EXPECT_EQ(on_bridge.value("ifalias", ""), "hvstack vm " + uuid + " nic 0");
  nlohmann::json unattached = LinkDetails(taps[1]);
  ASSERT_FALSE(unattached.is_null());
  EXPECT_FALSE(unattached.contains("master"));
  EXPECT_EQ(unattached["mtu"], 9000);
  EXPECT_THAT(unattached["flags"].dump(), HasSubstr("\"UP\""));
  EXPECT_TRUE(Show("web1")["nics"][0].value("present", false));
  EXPECT_THAT(Ok({"show", "web1"}).out,
              HasSubstr("host_interface=" + taps[0] + " (present)"));

  // Stop.
  Ok({"stop", "web1"});
  EXPECT_FALSE(Exists(taps[0]));
  EXPECT_FALSE(Exists(taps[1]));
  EXPECT_FALSE(Show("web1")["nics"][0].value("present", false));

  // A guest crash.
  Ok({"update", "web1", "--cmdline", "guest-crash"});
  (void)Vmctl({"start", "web1"});
  WaitForState("web1", "VM_STATE_CRASHED");
  EXPECT_FALSE(Exists(taps[0]));
  EXPECT_FALSE(Exists(taps[1]));

  // SIGKILL of the worker.
  Ok({"update", "web1", "--cmdline", "serve"});
  Ok({"start", "web1"});
  ASSERT_TRUE(Exists(taps[0]));
  const pid_t pid = WorkerPid(Show("web1"));
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  nlohmann::json crashed = WaitForState("web1", "VM_STATE_CRASHED");
  EXPECT_THAT(crashed.value("stateReason", ""), HasSubstr("SIGKILL"));
  EXPECT_FALSE(Exists(taps[0]));
  EXPECT_FALSE(Exists(taps[1]));

  // Two guest reboots: each fresh worker gets fresh devices of the same
  // names, and the VM stays Running on the third.
  Ok({"update", "web1", "--cmdline", "reboot"});
  Ok({"start", "web1"});
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Show("web1").value("rebootCount", 0) < 2 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(20));
  WaitForState("web1", "VM_STATE_RUNNING");
  EXPECT_EQ(Show("web1").value("rebootCount", 0), 2) << vmms_->Log();
  nlohmann::json rebooted = LinkDetails(taps[0]);
  ASSERT_FALSE(rebooted.is_null()) << vmms_->Log();
  EXPECT_EQ(rebooted.value("master", ""), "br0");
  Ok({"stop", "web1"});
  EXPECT_FALSE(Exists(taps[0]));

  // A bridge that is gone by the time the VM starts: the start fails naming
  // it, the VM stays Off and nothing is left behind.
  ASSERT_TRUE(AddBridge("br9").ok());
  Ok({"nic", "add", "web1", "bridge=br9"});
  ASSERT_TRUE(Ip("link del br9").ok());
  CommandResult gone = Vmctl({"start", "web1"});
  EXPECT_EQ(gone.exit_code, 3) << gone.err;
  EXPECT_THAT(gone.err, HasSubstr("network adapter 2"));
  EXPECT_THAT(gone.err, HasSubstr("bridge 'br9' does not exist"));
  EXPECT_EQ(Show("web1")["state"], "VM_STATE_OFF");
  for (const std::string& tap : HostInterfaces("web1"))
    EXPECT_FALSE(Exists(tap)) << tap;
}

TEST_F(NicTest, VmmsKilledAndRestartedLeavesNoDeviceOfAVmWithoutWorker) {
  Create("keep", "serve", {"bridge=br0"});
  Create("dies", "serve", {"bridge=br0"});
  Create("off", "serve", {"bridge=br0", "tap"});
  const std::string keep_tap = HostInterfaces("keep")[0];
  const std::string dies_tap = HostInterfaces("dies")[0];
  const std::vector<std::string> off_taps = HostInterfaces("off");
  const std::string off_uuid = Show("off")["uuid"];
  Ok({"start", "keep"});
  Ok({"start", "dies"});
  const pid_t dies_pid = WorkerPid(Show("dies"));

  vmms_->Kill();
  (void)vmms_->Terminate();  // Reaps the killed vmms.
  // The workers outlive vmms, and so do their devices.
  EXPECT_TRUE(Exists(keep_tap));
  ASSERT_TRUE(Exists(dies_tap));
  // One worker dies while vmms is down: the kernel removes its device.
  ASSERT_EQ(::kill(dies_pid, SIGKILL), 0);
  for (int i = 0; i < 100 && Exists(dies_tap); ++i)
    absl::SleepFor(absl::Milliseconds(20));
  // A leftover persistent device of a VM that has no worker (as a crash
  // between steps of an older vmms could leave), and another vmms's device
  // (a VM this one does not know).
  ASSERT_TRUE(Ip("tuntap add mode tap name " + off_taps[1]).ok());
  ASSERT_TRUE(Ip({"link", "set", off_taps[1], "alias",
                  "hvstack vm " + off_uuid + " nic 1"})
                  .ok());
  const std::string foreign_uuid = "ffffffff-ffff-4fff-8fff-ffffffffffff";
  ASSERT_TRUE(Ip("tuntap add mode tap name hvffffffffffn0").ok());
  ASSERT_TRUE(Ip({"link", "set", "hvffffffffffn0", "alias",
                  "hvstack vm " + foreign_uuid + " nic 0"})
                  .ok());
  ASSERT_TRUE(Exists(off_taps[1]));

  ASSERT_TRUE(vmms_->Start().ok());
  EXPECT_EQ(Show("keep")["state"], "VM_STATE_RUNNING");
  nlohmann::json kept = LinkDetails(keep_tap);
  ASSERT_FALSE(kept.is_null());
  EXPECT_EQ(kept.value("master", ""), "br0");
  nlohmann::json dead = Show("dies");
  EXPECT_EQ(dead["state"], "VM_STATE_CRASHED");
  EXPECT_FALSE(Exists(dies_tap));
  EXPECT_FALSE(Exists(off_taps[1])) << "reconcile removes the leftover";
  EXPECT_THAT(vmms_->Log(),
              HasSubstr("removed stale host interface " + off_taps[1]));
  EXPECT_TRUE(Exists("hvffffffffffn0")) << "another vmms's device stays";

  // The reattached worker's devices go when it ends.
  Ok({"stop", "keep"});
  EXPECT_FALSE(Exists(keep_tap));
  // The VM whose leftover was swept starts normally.
  Ok({"start", "off"});
  EXPECT_TRUE(Exists(off_taps[0]));
  EXPECT_TRUE(Exists(off_taps[1]));
  Ok({"stop", "off"});
  EXPECT_TRUE(Ip("link del hvffffffffffn0").ok());
}

// GetVmStats per adapter, from the worker's counters (fake_vmwp: one
// 60-byte broadcast out at start, every frame it reads from its TAP device
// counted in): a UDP broadcast on br0 reaches the VM's TAP port.
TEST_F(NicTest, StatsCountEachAdaptersFramesBothWays) {
  Create("web1", "serve", {"bridge=br0"});
  Ok({"start", "web1"});
  const std::string tap = HostInterfaces("web1")[0];
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  int on = 1;
  ASSERT_EQ(setsockopt(sock, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)), 0);
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = inet_addr("10.99.0.255");
  nlohmann::json nic;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    (void)sendto(sock, "hello", 5, 0, reinterpret_cast<sockaddr*>(&to),
                 sizeof(to));
    CommandResult r = Ok({"--json", "stats", "web1"});
    nlohmann::json stats = nlohmann::json::parse(r.out, nullptr, false);
    if (stats.contains("nics") && !stats["nics"].empty()) {
      nic = stats["nics"][0];
      if (std::stoull(nic.value("toGuestPackets", "0")) >= 1) break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ::close(sock);
  ASSERT_TRUE(nic.is_object()) << "no adapter in the stats";
  EXPECT_EQ(nic.value("index", 0), 0);
  EXPECT_EQ(nic.value("mac", ""), Show("web1")["config"]["nics"][0]["mac"]);
  EXPECT_EQ(nic.value("hostInterface", ""), tap);
  EXPECT_EQ(nic.value("fromGuestPackets", ""), "1");
  EXPECT_EQ(nic.value("fromGuestBytes", ""), "60");
  EXPECT_GE(std::stoull(nic.value("toGuestPackets", "0")), 1u);
  // 5 bytes of UDP payload in a broadcast frame: 14 + 20 + 8 + 5.
  EXPECT_GE(std::stoull(nic.value("toGuestBytes", "0")), 47u);
  EXPECT_TRUE(nic.value("linkUp", false));
  CommandResult text = Ok({"stats", "web1"});
  EXPECT_THAT(text.out, HasSubstr("nic0: " + nic.value("mac", "") + " " + tap +
                                  " from_guest 1 packets 60 bytes 0 drops"));
  Ok({"stop", "web1"});
}

}  // namespace
}  // namespace hvtest
