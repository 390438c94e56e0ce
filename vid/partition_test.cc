#include "vid/partition.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vid/test_guest.h"

namespace vid {
namespace {

using ::testing::HasSubstr;
using testing::MakeTestVm;
using testing::TestVm;

// Real-KVM tests: skip (saying why) only when /dev/kvm cannot be opened at all.
// A /dev/kvm that opens but fails its checks is a failure, not a skip.
#define SKIP_WITHOUT_KVM()                                               \
  do {                                                                   \
    if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) {       \
      GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "         \
                   << strerror(errno)                                    \
                   << "); load kvm and run as a user with access to it"; \
    } else {                                                             \
      ::close(fd);                                                       \
    }                                                                    \
  } while (0)

std::string Describe(const RunOutcome& o) {
  return absl::StrCat(RunOutcomeKindName(o.kind), ": ", o.detail);
}

TEST(PartitionTest, HelloPrintsBannerWithCommandLineAndPowersOff) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm =
      MakeTestVm("guest/hello.elf", "console=ttyS0 hvstack.test=1");
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Time start = absl::Now();
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  EXPECT_EQ(
      vm->uart->output(),
      "hvstack hello guest\r\ncommand line: console=ttyS0 hvstack.test=1\r\n");

  std::vector<VpStats> stats = vm->partition->GetVpStats();
  ASSERT_EQ(stats.size(), 1u);
  uint64_t port_exits = stats[0].exits[0];
  EXPECT_GT(port_exits,
            50u);  // at least an LSR poll and a THR write per character
  std::cout << "hello: " << port_exits << " port exits, "
            << stats[0].total_exits << " exits in total, "
            << absl::FormatDuration(took) << " ("
            << absl::ToDoubleMicroseconds(took) / stats[0].total_exits
            << " us per exit)\n";
}

TEST(PartitionTest, UnhandledIoReadsAllOnesAndKeepsRunning) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/unhandled_io.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  std::string out = vm->uart->output();
  EXPECT_THAT(out, HasSubstr("port inb: 0xff\r\n"));
  EXPECT_THAT(out, HasSubstr("port inw: 0xffff\r\n"));
  EXPECT_THAT(out, HasSubstr("port inl: 0xffffffff\r\n"));
  EXPECT_THAT(out, HasSubstr("mmio read32: 0xffffffff\r\n"));
  EXPECT_THAT(out, HasSubstr("mmio read64: 0xffffffffffffffff\r\n"));
  EXPECT_THAT(out, HasSubstr("unhandled_io: writes done, still running\r\n"));
  IoDispatcher& io = vm->partition->io();
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kPortRead), 3u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kPortWrite), 2u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kMmioRead), 2u);
  EXPECT_EQ(io.unhandled_count(IoDispatcher::kMmioWrite), 2u);
}

TEST(PartitionTest, BadInstructionCrashesWithInstructionBytes) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/bad_instruction.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kCrashed) << Describe(*outcome);
  EXPECT_THAT(vm->uart->output(),
              HasSubstr("bad_instruction: executing lock cmpxchg16b"));
  std::cout << "bad_instruction outcome: " << Describe(*outcome) << "\n";
  if (vm->uart->output().find("cmpxchg16b ran") == std::string::npos) {
    // This host's emulator rejected the instruction: its bytes must be in the
    // detail.
    EXPECT_THAT(outcome->detail, HasSubstr("emulation failure at rip=0x"));
    EXPECT_THAT(outcome->detail, HasSubstr("bytes f0 48 0f c7"));
  }
}

TEST(PartitionTest, RequestStopFromAnotherThreadStopsSpinningGuest) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/spin.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Time stop_at;
  std::thread stopper([&] {
    ASSERT_TRUE(
        vm->uart->WaitFor("spin: spinning forever\r\n", absl::Seconds(30)));
    absl::SleepFor(absl::Milliseconds(200));  // let it spin inside KVM_RUN
    stop_at = absl::Now();
    vm->partition->RequestStop("test stop");
  });
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  absl::Time returned = absl::Now();
  stopper.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kStopped) << Describe(*outcome);
  EXPECT_EQ(outcome->detail, "test stop");
  absl::Duration latency = returned - stop_at;
  EXPECT_LT(latency, absl::Seconds(1));
  std::cout << "stop latency: " << absl::FormatDuration(latency) << "\n";
}

TEST(PartitionTest, StopWorksEvenIfTheCallerBlocksTheKickSignal) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/spin.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  // VP threads inherit this mask; vid must unblock the kick signal in them.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, hvcore::VpKickSignal());
  pthread_sigmask(SIG_BLOCK, &block, &old);
  std::thread stopper([&] {
    EXPECT_TRUE(vm->uart->WaitFor("spinning", absl::Seconds(30)));
    absl::SleepFor(absl::Milliseconds(100));
    vm->partition->RequestStop("test stop");
  });
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  stopper.join();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kStopped) << Describe(*outcome);
}

