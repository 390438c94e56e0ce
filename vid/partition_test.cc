#include "vid/partition.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
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

TEST(PartitionTest, VpThreadStartHookRunsOnEveryVpThreadBeforeTheGuest) {
  SKIP_WITHOUT_KVM();
  absl::Mutex mu;
  std::vector<uint32_t> seen;
  const std::thread::id caller = std::this_thread::get_id();
  bool on_caller_thread = false;
  absl::StatusOr<TestVm> vm =
      MakeTestVm("guest/hello.elf", "", 16 << 20, 1, [&](uint32_t index) {
        absl::MutexLock lock(&mu);
        seen.push_back(index);
        if (std::this_thread::get_id() == caller) on_caller_thread = true;
        return absl::OkStatus();
      });
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ::testing::ElementsAre(0u));
  EXPECT_FALSE(on_caller_thread);
}

TEST(PartitionTest, FailingVpThreadStartHookCrashesBeforeTheGuestRuns) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm =
      MakeTestVm("guest/hello.elf", "", 16 << 20, 1, [](uint32_t) {
        return absl::PermissionDeniedError("no filter for you");
      });
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kCrashed);
  EXPECT_THAT(outcome->detail,
              HasSubstr("vp0 thread start: no filter for you"));
  EXPECT_EQ(vm->uart->output(), "");
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

TEST(PartitionTest, HaltedVpBlocksInKvmUntilStopped) {
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
  // With the in-kernel irqchip, HLT blocks inside KVM_RUN (no halt exit);
  // the stop's kick signal gets the VP out.
  EXPECT_EQ((*p)->GetVpStats()[0].exits[3], 0u) << "no halt exit";
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
  EXPECT_EQ(Partition::Create({.vcpus = 256, .memory_bytes = 4 << 20}, **kvm)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument)
      << "APIC ids must stay below the xAPIC broadcast id";
}

// Captures 32-bit writes to port 0x80.
struct PostPort : PortIoHandler {
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t, uint32_t value) override {
    absl::MutexLock lock(&mu);
    values.push_back(value);
  }
  std::vector<uint32_t> Values() {
    absl::MutexLock lock(&mu);
    return values;
  }
  absl::Mutex mu;
  std::vector<uint32_t> values;
};

// mov dx, 0x604; mov ax, 0x3400; out dx, ax; hlt -- the same bytes in 32- and
// 64-bit mode.
const std::vector<uint8_t> kPowerOff = {0x66, 0xBA, 0x04, 0x06, 0x66, 0xB8,
                                        0x00, 0x34, 0x66, 0xEF, 0xF4};

std::vector<uint8_t> Concat(std::vector<uint8_t> a,
                            const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(PartitionTest, ProtectedModeEntryFollowsThePvhAbi) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  PostPort post;
  testing::PowerOffPort power(p->get());
  ASSERT_TRUE((*p)->io().RegisterPortIo("post", 0x80, 4, &post).ok());
  ASSERT_TRUE((*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  // 32-bit code: out 0x80, ebx; mov eax, cr0; out 0x80, eax; mov eax, esp...
  // then the CS selector and the data selector.
  const std::vector<uint8_t> code = Concat(
      {
          0x89, 0xD8,                    // mov eax, ebx
          0xE7, 0x80,                    // out 0x80, eax
          0x0F, 0x20, 0xC0,              // mov eax, cr0
          0xE7, 0x80,                    // out 0x80, eax
          0x8C, 0xC8,                    // mov eax, cs
          0xE7, 0x80,                    // out 0x80, eax
          0x8C, 0xD8,                    // mov eax, ds
          0xE7, 0x80,                    // out 0x80, eax
          0xB8, 0x78, 0x56, 0x34, 0x12,  // mov eax, 0x12345678 (32-bit imm)
          0xE7, 0x80,                    // out 0x80, eax
      },
      kPowerOff);
  ASSERT_TRUE((*p)->memory().Write(0x100000, code).ok());
  ASSERT_TRUE((*p)->PrepareBootVpProtectedMode(0x100000, 0x6000).ok());
  absl::StatusOr<kvm_sregs> sregs = (*p)->vp(0).GetSregs();
  ASSERT_TRUE(sregs.ok());
  EXPECT_EQ(sregs->cs.db, 1);
  EXPECT_EQ(sregs->cs.l, 0);
  EXPECT_EQ(sregs->cs.limit, 0xFFFFFFFFu);
  EXPECT_EQ(sregs->tr.limit, 0x67u);
  EXPECT_EQ(sregs->tr.type, 11);
  EXPECT_EQ(sregs->cr4, 0u);
  EXPECT_EQ(sregs->efer, 0u);
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  std::vector<uint32_t> v = post.Values();
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0], 0x6000u) << "EBX = start_info";
  EXPECT_EQ(v[1] & 0x80000001u, 1u) << "CR0: PE set, PG clear";
  EXPECT_EQ(v[2], hvcore::kBootCodeSelector);
  EXPECT_EQ(v[3], hvcore::kBootDataSelector);
  EXPECT_EQ(v[4], 0x12345678u) << "32-bit operand size by default";
}

