#include "vmwp/console/console_log_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "vmwp/console/console.h"

namespace vmwp {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class ConsoleLogFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR")
                                               : "/tmp") +
        "/consolelogXXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl + "/console.log";
  }
  std::string path_;
};

TEST_F(ConsoleLogFileTest, WritesBytes) {
  auto log = ConsoleLogFile::Create(path_, 100);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Write("hello\n");
  (*log)->Write("world\n");
  EXPECT_TRUE((*log)->status().ok());
  EXPECT_EQ(ReadFile(path_), "hello\nworld\n");
}

TEST_F(ConsoleLogFileTest, RotatesAtTheCap) {
  auto log = ConsoleLogFile::Create(path_, 10);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Write("0123456789");
  EXPECT_EQ(ReadFile(path_ + ".1"), "");
  (*log)->Write("abc");
  EXPECT_EQ(ReadFile(path_ + ".1"), "0123456789");
  EXPECT_EQ(ReadFile(path_), "abc");
}

TEST_F(ConsoleLogFileTest, LargeWritesSplitAndDiskUseStaysBounded) {
  auto log = ConsoleLogFile::Create(path_, 4);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Write("abcdefghijk");
  EXPECT_EQ(ReadFile(path_ + ".1"), "efgh");
  EXPECT_EQ(ReadFile(path_), "ijk");
  for (int i = 0; i < 1000; ++i) (*log)->Write("spam");
  EXPECT_LE(ReadFile(path_).size(), 4u);
  EXPECT_LE(ReadFile(path_ + ".1").size(), 4u);
}

TEST_F(ConsoleLogFileTest, CreateEmptiesBothFiles) {
  {
    auto log = ConsoleLogFile::Create(path_, 4);
    ASSERT_TRUE(log.ok());
    (*log)->Write("123456");
  }
  ASSERT_EQ(ReadFile(path_ + ".1"), "1234");
  auto log = ConsoleLogFile::Create(path_, 4);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(ReadFile(path_ + ".1"), "");
  EXPECT_EQ(ReadFile(path_), "");
}

TEST_F(ConsoleLogFileTest, AppendKeepsEarlierOutputAndItsSize) {
  {
    auto log = ConsoleLogFile::Create(path_, 8);
    ASSERT_TRUE(log.ok());
    (*log)->Write("boot1\n");
  }
  auto log = ConsoleLogFile::Create(path_, 8, /*append=*/true);
  ASSERT_TRUE(log.ok());
  (*log)->Write("b2");
  EXPECT_EQ(ReadFile(path_), "boot1\nb2");
  // The size carried over: the next byte rotates.
  (*log)->Write("x");
  EXPECT_EQ(ReadFile(path_ + ".1"), "boot1\nb2");
  EXPECT_EQ(ReadFile(path_), "x");
}

TEST_F(ConsoleLogFileTest, RotationNeedsNoOpenAfterCreate) {
  auto log = ConsoleLogFile::Create(path_, 4);
  ASSERT_TRUE(log.ok());
  // Both files exist from the start; rotation only swaps their names.
  EXPECT_TRUE(Exists(path_ + ".1"));
  struct stat before;
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  (*log)->Write("abcde");
  struct stat after_old;
  ASSERT_EQ(::stat((path_ + ".1").c_str(), &after_old), 0);
  EXPECT_EQ(after_old.st_ino, before.st_ino);
  EXPECT_EQ(ReadFile(path_), "e");
  EXPECT_TRUE((*log)->status().ok());
}

TEST_F(ConsoleLogFileTest, UnwritableDirectoryIsAnError) {
  auto log = ConsoleLogFile::Create("/nonexistent-dir/console.log", 4);
  EXPECT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("/nonexistent-dir/console.log"),
            std::string::npos);
}

TEST_F(ConsoleLogFileTest, ConsoleFansOutToRingAndFile) {
  auto log = ConsoleLogFile::Create(path_, 100);
  ASSERT_TRUE(log.ok());
  Console console(*std::move(log), 16);
  console.Write("boot\n");
  EXPECT_EQ(console.ring().Read(0, 100).data, "boot\n");
  EXPECT_EQ(ReadFile(path_), "boot\n");
  console.Close();
  EXPECT_TRUE(console.ring().Read(5, 10).closed);
}

}  // namespace
}  // namespace vmwp
