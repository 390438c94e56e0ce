// The domain XML vmms gives libvirt VMs, and what it refuses to map. libvirt
// itself checks the XML in //tests/integration:libvirt_test.
#include "vmms/libvirt_xml.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmms {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

hvstack::v1::Vm LibvirtVm() {
  hvstack::v1::Vm vm;
  vm.set_name("web");
  vm.set_uuid("0b7c3c1e-1f7a-4d53-9b55-9f2d0c3f5e01");
  hvstack::v1::VmConfig* c = vm.mutable_config();
  c->set_vcpus(2);
  c->set_memory_mib(256);
  c->set_kernel_path("/k/vmlinux");
  c->set_backend(hvstack::v1::BACKEND_LIBVIRT);
  return vm;
}

TEST(LibvirtXmlTest, DisksAreVirtioScsiDisksAtTheirAddresses) {
  hvstack::v1::Vm vm = LibvirtVm();
  hvstack::v1::Disk* raw = vm.mutable_config()->add_disks();
  raw->set_path("/img/a b&.raw");
  raw->set_format(hvstack::v1::DISK_FORMAT_RAW);
  raw->set_serial("hvs-1");
  hvstack::v1::Disk* qcow = vm.mutable_config()->add_disks();
  qcow->set_path("/img/b.qcow2");
  qcow->set_format(hvstack::v1::DISK_FORMAT_QCOW2);
  qcow->set_read_only(true);
  qcow->mutable_address()->set_lun(3);
  ASSERT_TRUE(LibvirtSupports("web", vm.config()).ok());
  const std::string xml = LibvirtDomainXml(vm);
  EXPECT_THAT(xml, HasSubstr("<controller type='scsi' index='0' "
                             "model='virtio-scsi'/>"));
  EXPECT_THAT(xml, HasSubstr("<driver name='qemu' type='raw'/>\n"
                             "      <source file='/img/a b&amp;.raw'/>\n"
                             "      <target dev='sda' bus='scsi'/>\n"
                             "      <serial>hvs-1</serial>"));
  EXPECT_THAT(xml, HasSubstr("<driver name='qemu' type='qcow2'/>\n"
                             "      <source file='/img/b.qcow2'/>\n"
                             "      <target dev='sdb' bus='scsi'/>\n"
                             "      <readonly/>"));
  EXPECT_THAT(xml, HasSubstr("<address type='drive' controller='0' bus='0' "
                             "target='0' unit='3'/>"));
}

TEST(LibvirtXmlTest, BridgedAdaptersKeepTheVmsMacAndMtu) {
  hvstack::v1::Vm vm = LibvirtVm();
  hvstack::v1::NicConfig* nic = vm.mutable_config()->add_nics();
  nic->set_mac("02:68:76:00:00:01");
  nic->set_bridge("br0");
  nic->set_mtu(9000);
  ASSERT_TRUE(LibvirtSupports("web", vm.config()).ok());
  EXPECT_THAT(LibvirtDomainXml(vm),
              HasSubstr("<interface type='bridge'>\n"
                        "      <mac address='02:68:76:00:00:01'/>\n"
                        "      <source bridge='br0'/>\n"
                        "      <model type='virtio'/>\n"
                        "      <mtu size='9000'/>\n"
                        "    </interface>"));
}

TEST(LibvirtXmlTest, GuestCrashPolicyIsAPanicDeviceAndTheDomainsOnCrash) {
  for (const auto& [policy, on_crash] :
       {std::pair{hvstack::v1::GUEST_CRASH_POLICY_UNSPECIFIED, "destroy"},
        {hvstack::v1::GUEST_CRASH_POLICY_STOP, "destroy"},
        {hvstack::v1::GUEST_CRASH_POLICY_RESTART, "restart"},
        {hvstack::v1::GUEST_CRASH_POLICY_PRESERVE, "preserve"}}) {
    hvstack::v1::Vm vm = LibvirtVm();
    vm.mutable_config()->set_on_guest_crash(policy);
    ASSERT_TRUE(LibvirtSupports("web", vm.config()).ok());
    const std::string xml = LibvirtDomainXml(vm);
    EXPECT_THAT(xml,
                HasSubstr(absl::StrCat("<on_crash>", on_crash, "</on_crash>")));
    EXPECT_THAT(xml, HasSubstr("<panic model='isa'>"));
    EXPECT_THAT(xml, Not(HasSubstr("<disk")));
    EXPECT_THAT(xml, Not(HasSubstr("<interface")));
  }
}

TEST(LibvirtXmlTest, WhatDoesNotMapIsRefusedNamingIt) {
  hvstack::v1::Vm vm = LibvirtVm();
  hvstack::v1::Disk* vhdx = vm.mutable_config()->add_disks();
  vhdx->set_path("/img/c.vhdx");
  vhdx->set_format(hvstack::v1::DISK_FORMAT_VHDX);
  absl::Status s = LibvirtSupports("web", vm.config());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("VM 'web'"));
  EXPECT_THAT(s.message(), HasSubstr("/img/c.vhdx"));
  EXPECT_THAT(s.message(), HasSubstr("qemu-img convert"));

  vm = LibvirtVm();
  vm.mutable_config()->add_nics()->set_mac("02:68:76:00:00:02");
  s = LibvirtSupports("web", vm.config());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("network adapter 0 (02:68:76:00:00:02)"));
  EXPECT_THAT(s.message(), HasSubstr("bridge=NAME"));
}

}  // namespace
}  // namespace vmms