TEST(PartitionTest, TripleFaultIsARebootAndResetRunsAgain) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 2, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  PostPort post;
  testing::PowerOffPort power(p->get());
  ASSERT_TRUE((*p)->io().RegisterPortIo("post", 0x80, 4, &post).ok());
  ASSERT_TRUE((*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  absl::StatusOr<InterruptLine> line = (*p)->GetInterruptLine(4);
  ASSERT_TRUE(line.ok());
  // First boot: out 0x80 <- 1, then ud2 with the empty boot IDT.
  ASSERT_TRUE((*p)->memory()
                  .Write(0x100000, std::vector<uint8_t>{0xB0, 0x01, 0xE6, 0x80,
                                                        0x0F, 0x0B})
                  .ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kReboot) << Describe(*outcome);
  EXPECT_THAT(outcome->detail, HasSubstr("triple fault"));

  EXPECT_EQ((*p)->Reset().code(), absl::StatusCode::kOk);
  // RAM is zero again; registrations and interrupt lines survive.
  absl::StatusOr<uint8_t> byte = (*p)->memory().ReadObject<uint8_t>(0x100000);
  ASSERT_TRUE(byte.ok());
  EXPECT_EQ(*byte, 0);
  EXPECT_TRUE(line->Pulse().ok());
  EXPECT_EQ((*p)->Run().status().code(), absl::StatusCode::kFailedPrecondition)
      << "the boot VP must be prepared again";
  ASSERT_TRUE((*p)->memory()
                  .Write(0x100000, Concat({0xB0, 0x02, 0xE6, 0x80}, kPowerOff))
                  .ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  outcome = (*p)->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  EXPECT_EQ(post.Values(), (std::vector<uint32_t>{1, 2}));
}

TEST(PartitionTest, RequestRebootEndsRunWithReboot) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/spin.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::thread rebooter([&] {
    EXPECT_TRUE(vm->uart->WaitFor("spinning", absl::Seconds(30)));
    vm->partition->RequestReboot("i8042 reset line");
  });
  absl::StatusOr<RunOutcome> outcome = vm->partition->Run();
  rebooter.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kReboot);
  EXPECT_EQ(outcome->detail, "i8042 reset line");
  EXPECT_EQ(RunOutcomeKindName(outcome->kind), "reboot");
}

TEST(PartitionTest, InterruptApisCheckTheirArguments) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 1, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE((*p)->SetIrqLine(4, true).ok());
  EXPECT_TRUE((*p)->SetIrqLine(4, false).ok());
  EXPECT_TRUE((*p)->SetIrqLine(23, true).ok());
  EXPECT_EQ((*p)->SetIrqLine(24, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*p)->GetInterruptLine(24).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*p)->SignalMsi(0xFEE00000, 0x30).ok())
      << "accepted even though the guest's LAPIC is not enabled yet";
  EXPECT_EQ((*p)->SignalMsi(0xFED00000, 0x30).code(),
            absl::StatusCode::kInvalidArgument);
  InterruptLine unconnected;
  EXPECT_FALSE(unconnected.connected());
  EXPECT_TRUE(unconnected.Pulse().ok());
}

