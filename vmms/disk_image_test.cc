// Disk checks at attach with the real qemu-img (Debian's qemu-utils).
#include "vmms/disk_image.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "vmms/disk_table.h"
#include "vmms/qemu_process.h"
#include "vmms/test_dir.h"

namespace vmms {
namespace {

using hvstack::v1::Disk;
using ::testing::HasSubstr;

void Shell(const std::string& command) {
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

Disk MakeDisk(
    const std::string& path,
    hvstack::v1::DiskFormat format = hvstack::v1::DISK_FORMAT_UNSPECIFIED,
    bool read_only = false) {
  Disk disk;
  disk.set_path(path);
  disk.set_format(format);
  disk.set_read_only(read_only);
  return disk;
}

class DiskImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocateQemuTool("qemu-img").ok())
      GTEST_SKIP() << "needs qemu-img (Debian package qemu-utils)";
    raw_ = dir_.path() + "/a.raw";
    qcow2_ = dir_.path() + "/b.qcow2";
    vhdx_ = dir_.path() + "/c.vhdx";
    Shell("truncate -s 1M " + raw_);
    Shell("qemu-img create -q -f qcow2 " + qcow2_ + " 8M");
    Shell("qemu-img create -q -f vhdx " + vhdx_ + " 8M");
  }

  // The problem CheckDiskImage reports for `disk` (empty when it passes).
  std::string Problem(const Disk& disk) {
    absl::StatusOr<Disk> checked = CheckDiskImage(disk, "config.disks[0]");
    if (checked.ok()) return "";
    EXPECT_TRUE(absl::IsInvalidArgument(checked.status())) << checked.status();
    EXPECT_THAT(checked.status().message(), HasSubstr("config.disks[0]"));
    return std::string(checked.status().message());
  }

  testing::TestDir dir_;
  std::string raw_, qcow2_, vhdx_;
};

TEST_F(DiskImageTest, DetectsAndRecordsEachFormat) {
  for (const auto& [path, format] :
       {std::pair{raw_, hvstack::v1::DISK_FORMAT_RAW},
        std::pair{qcow2_, hvstack::v1::DISK_FORMAT_QCOW2},
        std::pair{vhdx_, hvstack::v1::DISK_FORMAT_VHDX}}) {
    absl::StatusOr<Disk> detected = CheckDiskImage(MakeDisk(path), "disk");
    ASSERT_TRUE(detected.ok()) << detected.status();
    EXPECT_EQ(detected->format(), format) << path;
    absl::StatusOr<Disk> stated =
        CheckDiskImage(MakeDisk(path, format), "disk");
    ASSERT_TRUE(stated.ok()) << stated.status();
    EXPECT_EQ(stated->format(), format);
  }
}

TEST_F(DiskImageTest, WrongFormatNamesBoth) {
  std::string p = Problem(MakeDisk(qcow2_, hvstack::v1::DISK_FORMAT_RAW));
  EXPECT_THAT(p, HasSubstr(qcow2_));
  EXPECT_THAT(p, HasSubstr("is a qcow2 image, not raw"));
  p = Problem(MakeDisk(raw_, hvstack::v1::DISK_FORMAT_QCOW2));
  EXPECT_THAT(p, HasSubstr("is not a qcow2 image"));
  p = Problem(MakeDisk(vhdx_, hvstack::v1::DISK_FORMAT_QCOW2));
  EXPECT_THAT(p, HasSubstr("is a vhdx image, not qcow2"));
  const std::string vmdk = dir_.path() + "/d.vmdk";
  Shell("qemu-img create -q -f vmdk " + vmdk + " 1M");
  EXPECT_THAT(Problem(MakeDisk(vmdk)), HasSubstr("'vmdk' image"));
}

