#include "vmwp/sandbox_entry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerConfig;
using ::testing::HasSubstr;

WorkerConfig Config() {
  WorkerConfig c;
  c.set_vm_uuid("0f2a");
  c.set_vcpus(2);
  c.set_memory_mib(64);
  c.set_kernel_path("/images/vmlinux");
  c.set_initrd_path("/images/initrd.img");
  c.set_runtime_dir("/var/lib/hvstack/vms/0f2a");
  c.set_socket_path("/var/lib/hvstack/vms/0f2a/worker.sock");
  c.set_handoff_socket_path("/var/lib/hvstack/vms/0f2a/handoff.sock");
  c.set_console_log_path("/var/lib/hvstack/vms/0f2a/console.log");
  c.set_exit_report_path("/var/lib/hvstack/vms/0f2a/exit_report.pb");
  c.mutable_sandbox()->set_uid(1500000007);
  c.mutable_sandbox()->set_gid(1500000007);
  c.mutable_sandbox()->set_violation_fd(5);
  return c;
}

TEST(SandboxEntryTest, RequestedOnlyWhenPresentAndNotDisabled) {
  WorkerConfig c = Config();
  EXPECT_TRUE(SandboxRequested(c));
  c.mutable_sandbox()->set_disabled(true);
  EXPECT_FALSE(SandboxRequested(c));
  c.clear_sandbox();
  EXPECT_FALSE(SandboxRequested(c));
}

TEST(SandboxEntryTest, SpecCarriesIdsFilesAndLimits) {
  sandbox::SandboxSpec spec = SpecForWorker(Config());
  EXPECT_EQ(spec.vm_id, "0f2a");
  EXPECT_EQ(spec.uid, 1500000007u);
  EXPECT_EQ(spec.gid, 1500000007u);
  ASSERT_EQ(spec.files.size(), 2u);
  EXPECT_EQ(spec.files[0].inside_path, sandbox::kInsideKernel);
  EXPECT_FALSE(spec.files[0].writable);
  EXPECT_TRUE(sandbox::ValidateSpec(spec).ok());
  EXPECT_FALSE(spec.has_network);
}

TEST(SandboxEntryTest, InsideConfigUsesInsidePathsOnly) {
  WorkerConfig c = Config();
  absl::StatusOr<WorkerConfig> inside = InsideConfig(c, SpecForWorker(c));
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(inside->kernel_path(), "/vm/kernel");
  EXPECT_EQ(inside->initrd_path(), "/vm/initrd");
  EXPECT_EQ(inside->runtime_dir(), "/run/vm");
  EXPECT_EQ(inside->socket_path(), "/run/vm/worker.sock");
  // The save/restore descriptor handoff socket is bound inside the sandbox.
  EXPECT_EQ(inside->handoff_socket_path(), "/run/vm/handoff.sock");
  EXPECT_EQ(inside->console_log_path(), "/run/vm/console.log");
  EXPECT_EQ(inside->exit_report_path(), "/run/vm/exit_report.pb");
  EXPECT_EQ(inside->vm_uuid(), "0f2a");
}

TEST(SandboxEntryTest, PathOutsideTheSandboxIsRefused) {
  WorkerConfig c = Config();
  c.set_console_log_path("/var/log/elsewhere.log");
  absl::StatusOr<WorkerConfig> inside = InsideConfig(c, SpecForWorker(c));
  ASSERT_FALSE(inside.ok());
  EXPECT_EQ(inside.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inside.status().message(),
              HasSubstr("console_log_path \"/var/log/elsewhere.log\""));
}

}  // namespace
}  // namespace vmwp
