// Issue 11 must-show: the Linux test kernel boots with its root filesystem
// on an hvstack disk (Linux's own hv_storvsc + sd + ext4 against storvsp),
// for each image format: raw (the worker's io_uring backend), VHDX and qcow2
// (qemu-nbd, which vmms starts). The image is made here: a sparse file, an
// MBR with one Linux partition at 1 MiB (sfdisk), ext4 on it made in place
// with mkfs.ext4 -E offset= -d (no loop device), holding a static busybox and
// an /sbin/init script that reports the root mount, writes a file, syncs,
// remounts / read-only and powers off. The console must show sd finding the
// disk with its size, the partition table read and the root mounted
// read-write; after the power-off the host reads what Linux wrote: the ext4
// superblock's mount count and last mount time (dumpe2fs) and the file
// (debugfs), through qemu-img convert for VHDX and qcow2.
//
// One Linux boot per shard (shard_count = 3): ~45-60 s of a core each on the
// kvm_pvm hosts. Without /dev/kvm every case skips, saying so.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/harness/process.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kDiskMiB = 64;
// 64 MiB of 512-byte sectors, as Linux's sd prints it.
constexpr char kSdCapacity[] =
    R"(sd 0:0:0:0: \[sda\] 131072 512-byte logical blocks)";
constexpr char kInit[] = R"sh(#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo "HVSTACK-DISK-ROOT: $(/bin/busybox grep ' / ' /proc/mounts)"
/bin/busybox echo "written by Linux" > /linux-was-here
/bin/busybox sync
/bin/busybox umount /proc
/bin/busybox mount -o remount,ro /
/bin/busybox echo HVSTACK-DISK-DONE
/bin/busybox poweroff -f
)sh";

absl::StatusOr<CommandResult> Sh(const std::string& script) {
  absl::StatusOr<CommandResult> r =
      RunCommand({"/bin/sh", "-ec", "PATH=/usr/sbin:/sbin:$PATH; " + script},
                 {}, absl::Seconds(120));
  if (r.ok() && r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("`", script, "` failed: ", r->err));
  }
  return r;
}

// The raw disk image with its ext4 root partition.
absl::Status MakeRootDisk(const std::string& dir, const std::string& raw) {
  const std::string root = dir + "/rootfs";
  {
    absl::StatusOr<CommandResult> r = Sh(
        absl::StrCat("mkdir -p ", root, "/bin ", root, "/sbin ", root, "/proc ",
                     root, "/dev && cp /bin/busybox ", root, "/bin/busybox"));
    if (!r.ok()) return r.status();
  }
  {
    std::ofstream init(root + "/sbin/init");
    init << kInit;
  }
  absl::StatusOr<CommandResult> r = Sh(absl::StrCat(
      "chmod 755 ", root, "/sbin/init && truncate -s ", kDiskMiB, "M ", raw,
      " && printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q ", raw,
      " && mkfs.ext4 -q -F -b 4096 -E offset=1048576 -d ", root, " ", raw, " ",
      (kDiskMiB - 1) * 256));
  return r.status();
}

struct Superblock {
  int mount_count = -1;
  std::string last_mount;  // "n/a" before the first mount.
  std::string file;        // /linux-was-here, if any.
};

// Reads the root partition of raw image `raw` (dd + dumpe2fs + debugfs).
absl::StatusOr<Superblock> ReadRoot(const std::string& raw) {
  const std::string part = raw + ".part";
  absl::StatusOr<CommandResult> r = Sh(absl::StrCat(
      "dd if=", raw, " of=", part, " bs=1M skip=1 status=none && dumpe2fs -h ",
      part, " 2>/dev/null"));
  if (!r.ok()) return r.status();
  Superblock sb;
  std::smatch m;
  if (std::regex_search(r->out, m, std::regex(R"(Mount count:\s+(\d+))")))
    sb.mount_count = std::stoi(m[1]);
  if (std::regex_search(r->out, m, std::regex(R"(Last mount time:\s+(.+))")))
    sb.last_mount = m[1];
  r = Sh(
      absl::StrCat("debugfs -R 'cat /linux-was-here' ", part, " 2>/dev/null"));
  if (r.ok()) sb.file = r->out;
  return sb;
}

