// TAP devices and bridges for real, in a network namespace of the test's own
// (nothing touches the host's interfaces). Needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN for unshare); skips otherwise.
#include "vmms/host_net.h"

#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmms/nic_backend.h"
#include "vmms/nic_config.h"

namespace vmms {
namespace {

using ::testing::HasSubstr;

class HostNetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root (a network namespace of its own, CAP_NET_ADMIN)";
      return;
    }
    // gtest runs every test on this thread, and namespaces are per thread:
    // netlink sockets, /dev/net/tun and `ip` children all see this one.
    if (::unshare(CLONE_NEWNET) != 0) {
      skip_ = absl::StrCat("cannot unshare a network namespace: ",
                           std::strerror(errno));
      return;
    }
    if (std::system("ip link add br0 type bridge && ip link set br0 up") != 0)
      skip_ = "cannot create a bridge with `ip` (iproute2)";
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  static void Run(const std::string& command) {
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static std::optional<hostnet::LinkInfo> Find(const std::string& name) {
    absl::StatusOr<std::optional<hostnet::LinkInfo>> link =
        hostnet::FindLink(name);
    EXPECT_TRUE(link.ok()) << link.status();
    return link.ok() ? *link : std::nullopt;
  }
  static inline std::string skip_;
};

TEST_F(HostNetTest, TapOnABridgeIsConfiguredAndVanishesWithItsDescriptor) {
  hostnet::TapRequest request;
  request.name = "hvtesttap0";
  request.alias = "hvstack vm x nic 0";
  request.bridge = "br0";
  request.mtu = 9000;
  request.vnet_hdr = true;
  absl::StatusOr<base::ScopedFd> tap = hostnet::CreateTap(request);
  ASSERT_TRUE(tap.ok()) << tap.status();
  std::optional<hostnet::LinkInfo> link = Find("hvtesttap0");
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->kind, "tun");
  EXPECT_EQ(link->alias, "hvstack vm x nic 0");
  EXPECT_EQ(link->master, "br0");
  EXPECT_TRUE(link->up);
  EXPECT_EQ(link->mtu, 9000u);
  tap->reset();
  EXPECT_FALSE(Find("hvtesttap0").has_value())
      << "a non-persistent TAP device goes with its last descriptor";
}

TEST_F(HostNetTest, UnattachedTapIsUpWithoutAMaster) {
  hostnet::TapRequest request;
  request.name = "hvtesttap1";
  absl::StatusOr<base::ScopedFd> tap = hostnet::CreateTap(request);
  ASSERT_TRUE(tap.ok()) << tap.status();
  std::optional<hostnet::LinkInfo> link = Find("hvtesttap1");
  ASSERT_TRUE(link.has_value());
  EXPECT_TRUE(link->up);
  EXPECT_EQ(link->master_ifindex, 0);
  EXPECT_EQ(link->mtu, 1500u);
}

TEST_F(HostNetTest, MissingOrWrongBridgesAreRefusedAndLeaveNothing) {
  EXPECT_TRUE(hostnet::CheckBridge("br0").ok());
  absl::Status missing = hostnet::CheckBridge("nosuchbr");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("bridge 'nosuchbr' does not exist"));
  absl::Status lo = hostnet::CheckBridge("lo");
  EXPECT_EQ(lo.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(lo.message(), HasSubstr("'lo' is not a bridge"));

  hostnet::TapRequest request;
  request.name = "hvtesttap2";
  request.bridge = "nosuchbr";
  absl::StatusOr<base::ScopedFd> tap = hostnet::CreateTap(request);
  EXPECT_EQ(tap.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(tap.status().message(), HasSubstr("nosuchbr"));
  EXPECT_FALSE(Find("hvtesttap2").has_value());
}

TEST_F(HostNetTest, ANameInUseIsRefusedAndPersistentDevicesCanBeDeleted) {
  hostnet::TapRequest request;
  request.name = "hvtesttap3";
  absl::StatusOr<base::ScopedFd> first = hostnet::CreateTap(request);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<base::ScopedFd> second = hostnet::CreateTap(request);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("hvtesttap3"));
  // IFF_TUN_EXCL: someone else's persistent device is not taken over.
  Run("ip tuntap add mode tap name hvtestpers");
  request.name = "hvtestpers";
  EXPECT_EQ(hostnet::CreateTap(request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Find("hvtestpers").has_value());
  EXPECT_TRUE(hostnet::DeleteLink("hvtestpers").ok());
  EXPECT_FALSE(Find("hvtestpers").has_value());
  EXPECT_TRUE(hostnet::DeleteLink("hvtestpers").ok()) << "absent is fine";
}

hvstack::v1::Vm VmWithNics(const std::string& name, const std::string& uuid) {
  hvstack::v1::Vm vm;
  vm.set_name(name);
  vm.set_uuid(uuid);
  hvstack::v1::NicConfig* a = vm.mutable_config()->add_nics();
  a->set_index(0);
  a->set_mac("02:68:76:00:00:01");
  a->set_bridge("br0");
  a->set_mtu(1500);
  hvstack::v1::NicConfig* b = vm.mutable_config()->add_nics();
  b->set_index(3);
  b->set_mac("02:68:76:00:00:02");
  b->set_mtu(9000);
  return vm;
}

TEST_F(HostNetTest, OpenNicsGivesTheWorkerContractAndReplacesItsOwnLeftovers) {
  const hvstack::v1::Vm vm =
      VmWithNics("web1", "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d");
  // A leftover persistent device of this VM's adapter 0.
  Run("ip tuntap add mode tap name hv0a1b2c3d4en0 && ip link set "
      "hv0a1b2c3d4en0 alias 'hvstack vm 0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d "
      "nic 0'");
  absl::StatusOr<OpenedNics> nics = OpenNics(vm);
  ASSERT_TRUE(nics.ok()) << nics.status();
  ASSERT_EQ(nics->config.size(), 2u);
  EXPECT_EQ(nics->config[0].tap_fd(), 40);
  EXPECT_EQ(nics->config[1].tap_fd(), 43);
  EXPECT_EQ(nics->config[1].index(), 3u);
  EXPECT_EQ(nics->config[0].mac(), std::string("\x02\x68\x76\x00\x00\x01", 6));
  EXPECT_TRUE(nics->config[0].vnet_hdr());
  EXPECT_EQ(nics->config[1].mtu(), 9000u);
  EXPECT_EQ(nics->config[0].host_ifname(), "hv0a1b2c3d4en0");
  EXPECT_EQ(nics->config[0].bridge(), "br0");
  std::optional<hostnet::LinkInfo> a = Find("hv0a1b2c3d4en0");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->master, "br0");
  std::optional<hostnet::LinkInfo> b = Find("hv0a1b2c3d4en3");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->master, "");
  EXPECT_EQ(b->mtu, 9000u);
  std::vector<hvstack::v1::NicStatus> statuses = NicStatuses(vm);
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_TRUE(statuses[0].present());
  EXPECT_EQ(statuses[1].host_interface(), "hv0a1b2c3d4en3");
  ASSERT_EQ(nics->InheritedFds().size(), 2u);
  EXPECT_EQ(nics->InheritedFds()[1].second, 43);
  nics->taps.clear();
  EXPECT_FALSE(Find("hv0a1b2c3d4en0").has_value());
  EXPECT_FALSE(NicStatuses(vm)[0].present());
}