TEST(PartitionTest, ApplicationProcessorsWaitForInitSipi) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 3, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->vp_count(), 3u);
  absl::StatusOr<uint32_t> bsp = (*p)->vp(0).GetMpState();
  absl::StatusOr<uint32_t> ap = (*p)->vp(2).GetMpState();
  ASSERT_TRUE(bsp.ok() && ap.ok());
  EXPECT_EQ(*bsp, uint32_t{KVM_MP_STATE_RUNNABLE});
  EXPECT_EQ(*ap, uint32_t{KVM_MP_STATE_UNINITIALIZED});
  // The BSP powers off at once; the APs, blocked in KVM_RUN, are kicked out.
  ASSERT_TRUE((*p)->memory().Write(0x100000, kPowerOff).ok());
  testing::PowerOffPort power(p->get());
  ASSERT_TRUE((*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
}

TEST(PartitionTest, InitialMsrs) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 2, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<uint64_t> tscs;
  for (uint32_t i = 0; i < 2; ++i) {
    hvcore::VirtualProcessor& vp = (*p)->vp(i);
    absl::StatusOr<uint64_t> misc = vp.GetMsr(0x1A0);
    ASSERT_TRUE(misc.ok()) << misc.status();
    EXPECT_EQ(*misc & 1, 1u) << "fast strings";
    absl::StatusOr<uint64_t> pat = vp.GetMsr(0x277);
    ASSERT_TRUE(pat.ok()) << pat.status();
    EXPECT_EQ(*pat, 0x0007040600070406u);
    absl::StatusOr<uint64_t> def = vp.GetMsr(0x2FF);
    ASSERT_TRUE(def.ok()) << def.status();
    EXPECT_EQ(*def, 0x806u) << "MTRRs enabled, default write-back";
    absl::StatusOr<uint64_t> base0 = vp.GetMsr(0x200);
    ASSERT_TRUE(base0.ok()) << base0.status();
    EXPECT_EQ(*base0, 0xC0000000u) << "MMIO hole uncacheable";
    absl::StatusOr<uint64_t> tsc = vp.GetMsr(0x10);
    ASSERT_TRUE(tsc.ok()) << tsc.status();
    tscs.push_back(*tsc);
  }
  // KVM takes a host write of 0 to IA32_TSC as "synchronize the vCPUs' TSCs"
  // (and kvm_pvm does not offset the guest TSC from the host's at all), so
  // check synchronization, not the value: within 1 s of each other.
  uint32_t khz = (*p)->hv_partition().tsc_khz();
  EXPECT_GT(khz, 0u);
  uint64_t diff = tscs[0] > tscs[1] ? tscs[0] - tscs[1] : tscs[1] - tscs[0];
  EXPECT_LT(diff, uint64_t{khz} * 1000) << tscs[0] << " vs " << tscs[1];
}