TEST(PartitionTest, HaltedVpIsParkedUntilStopped) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  testing::CaptureUart uart;
  ASSERT_TRUE((*p)->io().RegisterPortIo("com1", 0x3F8, 8, &uart).ok());
  const std::vector<uint8_t> code = {
      0x66, 0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
      0xB0, 0x48,              // mov al, 'H'
      0xEE,                    // out dx, al
      0xF4,                    // hlt (interrupts are off: nothing wakes it)
      0xB0, 0x21, 0xEE,        // mov al, '!'; out dx, al  (never reached)
  };
  ASSERT_TRUE((*p)->memory().Write(0x100000, code).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  std::thread stopper([&] {
    EXPECT_TRUE(uart.WaitFor("H", absl::Seconds(30)));
    absl::SleepFor(absl::Milliseconds(100));
    (*p)->RequestStop("halted test");
  });
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  stopper.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kStopped) << Describe(*outcome);
  EXPECT_EQ(uart.output(), "H");
  EXPECT_EQ((*p)->GetVpStats()[0].exits[3], 1u) << "one halt exit";
}

TEST(PartitionTest, MemoryAbove3GiBIsMappedAbove4GiB) {
  SKIP_WITHOUT_KVM();
  // 3 GiB + 64 MiB: the last 64 MiB land at 4 GiB. MAP_NORESERVE keeps this
  // cheap.
  absl::StatusOr<TestVm> vm =
      MakeTestVm("guest/hello.elf", "big", (3ull << 30) + (64ull << 20));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_EQ(vm->partition->memory().regions().size(), 2u);
  EXPECT_EQ(vm->partition->memory().regions()[1].gpa, 4ull << 30);
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  EXPECT_THAT(vm->uart->output(), HasSubstr("command line: big\r\n"));
}

// A measurement more than a check: the cost of one port-I/O exit through vid's
// dispatch (guest OUT -> KVM_EXIT_IO -> IoDispatcher -> handler -> KVM_RUN).
TEST(PartitionTest, PortIoExitCost) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  struct NullPort : PortIoHandler {
    uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
    void PortWrite(uint16_t, uint8_t, uint32_t) override {}
  } null_port;
  testing::PowerOffPort power(p->get());
  ASSERT_TRUE((*p)->io().RegisterPortIo("post", 0x80, 1, &null_port).ok());
  ASSERT_TRUE((*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  constexpr uint32_t kIterations = 20000;
  const std::vector<uint8_t> code = {
      0xB9,
      kIterations & 0xFF,
      (kIterations >> 8) & 0xFF,
      0,
      0,  // mov ecx, N
      0xE6,
      0x80,  // 1: out 0x80, al
      0xFF,
      0xC9,  // dec ecx
      0x75,
      0xFA,  // jnz 1b
      0x66,
      0xBA,
      0x04,
      0x06,  // mov dx, 0x604
      0x66,
      0xB8,
      0x00,
      0x34,  // mov ax, 0x3400
      0x66,
      0xEF,  // out dx, ax
      0xF4,  // hlt
  };
  ASSERT_TRUE((*p)->memory().Write(0x100000, code).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  absl::Time start = absl::Now();
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  VpStats stats = (*p)->GetVpStats()[0];
  EXPECT_EQ(stats.exits[0], kIterations + 1);
  std::cout << "port I/O exit cost: " << stats.exits[0] << " exits in "
            << absl::FormatDuration(took) << " = "
            << absl::ToDoubleMicroseconds(took) / stats.exits[0]
            << " us per exit (incl. 3 emulated guest instructions each)\n";
}

TEST(PartitionTest, StopBeforeRunReturnsImmediately) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/spin.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  vm->partition->RequestStop("early");
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kStopped);
  // Run() is once only.
  EXPECT_EQ(vm->partition->Run().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(PartitionTest, RunWithoutPreparedVpIsAnError) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok());
  auto p = Partition::Create({.vcpus = 2, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->vp_count(), 2u);
  EXPECT_EQ((*p)->Run().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PartitionTest, PrepareBootVpChecksAddresses) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok());
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->PrepareBootVp(8 << 20).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*p)->PrepareBootVp(0x100000, 4 << 20).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*p)->PrepareBootVp(0x100000).ok());
}

TEST(PartitionTest, DevNullAsKvmFdIsFailedPrecondition) {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20},
                             base::ScopedFd(fd));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(p.status().message()),
      HasSubstr(
          "KVM_GET_API_VERSION failed: Inappropriate ioctl for device (is this "
          "really /dev/kvm?)"));
}

TEST(PartitionTest, BadConfigIsInvalidArgument) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok());
  EXPECT_EQ(Partition::Create({.vcpus = 0, .memory_bytes = 4 << 20}, **kvm)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Partition::Create({.vcpus = 1, .memory_bytes = 12345}, **kvm)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vid
