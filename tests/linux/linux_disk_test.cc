// Issue 11 must-show: the Linux test kernel with its root filesystem on an
// hvstack disk (Linux's own hv_storvsc + sd + ext4 against storvsp), and the
// same for every image format: raw (the worker's io_uring backend), VHDX and
// qcow2 (qemu-nbd, which vmms starts). One boot (each boot costs minutes in
// kvmbox) with three disks on the VM's SCSI controller:
//   LUN 0  raw   64 MiB  the root: root=PARTUUID=48565354-01 (its MBR's id)
//   LUN 1  VHDX  48 MiB  ext4, mounted by /sbin/init
//   LUN 2  qcow2 32 MiB  ext4, mounted by /sbin/init
// The images are made on the host before the test (enters kvmbox): sparse
// files, an MBR with one Linux partition at 1 MiB (sfdisk), ext4 made in place
// with mkfs.ext4 -E offset= -d (no loop device); the root holds a static
// busybox and an /sbin/init script. The kernel boots `quiet`; /init prints
// the kernel lines asserted on (dmesg | grep): sd finding each disk with its
// size, each partition table read, the root mounted read-write before /init.
// /init mounts the other two read-write, writes a file to each disk, syncs,
// remounts / read-only and powers off. The host then reads what Linux wrote:
// each ext4 superblock's mount count and last mount time (dumpe2fs) and the
// file (debugfs), through qemu-img convert for VHDX and qcow2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/harness/process.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

struct Disk {
  std::string format;
  uint64_t mib;
  std::string image;  // file name in the prepared directory
};
const std::vector<Disk>& Disks() {
  static const auto* disks = new std::vector<Disk>{
      {"raw", 64, "root.raw"},
      {"vhdx", 48, "data.vhdx"},
      {"qcow2", 32, "data.qcow2"},
  };
  return *disks;
}
// The root disk's MBR id: the root partition is PARTUUID=48565354-01.
constexpr char kRootDiskId[] = "0x48565354";
constexpr char kRootPartuuid[] = "48565354-01";

constexpr char kInit[] = R"sh(#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "HVSTACK-DISK-ROOT: $(grep ' / ' /proc/mounts) $(cat /format)"
echo "written by Linux" > /linux-was-here
root=$(awk '$5 == "/" { print $3 }' /proc/self/mountinfo)
for p in /sys/class/block/sd?1; do
  n=${p##*/}
  [ "$(cat $p/dev)" = "$root" ] && continue
  mkdir -p /mnt/$n
  if mount -t ext4 /dev/$n /mnt/$n; then
    echo "HVSTACK-DISK-MOUNTED: $(cat /mnt/$n/format) $(grep " /mnt/$n " /proc/mounts)"
    echo "written by Linux" > /mnt/$n/linux-was-here
    umount /mnt/$n
  else
    echo "HVSTACK-DISK-MOUNT-FAILED: $n"
  fi
done
dmesg | grep -E '\] sd [0-9:]+: \[sd[a-z]\] [0-9]+ 512-byte|\] +sd[a-z]: sd[a-z]1|VFS: Mounted root|EXT4-fs \(sd'
sync
mount -o remount,ro /
umount /sys
umount /proc
echo HVSTACK-DISK-DONE
poweroff -f
)sh";

absl::StatusOr<CommandResult> Sh(const std::string& script,
                                 absl::Duration timeout = absl::Seconds(120)) {
  absl::StatusOr<CommandResult> r = RunCommand(
      {"/bin/sh", "-ec", "PATH=/usr/sbin:/sbin:$PATH; " + script}, {}, timeout);
  if (r.ok() && r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("`", script, "` failed: ", r->err));
  }
  return r;
}

// A raw image of `mib` MiB with an MBR (disk id `id`) and one ext4 partition
// at 1 MiB holding `root`'s files.
absl::Status MakeExt4Image(const std::string& raw, uint64_t mib,
                           const std::string& root, const std::string& id) {
  return Sh(absl::StrCat("truncate -s ", mib, "M ", raw,
                         " && printf 'label: dos\\nlabel-id: ", id,
                         "\\nstart=2048, type=83\\n' | sfdisk -q ", raw,
                         " && mkfs.ext4 -q -F -b 4096 -E offset=1048576 -d ",
                         root, " ", raw, " ", (mib - 1) * 256))
      .status();
}

