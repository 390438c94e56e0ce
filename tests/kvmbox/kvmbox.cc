#include "tests/kvmbox/kvmbox.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace kvmbox {
namespace {

bool HaveKvm() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

bool IsExecutable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

// kvmbox.sh in this binary's runfiles (bazel test sets TEST_SRCDIR, bazel run
// RUNFILES_DIR; else <binary>.runfiles next to the binary).
std::string FindScript(const std::string& self) {
  const std::string rel = "/hvstack/tests/kvmbox/kvmbox.sh";
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    if (const char* dir = std::getenv(var); dir != nullptr && *dir != '\0') {
      if (IsExecutable(dir + rel)) return dir + rel;
    }
  }
  if (IsExecutable(self + ".runfiles" + rel)) return self + ".runfiles" + rel;
  return "";
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

}  // namespace

bool InsideKvmbox() {
  const char* inside = std::getenv("HVSTACK_IN_KVMBOX");
  return inside != nullptr && *inside != '\0';
}

void RunInKvmboxIfNeeded(int argc, char** argv, InSuite in_suite) {
  if (HaveKvm() || InsideKvmbox()) return;
  const char* mode = std::getenv("HVSTACK_KVMBOX");
  const std::string_view choice = mode == nullptr ? "" : mode;
  if (choice == "never") {
    std::fprintf(stderr,
                 "kvmbox: no /dev/kvm on this host and HVSTACK_KVMBOX=never "
                 "(deploy/setup.sh test's default): tests that need KVM skip; "
                 "HVSTACK_KVMBOX=auto runs them in kvmbox\n");
    return;
  }
  if (in_suite == InSuite::kSkip && choice != "always") {
    std::fprintf(stderr,
                 "kvmbox: no /dev/kvm on this host, and this test is not run "
                 "in kvmbox by default: its scenarios are sized for real KVM "
                 "and outlast their waits under nested TCG (10-50x slower). "
                 "Tests that need KVM skip; HVSTACK_KVMBOX=always runs them "
                 "in kvmbox (tests/kvmbox/README.md)\n");
    return;
  }
  // A target whose main cannot choose (a shared main such as
  // tests/linux:linux_test_main) says why it stays out of the suite here.
  if (const char* why = std::getenv("HVSTACK_KVMBOX_OPT_IN");
      why != nullptr && *why != '\0' && choice != "always") {
    std::fprintf(stderr,
                 "kvmbox: no /dev/kvm on this host, and this test runs in "
                 "kvmbox only with HVSTACK_KVMBOX=always: %s. Tests that need "
                 "KVM skip (tests/kvmbox/README.md)\n",
                 why);
    return;
  }
  const std::string self = SelfPath();
  const std::string script = FindScript(self);
  if (script.empty() || self.empty()) {
    std::fprintf(stderr,
                 "kvmbox: no /dev/kvm here and kvmbox.sh is not in this "
                 "test's runfiles (add //tests/kvmbox to its data): tests "
                 "that need KVM skip\n");
    return;
  }
  // "check" says what is missing (qemu, virtiofsd, root ...).
  std::string check = "'" + script + "' check 2>&1";
  if (FILE* p = ::popen(check.c_str(), "r"); p != nullptr) {
    char why[512] = {};
    size_t n = std::fread(why, 1, sizeof(why) - 1, p);
    int status = ::pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr,
                   "kvmbox: no /dev/kvm here and kvmbox cannot run: %.*s"
                   "tests that need KVM skip\n",
                   static_cast<int>(n), why);
      return;
    }
  }
  std::fprintf(stderr,
               "kvmbox: no /dev/kvm on this host; running %s inside kvmbox "
               "(nested KVM under QEMU/TCG, tests/kvmbox/README.md)\n",
               self.c_str());
  std::fflush(stderr);
  std::vector<std::string> args = {script, "run", "--", self};
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  ::execv(script.c_str(), cargs.data());
  std::fprintf(stderr, "kvmbox: cannot execute %s: %s\n", script.c_str(),
               std::strerror(errno));
  std::exit(125);
}

double TimeScale() {
  if (!InsideKvmbox()) return 1.0;
  if (const char* s = std::getenv("HVSTACK_TIME_SCALE"); s != nullptr) {
    double v = std::atof(s);
    if (v >= 1.0) return v;
  }
  return 10.0;
}

absl::Duration Scaled(absl::Duration d) { return d * TimeScale(); }

}  // namespace kvmbox
