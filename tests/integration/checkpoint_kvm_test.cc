// Checkpoints of a running guest, end to end (issue 14's checkpoint tree):
// vmctl -> vmms -> sandboxed vmwp on KVM (kvmbox where this host has no
// /dev/kvm). //guest:storage in its `gens` mode keeps a generation number in
// memory and writes it to a block of its disk (a raw image the test made),
// one generation per console line: A = gen 1, B = gen 2, C = gen 3.
//   gen 1 written, checkpoint c1 (of the running VM), gen 2, checkpoint c2,
//   gen 3; stop; apply c1 -> the disk holds A (read on the host with
//   qemu-img) and the restored guest goes on from c1's moment (its memory
//   says gen 1: not a boot, not a later generation; it reads A from the
//   disk); apply c2 -> B the same way; delete c1 -> c2 still applies and
//   restores. The user's image is written only before c1 (it holds A).
// One vmms, one VM.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/kvmbox/kvmbox.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kSeed = 5;
constexpr uint64_t kGenOffset = 8 * 512;           // guest/storage.cc kGenLba
constexpr uint64_t kGenMagic = 0x004E45475648ull;  // "HVGEN\0\0\0"

// guest/storage.cc's Pattern(seed, gen, i).
uint64_t Pattern(uint64_t gen, uint64_t i) {
  return (kSeed * 0x9E3779B97F4A7C15ull) ^ (gen << 20) ^ i ^ 0x5A5A0000ull;
}

// The generation a raw image holds in the guest's block: 0 for zeros, -1 for
// anything else that is not a whole generation.
int64_t GenerationIn(const std::string& raw) {
  std::ifstream in(raw, std::ios::binary);
  in.seekg(kGenOffset);
  uint64_t words[512];
  in.read(reinterpret_cast<char*>(words), sizeof(words));
  if (!in.good()) return -1;
  bool zero = true;
  for (uint64_t w : words) zero = zero && w == 0;
  if (zero) return 0;
  if (words[0] != kGenMagic) return -1;
  for (uint64_t i = 2; i < 512; ++i) {
    if (words[i] != Pattern(words[1], i)) return -1;
  }
  return static_cast<int64_t>(words[1]);
}

// Inside kvmbox /tmp is the host's root through virtiofs, where an OFD lock
// outlives the process that took it (QEMU's virtiofsd keeps it until the
// kvmbox VM ends): the worker's lock on the raw image, qemu-nbd's on the
// overlays. There the VM's files go to kvmbox's own tmpfs.
std::string StateParent() {
  return kvmbox::InsideKvmbox() ? "/dev/shm" : "/tmp";
}

class CheckpointKvmTest : public VmmsTest {
 protected:
  CheckpointKvmTest() : VmmsTest(StateParent()) {}

  // Slow requests (a checkpoint of a running VM saves and restores it).
  CommandResult Slow(const std::vector<std::string>& args) {
    absl::StatusOr<CommandResult> r =
        vmms_->Vmctl(args, kvmbox::Scaled(absl::Seconds(90)));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }
  std::string Console() { return Vmctl({"console", kVm, "--no-follow"}).out; }
  bool WaitForConsole(const std::string& text, size_t from) {
    const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(60));
    while (absl::Now() < deadline) {
      if (Console().find(text, from) != std::string::npos) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }
  // One line of console input: the guest writes its next generation. Returns
  // the console from the input on, once `expect` showed up there.
  std::string Next(const std::string& expect) {
    const size_t from = Console().size();
    auto api = hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    auto stream = api->AttachConsole(&context);
    hvstack::v1::AttachConsoleRequest first;
    first.set_name(kVm);
    EXPECT_TRUE(stream->Write(first));
    hvstack::v1::AttachConsoleRequest input;
    input.set_data("\n");
    EXPECT_TRUE(stream->Write(input));
    // The stream stays open until the guest answered.
    const bool seen = WaitForConsole(expect, from);
    context.TryCancel();
    (void)stream->Finish();
    const std::string out = Console();
    EXPECT_TRUE(seen) << "no '" << expect << "' after the input:\n"
                      << out.substr(std::min(from, out.size())) << vmms_->Log();
    return out.substr(std::min(from, out.size()));
  }
  // The generation the VM's current disk (a qcow2 overlay once checkpointed)
  // holds, read on the host through qemu-img while the VM has no worker.
  int64_t DiskGeneration(const std::string& what) {
    nlohmann::json vm = Show(kVm);
    const std::string path = vm["config"]["disks"][0].value("path", "");
    const std::string raw = absl::StrCat(dir_.path(), "/", what, ".raw");
    absl::StatusOr<CommandResult> convert =
        RunCommand({"/usr/bin/qemu-img", "convert", "-O", "raw", path, raw}, {},
                   kvmbox::Scaled(absl::Seconds(30)));
    EXPECT_TRUE(convert.ok() && convert->exit_code == 0)
        << what << ": qemu-img convert " << path << ": "
        << (convert.ok() ? convert->err : convert.status().ToString());
    return GenerationIn(raw);
  }
  void StopAndApply(const std::string& checkpoint) {
    CommandResult stop = Slow({"stop", kVm});
    ASSERT_EQ(stop.exit_code, 0) << stop.err;
    WaitForState(kVm, "VM_STATE_OFF");
    CommandResult apply = Slow({"checkpoint", "apply", kVm, checkpoint});
    ASSERT_EQ(apply.exit_code, 0) << apply.err << vmms_->Log();
    nlohmann::json vm = Show(kVm);
    EXPECT_EQ(vm.value("state", ""), "VM_STATE_SAVED") << vm.dump();
  }
  // StartVm of the Saved VM: the checkpoint's saved state is restored.
  void Restore() {
    CommandResult start = Slow({"start", kVm});
    ASSERT_EQ(start.exit_code, 0) << start.err << vmms_->Log();
    nlohmann::json vm = Show(kVm);
    EXPECT_EQ(vm.value("state", ""), "VM_STATE_RUNNING") << vm.dump();
  }

