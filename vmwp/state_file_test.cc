#include "vmwp/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmwp/saved_vm.h"

namespace vmwp {
namespace {

using ::testing::HasSubstr;

int TempFile() {
  std::string path =
      std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
      "/stateXXXXXX";
  int fd = ::mkstemp(path.data());
  ::unlink(path.c_str());
  return fd;
}

hvstack::saved::SavedVm Sample() {
  hvstack::saved::SavedVm vm;
  vm.set_save_id(std::string(16, 'i'));
  vm.set_vm_uuid("0f8fad5b-d9cb-469f-a165-70867728950e");
  vm.mutable_config()->set_vcpus(2);
  vm.mutable_config()->set_memory_mib(64);
  vm.mutable_com1()->set_version(1);
  vm.mutable_com1()->set_rx("queued input");
  return vm;
}

TEST(StateFileTest, RoundTrip) {
  const int fd = TempFile();
  ASSERT_TRUE(WriteStateFile(fd, Sample()).ok());
  absl::StatusOr<hvstack::saved::SavedVm> back = ReadStateFile(fd);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), Sample().SerializeAsString());
  ::close(fd);
}

TEST(StateFileTest, TruncatedCorruptedAndNewerFilesAreNamed) {
  const int fd = TempFile();
  ASSERT_TRUE(WriteStateFile(fd, Sample()).ok());
  std::string bytes(4096, '\0');
  const ssize_t n = ::pread(fd, bytes.data(), bytes.size(), 0);
  ASSERT_GT(n, 32);
  bytes.resize(static_cast<size_t>(n));
  auto parse = [](const std::string& b) {
    return ParseStateFile(reinterpret_cast<const uint8_t*>(b.data()), b.size())
        .status();
  };
  EXPECT_THAT(parse(bytes.substr(0, bytes.size() - 3)).message(),
              HasSubstr("(truncated)"));
  EXPECT_THAT(parse(bytes.substr(0, 10)).message(), HasSubstr("too short"));
  std::string corrupt = bytes;
  corrupt[40] ^= 0x55;
  absl::Status s = parse(corrupt);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("corrupted"));
  std::string newer = bytes;
  newer[8] = 9;  // format version
  s = parse(newer);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("format version 9"));
  std::string magic = bytes;
  magic[0] = 'X';
  EXPECT_THAT(parse(magic).message(), HasSubstr("bad magic"));
  std::string huge = bytes;
  huge[23] = 0x7f;  // length
  EXPECT_THAT(parse(huge).message(), HasSubstr("payload"));
  ::close(fd);
}

TEST(StateFileTest, ConfigChecksNameTheField) {
  hvstack::internal::WorkerConfig config;
  config.set_vcpus(2);
  config.set_memory_mib(64);
  config.set_enlightened(true);
  hvstack::internal::WorkerDisk* d = config.add_disks();
  d->set_size_bytes(1 << 20);
  d->set_logical_block_size(512);
  const hvstack::saved::SavedConfig saved = SavedConfigOf(config);
  EXPECT_TRUE(CheckSavedConfig(saved, config).ok());
  hvstack::internal::WorkerConfig c = config;
  c.set_vcpus(4);
  EXPECT_THAT(CheckSavedConfig(saved, c).message(),
              HasSubstr("vcpus: the saved VM had 2, its configuration now "
                        "says 4"));
  c = config;
  c.set_memory_mib(128);
  EXPECT_THAT(CheckSavedConfig(saved, c).message(),
              HasSubstr("memory: the saved VM had 64 MiB"));
  c = config;
  c.mutable_disks(0)->set_size_bytes(2 << 20);
  EXPECT_THAT(CheckSavedConfig(saved, c).message(),
              HasSubstr("disk 0:0:0:0 size"));
  c = config;
  c.add_nics()->set_mac("\x02\x00\x00\x00\x00\x01");
  EXPECT_THAT(CheckSavedConfig(saved, c).message(),
              HasSubstr("network adapters"));
}

}  // namespace
}  // namespace vmwp