void BootFromDisk(const std::string& format) {
  TempDir dir;
  const std::string raw = dir.path() + "/root.raw";
  // Made (and checked) even where the boot itself must skip.
  absl::Status made = MakeRootDisk(dir.path(), raw);
  ASSERT_TRUE(made.ok()) << made;
  absl::StatusOr<Superblock> before = ReadRoot(raw);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->mount_count, 0);
  ASSERT_EQ(before->last_mount, "n/a");

  std::string image = raw;
  if (format != "raw") {
    image = dir.path() + "/root." + format;
    ASSERT_TRUE(Sh(absl::StrCat("qemu-img convert -f raw -O ", format, " ", raw,
                                " ", image))
                    .ok());
  }
  absl::StatusOr<std::unique_ptr<LinuxVm>> vm = LinuxVm::Boot(
      {.name = "disk-" + format,
       .extra_cmdline = "root=/dev/sda1 rootfstype=ext4 rw rootwait "
                        "init=/sbin/init",
       .create_args = {"--disk", absl::StrCat(image, ",format=", format)}});
  if (absl::IsFailedPrecondition(vm.status()))
    GTEST_SKIP() << vm.status().message();
  ASSERT_TRUE(vm.ok()) << vm.status();
  LinuxVm& guest = **vm;
  std::string line;
  absl::StatusOr<absl::Duration> t =
      guest.WaitForConsoleRegex(kSdCapacity, absl::Minutes(3), &line);
  ASSERT_TRUE(t.ok()) << t.status() << "\n" << guest.ServiceLog();
  guest.Mark("sd: [sda] 131072 512-byte logical blocks", *t);
  t = guest.WaitForConsole(" sda: sda1");
  ASSERT_TRUE(t.ok()) << t.status();
  guest.Mark("partition table: sda1", *t);
  t = guest.WaitForConsole("VFS: Mounted root (ext4 filesystem) on device 8:1");
  ASSERT_TRUE(t.ok()) << t.status();
  guest.Mark("root mounted", *t);
  t = guest.WaitForConsole("HVSTACK-DISK-ROOT: /dev/root / ext4 rw");
  ASSERT_TRUE(t.ok()) << t.status();
  guest.Mark("/sbin/init sees / read-write", *t);
  t = guest.WaitForConsole("HVSTACK-DISK-DONE");
  ASSERT_TRUE(t.ok()) << t.status();
  t = guest.WaitForState("VM_STATE_OFF");
  ASSERT_TRUE(t.ok()) << t.status();
  guest.Mark("powered off", *t);
  EXPECT_THAT(guest.Console(), ::testing::Not(HasSubstr("readonly")));
  std::printf(
      "%s\n%s",
      guest.ConsoleLines({"sd 0:0:0:0", "sda", "EXT4-fs", "VFS:"}).c_str(),
      guest.Timeline().c_str());

  // What Linux wrote, as the host sees it.
  std::string back = raw;
  if (format != "raw") {
    back = dir.path() + "/back.raw";
    ASSERT_TRUE(Sh(absl::StrCat("qemu-img check -q -f ", format, " ", image,
                                " && qemu-img convert -f ", format, " -O raw ",
                                image, " ", back))
                    .ok());
  }
  absl::StatusOr<Superblock> after = ReadRoot(back);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GE(after->mount_count, 1);
  EXPECT_NE(after->last_mount, "n/a");
  EXPECT_EQ(after->file, "written by Linux\n");
  std::printf("%s: mount count %d -> %d, last mount time %s -> %s\n",
              format.c_str(), before->mount_count, after->mount_count,
              before->last_mount.c_str(), after->last_mount.c_str());
}

TEST(LinuxDiskTest, RootOnRawDisk) { BootFromDisk("raw"); }
TEST(LinuxDiskTest, RootOnVhdxDisk) { BootFromDisk("vhdx"); }
TEST(LinuxDiskTest, RootOnQcow2Disk) { BootFromDisk("qcow2"); }

}  // namespace
}  // namespace hvtest
