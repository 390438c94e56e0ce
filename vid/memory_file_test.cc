#include "vid/memory_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vid {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSize = 16ull << 20;
constexpr SaveId kId = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

class MemoryFileTest : public ::testing::Test {
 protected:
  int NewFile() {
    std::string path =
        std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
        "/memXXXXXX";
    int fd = ::mkstemp(path.data());
    EXPECT_GE(fd, 0);
    ::unlink(path.c_str());
    fds_.push_back(fd);
    return fd;
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
  }
  // Writes a recognisable value into every page of the first 2 MiB and
  // every 64th page of the rest of the first half (kPages pages in all), and
  // zeroes (touches) the last page.
  static constexpr uint64_t kPages = 512 + (kSize / 2 / 4096 - 512) / 64;
  static void Fill(GuestMemory& m) {
    for (uint64_t page = 0; page < kSize / 2 / 4096; ++page) {
      if (page >= 512 && page % 64 != 0) continue;
      uint64_t v = page * 7 + 1;
      ASSERT_TRUE(m.WriteObject(page * 4096 + 8 * (page % 500), v).ok());
    }
    ASSERT_TRUE(m.Fill(kSize - 4096, 4096, 0).ok());  // touched, zero
  }
  std::vector<int> fds_;
};

TEST_F(MemoryFileTest, SparseWriteAndBothLoadModesGiveTheSameBytes) {
  absl::StatusOr<std::unique_ptr<GuestMemory>> m = GuestMemory::Create(kSize);
  ASSERT_TRUE(m.ok());
  Fill(**m);
  const int fd = NewFile();
  absl::StatusOr<MemorySaveStats> stats = WriteMemoryFile(**m, fd, kId);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pages_total, kSize / 4096);
  EXPECT_EQ(stats->pages_written, kPages);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kMemoryFileHeaderSize + kSize);
  // Sparse: about the written pages, not all of RAM (filesystems round up).
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kSize / 4);

  for (auto mode :
       {GuestMemory::LoadMode::kEager, GuestMemory::LoadMode::kMapPrivate}) {
    absl::StatusOr<std::unique_ptr<GuestMemory>> back =
        LoadMemoryFile(fd, kSize, kId, mode);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(std::memcmp((*back)->host_base(), (*m)->host_base(), kSize), 0);
  }
}

TEST_F(MemoryFileTest, SavingMappedMemoryKeepsPagesOnlyTheFileHad) {
  absl::StatusOr<std::unique_ptr<GuestMemory>> m = GuestMemory::Create(kSize);
  ASSERT_TRUE(m.ok());
  Fill(**m);
  const int first = NewFile();
  ASSERT_TRUE(WriteMemoryFile(**m, first, kId).ok());
  // Restore by mapping, touch one new page, save again: the pages the guest
  // never touched after the restore still come from the first file.
  absl::StatusOr<std::unique_ptr<GuestMemory>> mapped =
      LoadMemoryFile(first, kSize, kId, GuestMemory::LoadMode::kMapPrivate);
  ASSERT_TRUE(mapped.ok());
  uint64_t marker = 0xfeedface;
  ASSERT_TRUE((*mapped)->WriteObject(kSize - 8192, marker).ok());
  ASSERT_TRUE((*m)->WriteObject(kSize - 8192, marker).ok());
  const int second = NewFile();
  SaveId id2 = kId;
  id2[0] = 99;
  ASSERT_TRUE(WriteMemoryFile(**mapped, second, id2).ok());
  mapped->reset();
  absl::StatusOr<std::unique_ptr<GuestMemory>> back =
      LoadMemoryFile(second, kSize, id2, GuestMemory::LoadMode::kEager);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::memcmp((*back)->host_base(), (*m)->host_base(), kSize), 0);
  // Discard of mapped memory gives zeros, not the file's bytes.
  absl::StatusOr<std::unique_ptr<GuestMemory>> again =
      LoadMemoryFile(second, kSize, id2, GuestMemory::LoadMode::kMapPrivate);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Discard().ok());
  EXPECT_EQ(*(*again)->ReadObject<uint64_t>(kSize - 8192), 0u);
}

TEST_F(MemoryFileTest, BadFilesAreRefusedNamingTheProblem) {
  absl::StatusOr<std::unique_ptr<GuestMemory>> m = GuestMemory::Create(kSize);
  ASSERT_TRUE(m.ok());
  Fill(**m);
  const int fd = NewFile();
  ASSERT_TRUE(WriteMemoryFile(**m, fd, kId).ok());
  SaveId other = kId;
  other[15] = 0;
  EXPECT_THAT(CheckMemoryFile(fd, kSize, other).status().message(),
              HasSubstr("another save"));
  EXPECT_THAT(CheckMemoryFile(fd, kSize * 2, kId).status().message(),
              HasSubstr("holds 16 MiB of guest memory; the VM has 32 MiB"));
  ASSERT_EQ(::ftruncate(fd, kMemoryFileHeaderSize + kSize / 2), 0);
  EXPECT_THAT(CheckMemoryFile(fd, kSize, kId).status().message(),
              HasSubstr("truncated"));
  ASSERT_EQ(::pwrite(fd, "XXXX", 4, 0), 4);
  EXPECT_THAT(CheckMemoryFile(fd, kSize, kId).status().message(),
              HasSubstr("bad magic"));
  ASSERT_EQ(::ftruncate(fd, 10), 0);
  EXPECT_THAT(CheckMemoryFile(fd, kSize, kId).status().message(),
              HasSubstr("too short"));
}

}  // namespace
}  // namespace vid
