#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "cli/exit_codes.h"
#include "cli/nic_commands.h"
#include "cli/output.h"
#include "cli/socket_path.h"

namespace vmctl {
namespace {

using ::testing::HasSubstr;

std::string SocketFor(std::map<std::string, std::string> env,
                      bool installed_exists, bool readonly_exists = false) {
  return DefaultSocketPath(
      [&env](const char* name) -> std::optional<std::string> {
        auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
      },
      [=](const std::string& path) {
        return path == "/run/hvstack/vmms-ro.sock" ? readonly_exists
                                                   : installed_exists;
      });
}

TEST(SocketPathTest, PrecedenceIsSocketThenStateDirThenInstalledThenCheckout) {
  EXPECT_EQ(
      SocketFor({{"HVSTACK_SOCKET", "/s"}, {"HVSTACK_STATE_DIR", "/d"}}, true),
      "/s");
  EXPECT_EQ(SocketFor({{"HVSTACK_STATE_DIR", "/d"}}, true), "/d/vmms.sock");
  EXPECT_EQ(SocketFor({}, true), "/var/lib/hvstack/vmms.sock");
  EXPECT_EQ(SocketFor({}, false), "state/vmms.sock");
  EXPECT_EQ(SocketFor({{"HVSTACK_SOCKET", ""}}, false), "state/vmms.sock");
  // Not allowed to see the main socket: the read-only one.
  EXPECT_EQ(SocketFor({}, false, true), "/run/hvstack/vmms-ro.sock");
  EXPECT_EQ(SocketFor({}, true, true), "/var/lib/hvstack/vmms.sock");
}

TEST(ExitCodesTest, DocumentedMapping) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::NOT_FOUND), 2);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::ALREADY_EXISTS), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::FAILED_PRECONDITION), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAVAILABLE), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INTERNAL), 6);
  EXPECT_STREQ(StatusCodeName(grpc::StatusCode::FAILED_PRECONDITION),
               "FAILED_PRECONDITION");
}

hvstack::v1::Vm SampleVm() {
  hvstack::v1::Vm vm;
  vm.set_name("web1");
  vm.set_uuid("0b8f5a4e-2d9c-4c41-9a53-1f0c7d7d2e11");
  vm.set_state(hvstack::v1::VM_STATE_RUNNING);
  vm.set_state_reason("worker ready");
  vm.mutable_config()->set_vcpus(2);
  vm.mutable_config()->set_memory_mib(256);
  vm.mutable_config()->set_kernel_path("/k");
  return vm;
}

TEST(OutputTest, TableHasHeaderAndAlignedRows) {
  hvstack::v1::ListVmsResponse list;
  *list.add_vms() = SampleVm();
  std::string table = FormatTable(list);
  EXPECT_EQ(table,
            "NAME  STATE    CPUS  MEMORY  UUID                                 "
            " REASON\n"
            "web1  running  2     256MiB  0b8f5a4e-2d9c-4c41-9a53-1f0c7d7d2e11 "
            " worker ready\n");
}

TEST(OutputTest, ShowIsKeyValueLines) {
  std::string text = FormatVm(SampleVm());
  EXPECT_THAT(text, HasSubstr("name: web1\n"));
  EXPECT_THAT(text, HasSubstr("state: running\n"));
  EXPECT_THAT(text, HasSubstr("state_reason: worker ready\n"));
  EXPECT_THAT(text, HasSubstr("memory: 256MiB\n"));
  EXPECT_THAT(text, HasSubstr("enlightenments: on\n"));
  hvstack::v1::Vm plain = SampleVm();
  plain.mutable_config()->set_disable_enlightenments(true);
  EXPECT_THAT(FormatVm(plain), HasSubstr("enlightenments: off\n"));
}

TEST(OutputTest, JsonIsCanonicalMapping) {
  std::string json = FormatJson(SampleVm());
  EXPECT_THAT(json, HasSubstr("\"state\":\"VM_STATE_RUNNING\""));
  EXPECT_THAT(json, HasSubstr("\"stateReason\":\"worker ready\""));
  EXPECT_THAT(json, HasSubstr("\"memoryMib\":\"256\""));
}

TEST(OutputTest, EventLinesLineUpUnderTheHeader) {
  hvstack::v1::VmEvent event;
  event.set_sequence(42);
  event.mutable_time()->set_seconds(1700000000);
  event.set_vm_name("web1");
  event.set_kind(hvstack::v1::VmEvent::KIND_STATE_CHANGED);
  event.set_state(hvstack::v1::VM_STATE_CRASHED);
  event.set_reason("worker killed by signal 9 (SIGKILL)");
  std::string header = EventTableHeader();
  std::string line = FormatEventLine(event);
  EXPECT_EQ(header.rfind("SEQ", 0), 0u);
  EXPECT_EQ(line.rfind("42 ", 0), 0u);
  EXPECT_EQ(header.find("REASON"), line.find("worker killed"));
  EXPECT_NE(line.find("2023-11-14T22:13:20Z"), std::string::npos);
  EXPECT_NE(line.find("state_changed"), std::string::npos);
  EXPECT_NE(line.find("crashed"), std::string::npos);
  EXPECT_EQ(line.find("[by"), std::string::npos);  // vmms's own decision.
  event.set_reason("stop requested");
  event.set_peer("uid=1000 pid=42 (vmctl)");
  EXPECT_THAT(FormatEventLine(event),
              HasSubstr("stop requested [by uid=1000 pid=42 (vmctl)]\n"));
}

