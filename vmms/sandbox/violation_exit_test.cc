#include "vmms/sandbox/violation_exit.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "proto/hvstack/internal/sandbox_violation.h"

namespace sandbox {
namespace {

using hvstack::internal::ParseViolationRecord;
using hvstack::internal::ViolationRecord;

// A wait status as waitpid reports a death by `sig`.
int KilledBy(int sig) { return sig; }

TEST(ViolationExitTest, NamesAndStatuses) {
  EXPECT_EQ(SyscallName(0, SYS_openat), "openat");
  EXPECT_EQ(SyscallName(0, SYS_execve), "execve");
  EXPECT_EQ(SyscallName(0, 99999), "syscall 99999");
  EXPECT_EQ(DescribeSandboxExit(0, ""), std::nullopt);  // exit 0
  EXPECT_EQ(DescribeSandboxExit(KilledBy(SIGKILL), ""), std::nullopt);
  EXPECT_EQ(ParseViolationRecord("short"), std::nullopt);
  std::string garbage(sizeof(ViolationRecord), 'x');
  EXPECT_EQ(ParseViolationRecord(garbage), std::nullopt);
}

TEST(ViolationExitTest, NamesTheCallOfAWellFormedRecord) {
  ViolationRecord record = {};
  record.magic = ViolationRecord::kMagic;
  record.syscall_nr = SYS_socket;
  std::string bytes(sizeof(record), '\0');
  std::memcpy(bytes.data(), &record, sizeof(record));
  EXPECT_EQ(DescribeSandboxExit(KilledBy(SIGSYS), bytes),
            "sandbox violation: socket");
  EXPECT_EQ(DescribeSandboxExit(KilledBy(SIGSYS), ""),
            "sandbox violation: unknown system call");
}

}  // namespace
}  // namespace sandbox
