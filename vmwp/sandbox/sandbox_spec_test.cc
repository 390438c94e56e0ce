#include "vmwp/sandbox/sandbox_spec.h"

#include "gtest/gtest.h"

namespace sandbox {
namespace {

SandboxSpec GoodSpec() {
  SandboxSpec spec;
  spec.vm_id = "0b7c9e1e-1111-4222-8333-444455556666";
  spec.uid = 1500000007;
  spec.gid = 1500000007;
  spec.runtime_dir = "/var/lib/hvstack/vms/0b7c";
  AddBootFiles(spec, "/images/vmlinux", "/images/initrd.cpio");
  return spec;
}

TEST(SandboxSpecTest, BootFilesAtFixedPaths) {
  SandboxSpec spec = GoodSpec();
  ASSERT_EQ(spec.files.size(), 2u);
  EXPECT_EQ(spec.files[0].inside_path, kInsideKernel);
  EXPECT_FALSE(spec.files[0].writable);
  EXPECT_EQ(spec.files[1].inside_path, kInsideInitrd);
  SandboxSpec no_initrd;
  AddBootFiles(no_initrd, "/k", "");
  EXPECT_EQ(no_initrd.files.size(), 1u);
}

TEST(SandboxSpecTest, ValidSpecPasses) {
  EXPECT_TRUE(ValidateSpec(GoodSpec()).ok());
}

TEST(SandboxSpecTest, RejectsWhatWouldWeakenTheSandbox) {
  SandboxSpec root = GoodSpec();
  root.uid = 0;
  EXPECT_EQ(ValidateSpec(root).code(), absl::StatusCode::kInvalidArgument);

  SandboxSpec relative = GoodSpec();
  relative.files[0].host_path = "vmlinux";
  EXPECT_FALSE(ValidateSpec(relative).ok());

  SandboxSpec escape = GoodSpec();
  escape.files[1].inside_path = "/vm/../etc/x";
  EXPECT_FALSE(ValidateSpec(escape).ok());

  SandboxSpec outside = GoodSpec();
  outside.files[1].inside_path = "/etc/initrd";
  EXPECT_FALSE(ValidateSpec(outside).ok());

  SandboxSpec writable_kernel = GoodSpec();
  writable_kernel.files[0].writable = true;
  EXPECT_FALSE(ValidateSpec(writable_kernel).ok());

  SandboxSpec bad_id = GoodSpec();
  bad_id.vm_id = "../x";
  EXPECT_FALSE(ValidateSpec(bad_id).ok());

  SandboxSpec netns_without_net = GoodSpec();
  netns_without_net.netns_path = "/run/netns/vm";
  EXPECT_FALSE(ValidateSpec(netns_without_net).ok());
}

TEST(SandboxSpecTest, MapsHostPathsInside) {
  SandboxSpec spec = GoodSpec();
  EXPECT_EQ(MapIntoSandbox(spec, "/images/vmlinux"), "/vm/kernel");
  EXPECT_EQ(MapIntoSandbox(spec, "/var/lib/hvstack/vms/0b7c"), "/run/vm");
  EXPECT_EQ(MapIntoSandbox(spec, "/var/lib/hvstack/vms/0b7c/console.log"),
            "/run/vm/console.log");
  EXPECT_EQ(MapIntoSandbox(spec, "/var/lib/hvstack/vms/0b7cX/console.log"),
            std::nullopt);
  EXPECT_EQ(MapIntoSandbox(spec, "/etc/passwd"), std::nullopt);
}

}  // namespace
}  // namespace sandbox