TEST_F(HostNetTest, OpenNicsNamesTheAdapterAndBridgeWhenTheBridgeIsGone) {
  hvstack::v1::Vm vm =
      VmWithNics("web2", "1a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d");
  vm.mutable_config()->mutable_nics(1)->set_bridge("gone0");
  absl::StatusOr<OpenedNics> nics = OpenNics(vm);
  EXPECT_EQ(nics.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nics.status().message(),
              HasSubstr("VM 'web2' network adapter 3 (02:68:76:00:00:02)"));
  EXPECT_THAT(nics.status().message(), HasSubstr("bridge 'gone0'"));
  EXPECT_FALSE(Find("hv1a1b2c3d4en0").has_value())
      << "adapter 0's device went with its descriptor";
}

TEST_F(HostNetTest, CleanupAndReconcileRemoveOnlyOwnDevicesOfVmsWithoutWorker) {
  const std::string off = "2a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
  const std::string running = "3a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
  const std::string foreign = "4a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
  for (const std::string& uuid : {off, running, foreign}) {
    for (uint32_t index : {0u, 1u}) {
      Run(absl::StrCat("ip tuntap add mode tap name ",
                       HostInterfaceName(uuid, index), " && ip link set ",
                       HostInterfaceName(uuid, index), " alias '",
                       HostInterfaceAlias(uuid, index), "'"));
    }
  }
  // Same name pattern but no alias of ours: not vmms's.
  Run("ip tuntap add mode tap name hv5a1b2c3d4en0");
  std::vector<hvstack::v1::Vm> vms(2);
  vms[0].set_name("off");
  vms[0].set_uuid(off);
  vms[1].set_name("running");
  vms[1].set_uuid(running);
  EXPECT_EQ(ReconcileNicDevices(
                vms, [&](const std::string& uuid) { return uuid == running; }),
            2);
  EXPECT_FALSE(Find(HostInterfaceName(off, 0)).has_value());
  EXPECT_FALSE(Find(HostInterfaceName(off, 1)).has_value());
  EXPECT_TRUE(Find(HostInterfaceName(running, 1)).has_value());
  EXPECT_TRUE(Find(HostInterfaceName(foreign, 0)).has_value());
  EXPECT_TRUE(Find("hv5a1b2c3d4en0").has_value());

  RemoveNicDevices("running", running, {1});
  EXPECT_TRUE(Find(HostInterfaceName(running, 0)).has_value());
  EXPECT_FALSE(Find(HostInterfaceName(running, 1)).has_value());
  // Not ours by alias: left alone even under our name.
  RemoveNicDevices("other", "5a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d", {0});
  EXPECT_TRUE(Find("hv5a1b2c3d4en0").has_value());
  for (const char* name : {"hv3a1b2c3d4en0", "hv4a1b2c3d4en0", "hv4a1b2c3d4en1",
                           "hv5a1b2c3d4en0"}) {
    EXPECT_TRUE(hostnet::DeleteLink(name).ok());
  }
}

TEST_F(HostNetTest, CheckNicBridgeIsInvalidArgumentNamingTheField) {
  hvstack::v1::NicConfig nic;
  EXPECT_TRUE(CheckNicBridge(nic, "nic").ok()) << "unattached";
  nic.set_bridge("br0");
  EXPECT_TRUE(CheckNicBridge(nic, "nic").ok());
  nic.set_bridge("nosuchbr");
  absl::Status s = CheckNicBridge(nic, "config.nics[1]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("config.nics[1].bridge: bridge "
                                     "'nosuchbr' does not exist"));
}

}  // namespace
}  // namespace vmms
