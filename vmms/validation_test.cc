#include "vmms/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "vmms/test_dir.h"
#include "vmms/test_kernels.h"

namespace vmms {
namespace {

using ::testing::HasSubstr;

TEST(ValidateVmNameTest, AcceptsDnsLabels) {
  for (const char* name : {"a", "web1", "0", "a-b-c", "x1-2"}) {
    EXPECT_TRUE(ValidateVmName(name).ok()) << name;
  }
  EXPECT_TRUE(ValidateVmName(std::string(63, 'a')).ok());
}

TEST(ValidateVmNameTest, RejectsOthersAndStatesTheRule) {
  for (const std::string& name :
       {std::string(""), std::string(64, 'a'), std::string("Web1"),
        std::string("-web"), std::string("web-"), std::string("web_1"),
        std::string("web.1"), std::string("wéb"), std::string("a b"),
        std::string("a/b")}) {
    absl::Status s = ValidateVmName(name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr("1-63 characters of [a-z0-9-]")) << name;
  }
}

hvstack::v1::VmConfig Config(uint32_t vcpus, uint64_t memory,
                             std::string kernel) {
  hvstack::v1::VmConfig config;
  config.set_vcpus(vcpus);
  config.set_memory_mib(memory);
  config.set_kernel_path(std::move(kernel));
  return config;
}

TEST(ValidateVmConfigTest, AcceptsARealKernelWithinBounds) {
  for (uint32_t vcpus : {1u, 64u}) {
    for (uint64_t memory : {16u, 256u, 65536u}) {
      absl::Status s =
          ValidateVmConfig(Config(vcpus, memory, testing::HelloKernel()));
      EXPECT_TRUE(s.ok()) << vcpus << " " << memory << ": " << s;
    }
  }
}

TEST(ValidateVmConfigTest, BoundsAreStated) {
  for (uint32_t vcpus : {0u, 65u}) {
    absl::Status s =
        ValidateVmConfig(Config(vcpus, 256, testing::HelloKernel()));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("between 1 and 64"));
    EXPECT_THAT(s.message(), HasSubstr("config.vcpus"));
  }
  for (uint64_t memory : {0u, 15u, 65537u}) {
    absl::Status s =
        ValidateVmConfig(Config(1, memory, testing::HelloKernel()));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("between 16 and 65536 MiB"));
  }
}

TEST(ValidateVmConfigTest, KernelProblemsNameThePath) {
  testing::TestDir dir;
  struct Case {
    std::string path;
    std::string expected;
  } cases[] = {
      {"", "kernel_path is empty"},
      {"guest/hello.elf", "not an absolute path"},
      {dir.path() + "/missing", "No such file"},
      {testing::WriteFile(dir.path() + "/text",
                          "just some text, long enough for a header..."
                          "........................................"),
       "not an ELF"},
      {testing::WriteFile(dir.path() + "/arm", testing::Aarch64ElfHeader()),
       "x86-64"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateVmConfig(Config(1, 256, c.path));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.path;
    EXPECT_THAT(s.message(), HasSubstr(c.expected)) << c.path;
    EXPECT_THAT(s.message(), HasSubstr(c.path)) << c.path;
  }
}

TEST(ValidateVmConfigTest, CommandLineFitsTheBootProtocol) {
  hvstack::v1::VmConfig config = Config(1, 256, testing::HelloKernel());
  config.set_cmdline(std::string(2047, 'c'));
  EXPECT_TRUE(ValidateVmConfig(config).ok());
  config.set_cmdline(std::string(2048, 'c'));
  absl::Status s = ValidateVmConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("config.cmdline is 2048 bytes"));
  config.set_cmdline(std::string("console=ttyS0\0rest", 18));
  s = ValidateVmConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("NUL byte at offset 13"));
}

TEST(QuotedTest, EscapesAndCutsLongValues) {
  EXPECT_EQ(Quoted("web1"), "'web1'");
  EXPECT_EQ(Quoted(std::string("a\0\xff", 3)), "'a\\x00\\xff'");
  std::string shown = Quoted(std::string(5000, 'x'));
  EXPECT_THAT(shown, HasSubstr("...' (5000 bytes)"));
  EXPECT_LT(shown.size(), 120u);
}

TEST(ValidateKvpSizesTest, CountsUtf16Characters) {
  EXPECT_TRUE(ValidateKvpSizes(std::string(255, 'k'), "").ok());
  EXPECT_FALSE(ValidateKvpSizes(std::string(256, 'k'), "").ok());
  // 255 two-byte characters (U+00E9) are 255 UTF-16 units: fine; 128 emoji
  // (4 bytes, 2 units each) are 256: too long.
  std::string e_acute;
  for (int i = 0; i < 255; ++i) e_acute += "\xc3\xa9";
  EXPECT_TRUE(ValidateKvpSizes(e_acute, "").ok());
  std::string emoji;
  for (int i = 0; i < 128; ++i) emoji += "\xf0\x9f\x98\x80";
  EXPECT_THAT(ValidateKvpSizes(emoji, "").message(),
              HasSubstr("at most 255 UTF-16 characters"));
  EXPECT_TRUE(ValidateKvpSizes("k", std::string(1023, 'v')).ok());
  EXPECT_THAT(ValidateKvpSizes("k", std::string(1024, 'v')).message(),
              HasSubstr("value of 1024 bytes"));
}

}  // namespace
}  // namespace vmms