// What a guest's CPUID instruction returns: the topology is ours; the feature
// filter is honoured unless the host overrides it (kvm_pvm rewrites leaf 1
// ECX and re-adds leaf 0xD at KVM_SET_CPUID2 -- seen on this project's build
// hosts), in which case the partition must say so.
TEST(PartitionTest, GuestCpuidIsOursOrTheOverrideIsReported) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 4, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  PostPort post;
  testing::PowerOffPort power(p->get());
  ASSERT_TRUE((*p)->io().RegisterPortIo("post", 0x80, 4, &post).ok());
  ASSERT_TRUE((*p)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  const std::vector<uint8_t> code = Concat(
      {
          0xB8, 0x01, 0x00, 0x00, 0x00,  // mov eax, 1
          0x31, 0xC9,                    // xor ecx, ecx
          0x0F, 0xA2,                    // cpuid
          0x89, 0xC8,                    // mov eax, ecx
          0xE7, 0x80,                    // out 0x80, eax  (leaf 1 ECX)
          0x89, 0xD8,                    // mov eax, ebx
          0xE7, 0x80,                    // out 0x80, eax  (leaf 1 EBX)
          0xB8, 0x0D, 0x00, 0x00, 0x00,  // mov eax, 0xd
          0x31, 0xC9,                    // xor ecx, ecx
          0x0F, 0xA2,                    // cpuid
          0xE7, 0x80,                    // out 0x80, eax  (leaf 0xD EAX)
      },
      kPowerOff);
  ASSERT_TRUE((*p)->memory().Write(0x100000, code).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  absl::StatusOr<RunOutcome> outcome = (*p)->Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::vector<uint32_t> v = post.Values();
  ASSERT_EQ(v.size(), 3u);
  std::cout << "guest CPUID.1:ECX = 0x" << std::hex << v[0] << ", EBX = 0x"
            << v[1] << ", CPUID.0xD:EAX = 0x" << v[2] << std::dec << "\n";
  EXPECT_EQ((v[1] >> 16) & 0xFF, 4u) << "logical processor count is ours";
  EXPECT_EQ(v[1] >> 24, 0u) << "BSP APIC id";
  EXPECT_NE(v[0] & (1u << 31), 0u) << "hypervisor bit";
  const std::vector<std::string>& kept =
      (*p)->hv_partition().host_kept_hidden_features();
  std::cout << "hidden features the host kept: "
            << (kept.empty() ? "none" : absl::StrJoin(kept, ", ")) << "\n";
  bool xsave_visible = (v[0] & (1u << 26)) != 0;
  EXPECT_EQ(xsave_visible,
            std::find(kept.begin(), kept.end(), "XSAVE") != kept.end())
      << "a visible XSAVE must be reported as a host override";
  EXPECT_EQ(v[2] != 0,
            std::find(kept.begin(), kept.end(),
                      "leaf 0xD (XSAVE state components)") != kept.end());
}

namespace {

// Records every byte the guest writes to its port, in order.
class CounterPort : public PortIoHandler {
 public:
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t, uint32_t value) override {
    absl::MutexLock lock(&mu_);
    values_.push_back(static_cast<uint8_t>(value));
  }
  std::vector<uint8_t> values() const {
    absl::MutexLock lock(&mu_);
    return values_;
  }
  size_t count() const {
    absl::MutexLock lock(&mu_);
    return values_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<uint8_t> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

namespace {

// Counts the guest's writes; the `pause_at`-th one asks for a pause from the
// VP thread itself (as a device reacting to the guest does), without waiting.
class PausingPort : public PortIoHandler {
 public:
  PausingPort(Partition* partition, size_t pause_at)
      : partition_(partition), pause_at_(pause_at) {}
  uint32_t PortRead(uint16_t, uint8_t) override { return 0; }
  void PortWrite(uint16_t, uint8_t, uint32_t) override {
    if (count_.fetch_add(1) + 1 == pause_at_) partition_->RequestPause();
  }
  size_t count() const { return count_.load(); }

 private:
  Partition* const partition_;
  const size_t pause_at_;
  std::atomic<size_t> count_{0};
};

}  // namespace

TEST(PartitionTest, RequestPauseFromAVpThreadHoldsItBeforeTheNextInstruction) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  auto p = Partition::Create({.vcpus = 2, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  // loop: out 0x80,al; jmp loop
  const std::vector<uint8_t> loop = {0xE6, 0x80, 0xEB, 0xFC};
  ASSERT_TRUE((*p)->memory().Write(0x100000, loop).ok());
  PausingPort port(p->get(), 50);
  ASSERT_TRUE((*p)->io().RegisterPortIo("pausing", 0x80, 1, &port).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  (*p)->RequestPause();  // Not running yet: ignored.

  absl::StatusOr<RunOutcome> outcome;
  std::thread runner([&] { outcome = (*p)->Run(); });
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       !(*p)->paused() && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE((*p)->paused()) << "the VP thread's request held nothing";
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(port.count(), 50u) << "the requesting VP ran on after its request";

  (*p)->Resume();
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       port.count() < 100 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GE(port.count(), 100u) << "Resume did not let the guest run on";
  (*p)->RequestCrash("guest crashed: test");
  (*p)->RequestStop("too late: the first terminal request wins");
  runner.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kCrashed);
  EXPECT_EQ(outcome->detail, "guest crashed: test");
}

TEST(PartitionTest, PauseHoldsEveryVpAndResumeContinuesWhereTheGuestWas) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  // Two VPs: the AP sits in KVM_RUN waiting for INIT/SIPI and must be held
  // too.
  auto p = Partition::Create({.vcpus = 2, .memory_bytes = 4 << 20}, **kvm);
  ASSERT_TRUE(p.ok()) << p.status();
  // xor eax,eax; loop: inc eax; out 0x80,al; jmp loop
  const std::vector<uint8_t> counter = {0x31, 0xC0, 0xFF, 0xC0,
                                        0xE6, 0x80, 0xEB, 0xFA};
  ASSERT_TRUE((*p)->memory().Write(0x100000, counter).ok());
  CounterPort port;
  ASSERT_TRUE((*p)->io().RegisterPortIo("counter", 0x80, 1, &port).ok());
  ASSERT_TRUE((*p)->PrepareBootVp(0x100000).ok());
  EXPECT_EQ((*p)->Pause().code(), absl::StatusCode::kFailedPrecondition);

  absl::StatusOr<RunOutcome> outcome;
  std::thread runner([&] { outcome = (*p)->Run(); });
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       port.count() < 100 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(port.count(), 100u);

  absl::Time asked = absl::Now();
  absl::Status paused = (*p)->Pause();
  absl::Duration pause_latency = absl::Now() - asked;
  ASSERT_TRUE(paused.ok()) << paused;
  EXPECT_TRUE((*p)->paused());
  EXPECT_TRUE((*p)->Pause().ok());  // Again: no-op.
  const size_t held_at = port.count();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(port.count(), held_at) << "a VP ran while paused";

  (*p)->Resume();
  EXPECT_FALSE((*p)->paused());
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       port.count() < held_at + 100 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  // Pause again, then stop while paused: Run() ends as usual.
  ASSERT_TRUE((*p)->Pause().ok());
  (*p)->RequestStop("stop while paused");
  runner.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kStopped);

  // The guest's register kept counting across the pause: every value is the
  // previous one plus one.
  std::vector<uint8_t> values = port.values();
  ASSERT_GT(values.size(), held_at + 50);
  EXPECT_EQ(values[0], 1);
  for (size_t i = 1; i < values.size(); ++i) {
    ASSERT_EQ(values[i], static_cast<uint8_t>(values[i - 1] + 1))
        << "at write " << i << " (pause at " << held_at << ")";
  }
  std::cout << "pause latency (2 VPs): " << absl::FormatDuration(pause_latency)
            << "\n";
}

}  // namespace
}  // namespace vid