// On the host (linux_test_main): the three images.
const bool kDisks = PrepareOnHost("disks", [](const std::string& dir) {
  for (const Disk& disk : Disks()) {
    const std::string root = absl::StrCat(dir, "/", disk.format, "-files");
    absl::StatusOr<CommandResult> r = Sh(absl::StrCat(
        "mkdir -p ", root, " && echo ", disk.format, " > ", root, "/format"));
    if (!r.ok()) return r.status();
    if (disk.format == "raw") {
      // /sbin/init makes busybox's applet links at boot.
      r = Sh(absl::StrCat("mkdir -p ", root, "/bin ", root, "/sbin ", root,
                          "/proc ", root, "/sys ", root, "/dev ", root,
                          "/mnt && cp ", "/bin/busybox ", root,
                          "/bin/busybox"));
      if (!r.ok()) return r.status();
      std::ofstream(root + "/sbin/init") << kInit;
      r = Sh(absl::StrCat("chmod 755 ", root, "/sbin/init"));
      if (!r.ok()) return r.status();
    }
    const std::string raw = absl::StrCat(dir, "/", disk.format, ".raw");
    absl::Status s = MakeExt4Image(
        raw, disk.mib, root,
        disk.format == "raw" ? kRootDiskId
                             : absl::StrFormat("0x%08x", 0x1000 + disk.mib));
    if (!s.ok()) return s;
    if (disk.format != "raw") {
      r = Sh(absl::StrCat("qemu-img convert -f raw -O ", disk.format, " ", raw,
                          " ", dir, "/", disk.image, " && rm ", raw));
      if (!r.ok()) return r.status();
    } else {
      r = Sh(absl::StrCat("mv ", raw, " ", dir, "/", disk.image));
      if (!r.ok()) return r.status();
    }
  }
  return absl::OkStatus();
});

struct Superblock {
  int mount_count = -1;
  std::string last_mount;  // "n/a" before the first mount.
  std::string file;        // /linux-was-here, if any.
};

// Reads the ext4 partition of `image` (qemu-img convert for VHDX and qcow2,
// then dd + dumpe2fs + debugfs).
absl::StatusOr<Superblock> ReadPartition(const std::string& image,
                                         const std::string& format,
                                         const std::string& scratch) {
  std::string raw = image;
  if (format != "raw") {
    raw = scratch + "/back.raw";
    absl::StatusOr<CommandResult> r =
        Sh(absl::StrCat("qemu-img check -q -f ", format, " ", image,
                        " && qemu-img convert -f ", format, " -O raw ", image,
                        " ", raw),
           kvmbox::Scaled(absl::Seconds(60)));
    if (!r.ok()) return r.status();
  }
  const std::string part = scratch + "/part";
  absl::StatusOr<CommandResult> r =
      Sh(absl::StrCat("dd if=", raw, " of=", part,
                      " bs=1M skip=1 status=none && dumpe2fs -h ", part,
                      " 2>/dev/null"),
         kvmbox::Scaled(absl::Seconds(60)));
  if (!r.ok()) return r.status();
  Superblock sb;
  std::smatch m;
  if (std::regex_search(r->out, m, std::regex(R"(Mount count:\s+(\d+))")))
    sb.mount_count = std::stoi(m[1]);
  if (std::regex_search(r->out, m, std::regex(R"(Last mount time:\s+(.+))")))
    sb.last_mount = m[1];
  r = Sh(
      absl::StrCat("debugfs -R 'cat /linux-was-here' ", part, " 2>/dev/null"),
      kvmbox::Scaled(absl::Seconds(60)));
  if (r.ok()) sb.file = r->out;
  return sb;
}

class LinuxDiskTest : public ::testing::Test {
 protected:
  // One boot for all cases.
  static void SetUpTestSuite() {
    setup_ = new absl::Status(Boot());
    if (!setup_->ok() && vm_ != nullptr) {
      std::fprintf(stderr, "boot failed; console:\n%s\nvmms:\n%s\n",
                   vm_->Console().c_str(), vm_->ServiceLog().c_str());
    }
  }
  static void TearDownTestSuite() {
    if (vm_ != nullptr) {
      std::printf("timeline (seconds since StartVm):\n%s",
                  vm_->Timeline().c_str());
      std::printf("the guest's console:\n%s", vm_->Console().c_str());
    }
    delete vm_;
    vm_ = nullptr;
  }

  static absl::Status Boot() {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      skip_ = new std::string(
          "needs read/write access to /dev/kvm, which this host lacks (see "
          "the kvmbox line above)");
      return absl::OkStatus();
    }
    if (!HostRunsGuestUserspace()) {
      skip_ = new std::string(NoGuestUserspaceReason());
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> dir = PreparedOnHost("disks");
    if (!dir.ok()) return dir.status();
    dir_ = new std::string(*dir);
    std::vector<std::string> create;
    for (size_t i = 0; i < Disks().size(); ++i) {
      create.push_back("--disk");
      create.push_back(absl::StrCat(*dir, "/", Disks()[i].image,
                                    ",format=", Disks()[i].format, ",lun=", i));
    }
    absl::StatusOr<std::unique_ptr<LinuxVm>> vm = LinuxVm::Boot(
        {.name = "disks",
         .extra_cmdline = absl::StrCat("root=PARTUUID=", kRootPartuuid,
                                       " rootfstype=ext4 rw rootwait "
                                       "init=/sbin/init"),
         .create_args = create});
    if (!vm.ok()) return vm.status();
    vm_ = vm->release();
    absl::StatusOr<absl::Duration> t = vm_->WaitForConsole(
        "HVSTACK-DISK-DONE", kvmbox::Scaled(absl::Minutes(3)));
    if (!t.ok()) return t.status();
    vm_->Mark("/sbin/init done", *t);
    t = vm_->WaitForState("VM_STATE_OFF", kvmbox::Scaled(absl::Minutes(1)));
    if (!t.ok()) return t.status();
    vm_->Mark("powered off", *t);
    return absl::OkStatus();
  }