  static constexpr char kVm[] = "ck";
};

TEST_F(CheckpointKvmTest, TreeOfARunningGuestAppliesAndSurvivesADelete) {
  const absl::Time test_start = absl::Now();
  const std::string image = dir_.path() + "/data.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + image).c_str()), 0);
  CommandResult create =
      Vmctl({"create", kVm, "--kernel", Guest("storage"), "--memory", "64",
             "--cmdline", absl::StrCat("gens seed=", kSeed), "--disk", image});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  CommandResult start = Slow({"start", kVm});
  ASSERT_EQ(start.exit_code, 0) << start.err << vmms_->Log();
  ASSERT_TRUE(WaitForConsole("storage: gens: gen 1 written, 0 errors", 0))
      << Console() << vmms_->Log();
  const absl::Time booted = absl::Now();

  // A, c1, B, c2, C: each checkpoint of the running VM.
  CommandResult c1 = Slow({"checkpoint", "create", kVm, "c1"});
  ASSERT_EQ(c1.exit_code, 0) << c1.err << vmms_->Log();
  const absl::Time c1_done = absl::Now();
  EXPECT_EQ(Show(kVm).value("state", ""), "VM_STATE_RUNNING");
  std::string out = Next("gen 2 written");
  EXPECT_THAT(out, HasSubstr("disk holds gen 1, memory gen 1\r\n"));
  EXPECT_THAT(out, HasSubstr("gen 2 written, 0 errors"));
  CommandResult c2 = Slow({"checkpoint", "create", kVm, "c2"});
  ASSERT_EQ(c2.exit_code, 0) << c2.err << vmms_->Log();
  out = Next("gen 3 written");
  EXPECT_THAT(out, HasSubstr("disk holds gen 2, memory gen 2\r\n"));
  EXPECT_THAT(out, HasSubstr("gen 3 written, 0 errors"));
  CommandResult list = Vmctl({"checkpoint", "list", kVm});
  EXPECT_THAT(list.out, HasSubstr("c1"));
  EXPECT_THAT(list.out, HasSubstr("c2"));

  // Apply c1: A on the disk, the guest at c1's moment (gen 1 in memory).
  StopAndApply("c1");
  EXPECT_EQ(DiskGeneration("after-c1"), 1);
  Restore();
  out = Next("gen 2 written");
  EXPECT_THAT(out, HasSubstr("disk holds gen 1, memory gen 1\r\n"));
  EXPECT_THAT(out, Not(HasSubstr("storage: start")));  // no boot
  const absl::Time c1_applied = absl::Now();

  // Apply c2: B, gen 2 in memory.
  StopAndApply("c2");
  EXPECT_EQ(DiskGeneration("after-c2"), 2);
  Restore();
  out = Next("gen 3 written");
  EXPECT_THAT(out, HasSubstr("disk holds gen 2, memory gen 2\r\n"));
  EXPECT_THAT(out, Not(HasSubstr("storage: start")));

  // Delete c1 (c2's disk chain rested on it): c2 stays whole.
  CommandResult stop = Slow({"stop", kVm});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  WaitForState(kVm, "VM_STATE_OFF");
  CommandResult del = Slow({"checkpoint", "delete", kVm, "c1"});
  ASSERT_EQ(del.exit_code, 0) << del.err << vmms_->Log();
  list = Vmctl({"checkpoint", "list", kVm});
  EXPECT_THAT(list.out, Not(HasSubstr("c1")));
  EXPECT_THAT(list.out, HasSubstr("c2"));
  CommandResult apply = Slow({"checkpoint", "apply", kVm, "c2"});
  ASSERT_EQ(apply.exit_code, 0) << apply.err << vmms_->Log();
  EXPECT_EQ(DiskGeneration("after-delete"), 2);
  Restore();
  out = Next("gen 3 written");
  EXPECT_THAT(out, HasSubstr("disk holds gen 2, memory gen 2\r\n"));
  ASSERT_EQ(Slow({"stop", kVm}).exit_code, 0);

  // The user's image took the guest's writes until c1 froze it (A) and was
  // never written after.
  EXPECT_EQ(GenerationIn(image), 1);
  std::cout << "boot to gen 1: " << absl::FormatDuration(booted - test_start)
            << ", checkpoint c1 of the running VM: "
            << absl::FormatDuration(c1_done - booted)
            << ", to c1 applied and checked: "
            << absl::FormatDuration(c1_applied - c1_done) << ", whole test: "
            << absl::FormatDuration(absl::Now() - test_start) << std::endl;
}

}  // namespace
}  // namespace hvtest
