#include "vmwp/storage_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerDisk;

class StorageConfigTest : public ::testing::Test {
 protected:
  int Image(int flags, uint64_t size = 1 << 20) {
    const std::string path =
        std::string(getenv("TEST_TMPDIR")) + "/d" + std::to_string(n_++);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    ::close(fd);
    return ::open(path.c_str(), flags);
  }
  WorkerDisk* Add(uint32_t controller, uint32_t target, uint32_t lun, int fd,
                  bool ro = false) {
    WorkerDisk* d = disks_.Add();
    d->set_controller(controller);
    d->set_target(target);
    d->set_lun(lun);
    d->set_backend(WorkerDisk::BACKEND_RAW_FILE);
    d->set_fd(fd);
    d->set_read_only(ro);
    d->set_size_bytes(1 << 20);
    d->set_display_name("/images/d" + std::to_string(disks_.size()) + ".raw");
    return d;
  }
  absl::StatusOr<StorageControllers> Build() {
    return BuildStorageControllers(disks_, memory_, 2, nullptr);
  }

  vmbus::FlatGuestPages memory_{16};
  google::protobuf::RepeatedPtrField<WorkerDisk> disks_;
  int n_ = 0;
};

TEST_F(StorageConfigTest, OneControllerPerNumberInOrder) {
  Add(1, 0, 0, Image(O_RDWR));
  Add(0, 0, 0, Image(O_RDWR));
  Add(0, 0, 1, Image(O_RDONLY), /*ro=*/true);
  absl::StatusOr<StorageControllers> c = Build();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->numbers, (std::vector<uint32_t>{0, 1}));
  ASSERT_EQ(c->controllers.size(), 2u);
  EXPECT_EQ(c->controllers[0]->primary()->offer().interface_instance,
            StorageControllerInstance(0));
  EXPECT_NE(StorageControllerInstance(0), StorageControllerInstance(1));
}

TEST_F(StorageConfigTest, BadDisksAreNamed) {
  Add(0, 0, 0, Image(O_RDONLY));  // writable disk, read-only descriptor
  absl::StatusOr<StorageControllers> c = Build();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("/images/d1.raw"), std::string::npos)
      << c.status();
  EXPECT_NE(c.status().message().find("read-only"), std::string::npos);

  disks_.Clear();
  Add(0, 2, 0, Image(O_RDWR));  // target Linux does not scan
  c = Build();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("target 2"), std::string::npos)
      << c.status();

  disks_.Clear();
  Add(0, 0, 0, Image(O_RDWR));
  Add(0, 0, 0, Image(O_RDWR));  // same address twice
  c = Build();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("used by another disk"),
            std::string::npos)
      << c.status();

  disks_.Clear();
  Add(0, 0, 0, Image(O_RDWR, 4096))->set_size_bytes(1 << 20);  // file short
  c = Build();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("less than the configured size"),
            std::string::npos)
      << c.status();

  disks_.Clear();
  Add(0, 0, 0, 9999);  // not an open descriptor
  c = Build();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("not open"), std::string::npos)
      << c.status();
}

}  // namespace
}  // namespace vmwp