  void SetUp() override {
    if (skip_ != nullptr) GTEST_SKIP() << *skip_;
    ASSERT_TRUE(setup_->ok()) << *setup_;
  }

  // The console line matching `regex` (already printed: the VM is off).
  static std::string Line(const std::string& what, const std::string& regex) {
    std::string line;
    absl::StatusOr<absl::Duration> t =
        vm_->WaitForConsoleRegex(regex, absl::Seconds(1), &line);
    EXPECT_TRUE(t.ok()) << what << ": " << t.status();
    if (t.ok()) vm_->Mark(what, vm_->LineTime(line, *t));
    return line;
  }

  // sd's capacity line for the disk of `mib` MiB, and its partition table;
  // returns its sdX name.
  static std::string ExpectDiskFound(const Disk& disk) {
    const std::string capacity =
        Line(absl::StrCat("sd: ", disk.format, " disk, ", disk.mib, " MiB"),
             absl::StrCat(R"(sd [0-9:]+: \[sd[a-z]\] )", disk.mib * 2048,
                          " 512-byte logical blocks"));
    std::smatch m;
    if (!std::regex_search(capacity, m, std::regex(R"(\[(sd[a-z])\])"))) {
      ADD_FAILURE() << "no sd line for the " << disk.format << " disk";
      return "";
    }
    const std::string sd = m[1];
    Line(absl::StrCat("partition table: ", sd, "1"),
         absl::StrCat(" ", sd, ": ", sd, "1"));
    return sd;
  }

  static void ExpectHostSeesLinuxWrites(const Disk& disk) {
    TempDir scratch;
    absl::StatusOr<Superblock> after = ReadPartition(
        absl::StrCat(*dir_, "/", disk.image), disk.format, scratch.path());
    ASSERT_TRUE(after.ok()) << after.status();
    // mkfs.ext4 leaves 0 and "n/a".
    EXPECT_GE(after->mount_count, 1);
    EXPECT_NE(after->last_mount, "n/a");
    EXPECT_EQ(after->file, "written by Linux\n");
    std::printf("%s: mount count 0 -> %d, last mount time n/a -> %s\n",
                disk.format.c_str(), after->mount_count,
                after->last_mount.c_str());
  }

  static absl::Status* setup_;
  static std::string* skip_;
  static std::string* dir_;
  static LinuxVm* vm_;
};

absl::Status* LinuxDiskTest::setup_ = nullptr;
std::string* LinuxDiskTest::skip_ = nullptr;
std::string* LinuxDiskTest::dir_ = nullptr;
LinuxVm* LinuxDiskTest::vm_ = nullptr;

TEST_F(LinuxDiskTest, RootOnRawDisk) {
  const Disk& disk = Disks()[0];
  const std::string sd = ExpectDiskFound(disk);
  Line("root mounted (ext4, read-write) before /init",
       R"(VFS: Mounted root \(ext4 filesystem\) on device 8:)");
  const std::string root =
      Line("/sbin/init sees / read-write", "HVSTACK-DISK-ROOT: ");
  EXPECT_THAT(root, HasSubstr("/dev/root / ext4 rw"));
  EXPECT_THAT(root, HasSubstr(" raw"));
  EXPECT_THAT(vm_->Console(), ::testing::Not(HasSubstr("readonly")));
  ExpectHostSeesLinuxWrites(disk);
}

TEST_F(LinuxDiskTest, Ext4OnVhdxDisk) {
  const Disk& disk = Disks()[1];
  const std::string sd = ExpectDiskFound(disk);
  const std::string mounted =
      Line("vhdx disk mounted read-write", "HVSTACK-DISK-MOUNTED: vhdx ");
  EXPECT_THAT(mounted, HasSubstr(absl::StrCat("/dev/", sd, "1 ")));
  EXPECT_THAT(mounted, HasSubstr(" ext4 rw"));
  ExpectHostSeesLinuxWrites(disk);
}

TEST_F(LinuxDiskTest, Ext4OnQcow2Disk) {
  const Disk& disk = Disks()[2];
  const std::string sd = ExpectDiskFound(disk);
  const std::string mounted =
      Line("qcow2 disk mounted read-write", "HVSTACK-DISK-MOUNTED: qcow2 ");
  EXPECT_THAT(mounted, HasSubstr(absl::StrCat("/dev/", sd, "1 ")));
  EXPECT_THAT(mounted, HasSubstr(" ext4 rw"));
  ExpectHostSeesLinuxWrites(disk);
}

}  // namespace
}  // namespace hvtest