TEST_F(DiskImageTest, FileProblems) {
  EXPECT_THAT(Problem(MakeDisk(dir_.path() + "/missing")),
              HasSubstr("does not exist"));
  EXPECT_THAT(Problem(MakeDisk(dir_.path())), HasSubstr("is a directory"));
  EXPECT_THAT(Problem(MakeDisk("relative.raw")), HasSubstr("absolute"));
  EXPECT_THAT(Problem(MakeDisk("")), HasSubstr("path is empty"));
  EXPECT_THAT(Problem(MakeDisk("/dev/null")),
              HasSubstr("not a regular file or a block device"));
  // Unreadable even for root: a write-only sysctl.
  if (access("/proc/sys/vm/compact_memory", F_OK) == 0) {
    EXPECT_THAT(Problem(MakeDisk("/proc/sys/vm/compact_memory")),
                HasSubstr("cannot be opened for reading"));
  }
  // Readable but not writable even for root: a read-only sysfs attribute.
  if (access("/sys/kernel/uevent_seqnum", F_OK) == 0) {
    EXPECT_THAT(Problem(MakeDisk("/sys/kernel/uevent_seqnum")),
                HasSubstr("cannot be opened for writing"));
  }
  const std::string empty = dir_.path() + "/empty.raw";
  Shell("touch " + empty);
  EXPECT_THAT(Problem(MakeDisk(empty)), HasSubstr("is empty"));
  const std::string odd = dir_.path() + "/odd.raw";
  Shell("truncate -s 1000 " + odd);
  EXPECT_THAT(Problem(MakeDisk(odd)), HasSubstr("not a multiple of 512"));
  Disk bad_format = MakeDisk(raw_);
  bad_format.set_format(static_cast<hvstack::v1::DiskFormat>(7));
  EXPECT_THAT(Problem(bad_format), HasSubstr("is not a DiskFormat"));
}

TEST_F(DiskImageTest, RefusesBackingChains) {
  const std::string overlay = dir_.path() + "/overlay.qcow2";
  Shell("qemu-img create -q -f qcow2 -b " + qcow2_ + " -F qcow2 " + overlay);
  EXPECT_THAT(Problem(MakeDisk(overlay)), HasSubstr("has a backing file"));
}

TEST(ParseQemuImgInfoTest, ReadsTheFieldsAndRefusesOtherText) {
  absl::StatusOr<ImageInfo> info = ParseQemuImgInfo(R"({
    "virtual-size": 67108864, "filename": "b.qcow2", "format": "qcow2",
    "backing-filename": "a.qcow2",
    "format-specific": {"type": "qcow2", "data": {"corrupt": true,
                        "data-file": "x.raw"}}})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->format, "qcow2");
  EXPECT_EQ(info->virtual_size, 67108864u);
  EXPECT_EQ(info->backing_file, "a.qcow2");
  EXPECT_EQ(info->data_file, "x.raw");
  EXPECT_TRUE(info->corrupt);
  EXPECT_FALSE(ParseQemuImgInfo("not json").ok());
  EXPECT_FALSE(ParseQemuImgInfo("[1, 2]").ok());
  EXPECT_FALSE(ParseQemuImgInfo(R"({"format": 3, "virtual-size": 1})").ok());
  EXPECT_FALSE(
      ParseQemuImgInfo(R"({"format": "raw", "virtual-size": -1})").ok());
}

TEST(AssignDiskAddressTest, LowestFreeLunRequestedOnesAndLimits) {
  std::vector<Disk> existing;
  for (const char* path : {"/a", "/b", "/c"}) {
    Disk disk = MakeDisk(path);
    ASSERT_TRUE(AssignDiskAddress(existing, "disk", &disk).ok());
    existing.push_back(disk);
  }
  EXPECT_EQ(existing[2].address().lun(), 2u);
  existing.erase(existing.begin() + 1);  // LUN 1 is free again.
  Disk next = MakeDisk("/d");
  ASSERT_TRUE(AssignDiskAddress(existing, "disk", &next).ok());
  EXPECT_EQ(ScsiAddressText(next.address()), "0:0:1");

  Disk requested = MakeDisk("/e");
  requested.mutable_address()->set_lun(9);
  ASSERT_TRUE(AssignDiskAddress(existing, "disk", &requested).ok());
  EXPECT_EQ(requested.address().lun(), 9u);

  Disk taken = MakeDisk("/f");
  taken.mutable_address()->set_lun(2);
  absl::Status s = AssignDiskAddress(existing, "disk", &taken);
  EXPECT_THAT(s.message(), HasSubstr("0:0:2 is taken"));
  Disk far = MakeDisk("/g");
  far.mutable_address()->set_lun(64);
  EXPECT_THAT(AssignDiskAddress(existing, "disk", &far).message(),
              HasSubstr("out of range"));
  Disk other_target = MakeDisk("/h");
  other_target.mutable_address()->set_target(1);
  EXPECT_THAT(AssignDiskAddress(existing, "disk", &other_target).message(),
              HasSubstr("0:1:0 is out of range"));
  Disk again = MakeDisk("/a");
  EXPECT_THAT(AssignDiskAddress(existing, "disk", &again).message(),
              HasSubstr("/a is attached already (at 0:0:0)"));
}

}  // namespace
}  // namespace vmms
