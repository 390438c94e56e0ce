#ifndef HVSTACK_VMMS_TEST_DIR_H_
#define HVSTACK_VMMS_TEST_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace vmms::testing {

// A fresh directory under /tmp, removed on destruction. Not under TEST_TMPDIR:
// bazel's paths are long, and unix socket paths must stay under 108 bytes.
class TestDir {
 public:
  TestDir() {
    char tmpl[] = "/tmp/vmmsXXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace vmms::testing

#endif  // HVSTACK_VMMS_TEST_DIR_H_