TEST(OutputTest, ShowPrintsGuestIntegration) {
  hvstack::v1::Vm vm = SampleVm();
  EXPECT_THAT(FormatVm(vm), ::testing::Not(HasSubstr("heartbeat")))
      << "no integration lines for a VM without a worker";
  hvstack::v1::GuestIntegration* gi = vm.mutable_integration();
  gi->set_enlightened(true);
  gi->set_heartbeat(hvstack::v1::GuestIntegration::HEARTBEAT_OK);
  gi->set_heartbeat_sequence(12);
  gi->set_vmbus_version("5.3");
  gi->add_channels("heartbeat");
  gi->add_channels("kvp");
  gi->set_os_name("UnixHv");
  gi->set_host_name("web1.example");
  const std::string out = FormatVm(vm);
  EXPECT_THAT(out, HasSubstr("heartbeat: OK (seq 12)\n"));
  EXPECT_THAT(out, HasSubstr("vmbus: 5.3\n"));
  EXPECT_THAT(out, HasSubstr("integration_services: heartbeat kvp\n"));
  EXPECT_THAT(out, HasSubstr("guest_os: UnixHv\n"));
  EXPECT_THAT(out, HasSubstr("guest_host_name: web1.example\n"));

  gi->set_heartbeat(hvstack::v1::GuestIntegration::HEARTBEAT_NO_CONTACT);
  gi->clear_vmbus_version();
  gi->clear_channels();
  EXPECT_THAT(FormatIntegration(*gi),
              HasSubstr("heartbeat: NO_CONTACT\nvmbus: not connected\n"
                        "integration_services: -\n"));
  gi->set_heartbeat(hvstack::v1::GuestIntegration::HEARTBEAT_LOST);
  gi->mutable_last_heartbeat_time()->set_seconds(1700000000);
  EXPECT_THAT(
      FormatIntegration(*gi),
      HasSubstr("heartbeat: LOST (last seq 12 at 2023-11-14T22:13:20Z)"));
  hvstack::v1::GuestIntegration error;
  error.set_error("the worker did not answer: deadline");
  EXPECT_EQ(FormatIntegration(error),
            "heartbeat: unknown (the worker did not answer: deadline)\n");
}

TEST(OutputTest, KvpItemsOneLineEach) {
  hvstack::v1::ListKvpResponse items;
  auto* a = items.add_items();
  a->set_key("OSName");
  a->set_value("UnixHv");
  auto* b = items.add_items();
  b->set_key("role");
  b->set_value("web");
  EXPECT_EQ(FormatKvpItems(items), "OSName=UnixHv\nrole=web\n");
}

TEST(NicSpecTest, BridgeTapAndKeysParse) {
  absl::StatusOr<hvstack::v1::NicConfig> nic =
      ParseNicSpec("bridge=br0,mac=02:AA:00:00:00:01,mtu=9000");
  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_EQ(nic->bridge(), "br0");
  EXPECT_EQ(nic->mac(), "02:AA:00:00:00:01");  // vmms canonicalizes it.
  EXPECT_EQ(nic->mtu(), 9000u);
  nic = ParseNicSpec("tap");
  ASSERT_TRUE(nic.ok());
  EXPECT_EQ(nic->bridge(), "");
  EXPECT_EQ(nic->mac(), "");
  nic = ParseNicSpec("tap,mac=02:00:00:00:00:02");
  ASSERT_TRUE(nic.ok());
  EXPECT_EQ(nic->mac(), "02:00:00:00:00:02");
  nic = ParseNicSpec("mac=02:00:00:00:00:03");
  ASSERT_TRUE(nic.ok());
  EXPECT_EQ(nic->bridge(), "") << "no bridge: unattached";
}

TEST(NicSpecTest, SyntaxErrorsSayWhat) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty"},
      {"br0", "'br0' is not key=value"},
      {"bridge=", "bridge= has no value"},
      {"bridge=a,bridge=b", "bridge= is given twice"},
      {"colour=red", "unknown key 'colour'"},
      {"mtu=big", "mtu 'big' is not a number"},
      {"tap,bridge=br0", "exclude each other"},
  };
  for (const auto& [spec, why] : cases) {
    absl::StatusOr<hvstack::v1::NicConfig> nic = ParseNicSpec(spec);
    ASSERT_FALSE(nic.ok()) << spec;
    EXPECT_THAT(nic.status().message(), HasSubstr(why)) << spec;
  }
}

TEST(NicOutputTest, ShowListsAdaptersWithTheirHostInterfaces) {
  hvstack::v1::Vm vm;
  hvstack::v1::NicStatus* nic = vm.add_nics();
  nic->set_index(0);
  nic->set_mac("02:68:76:0a:0b:0c");
  nic->set_bridge("br0");
  nic->set_mtu(1500);
  nic->set_host_interface("hv1a2b3c4d5en0");
  nic->set_present(true);
  EXPECT_THAT(FormatVm(vm),
              HasSubstr("nic0: 02:68:76:0a:0b:0c bridge=br0 mtu=1500 "
                        "host_interface=hv1a2b3c4d5en0 (present)\n"));
  hvstack::v1::ListNicsResponse list;
  *list.add_nics() = *nic;
  list.add_nics()->set_index(1);
  EXPECT_EQ(FormatNicTable(list),
            "INDEX  MAC                BRIDGE  MTU   HOST_INTERFACE  PRESENT\n"
            "0      02:68:76:0a:0b:0c  br0     1500  hv1a2b3c4d5en0  yes\n"
            "1                         -       0                     no\n");
}

}  // namespace
}  // namespace vmctl
