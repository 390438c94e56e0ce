// Real-KVM tests of the hardware core with guest/ programs: SMP start-up
// through the in-kernel LAPIC (INIT/SIPI), device interrupts through the
// IOAPIC and MSIs reaching IDT handlers, and int3 completion.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vid/partition.h"
#include "vid/test_guest.h"

namespace vid {
namespace {

using ::testing::HasSubstr;
using testing::MakeTestVm;
using testing::TestVm;

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

// Runs `vm` with a watchdog: a guest that never ends is stopped after
// `timeout` (and the test then fails on the outcome).
absl::StatusOr<RunOutcome> RunWithWatchdog(TestVm& vm, absl::Duration timeout) {
  absl::Notification done;
  std::thread watchdog([&] {
    if (!done.WaitForNotificationWithTimeout(timeout))
      vm.partition->RequestStop("test watchdog: guest did not finish");
  });
  absl::StatusOr<RunOutcome> outcome = vm.partition->Run();
  done.Notify();
  watchdog.join();
  return outcome;
}

class SmpTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(SmpTest, EveryApplicationProcessorComesOnline) {
  SKIP_WITHOUT_KVM();
  const uint32_t n = GetParam();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/smp.elf", "", 16 << 20, n);
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Time start = absl::Now();
  absl::StatusOr<RunOutcome> outcome = RunWithWatchdog(*vm, absl::Seconds(60));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::string out = vm->uart->output();
  std::cout << "--- " << n << " VPs, "
            << absl::FormatDuration(absl::Now() - start) << ":\n"
            << out;
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  EXPECT_THAT(out, HasSubstr(absl::StrCat("expecting ", n, " CPUs")))
      << "CPUID leaf 1 EBX[23:16] = VP count";
  for (uint32_t id = 1; id < n; ++id) {
    EXPECT_THAT(out, HasSubstr(absl::StrCat("AP ", id, " online\r\n")))
        << "APIC id " << id;
  }
  EXPECT_THAT(out, ::testing::Not(HasSubstr("differs")));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("all ", n, " CPUs online\r\n")));
}

INSTANTIATE_TEST_SUITE_P(VpCounts, SmpTest, ::testing::Values(1u, 2u, 4u, 8u));

TEST(GuestInterruptsTest, Int3IoApicIrqMsiAndTimersReachIdtHandlers) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> vm = MakeTestVm("guest/interrupts.elf", "");
  ASSERT_TRUE(vm.ok()) << vm.status();
  Partition* p = vm->partition.get();
  absl::StatusOr<InterruptLine> com1_irq = p->GetInterruptLine(4);
  ASSERT_TRUE(com1_irq.ok());
  std::thread device([&] {
    // The guest waits in hlt for each; nothing else would wake it.
    if (!vm->uart->WaitFor("irq: ready\r\n", absl::Seconds(30))) return;
    EXPECT_TRUE(com1_irq->Pulse().ok());
    if (!vm->uart->WaitFor("msi: ready\r\n", absl::Seconds(30))) return;
    EXPECT_TRUE(p->SignalMsi(0xFEE00000, 0x31).ok());
  });
  absl::StatusOr<RunOutcome> outcome = RunWithWatchdog(*vm, absl::Seconds(60));
  device.join();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::string out = vm->uart->output();
  std::cout << out;
  EXPECT_EQ(outcome->kind, RunOutcome::Kind::kPowerOff) << Describe(*outcome);
  EXPECT_THAT(out, HasSubstr("int3: handler ran 1 time(s), saved rip is the "
                             "next instruction\r\nint3: resumed\r\n"));
  EXPECT_THAT(out, HasSubstr("irq: vector 0x24 received\r\n"));
  EXPECT_THAT(out, HasSubstr("msi: vector 0x31 received\r\n"));
  EXPECT_THAT(out, HasSubstr("timer: lapic timer interrupt received\r\n"));
  EXPECT_THAT(out,
              HasSubstr("timer: pit interrupt received on ioapic pin 2\r\n"))
      << "the in-kernel PIT must arrive on IOAPIC pin 2 (GSI routing)";
  std::vector<VpStats> stats = p->GetVpStats();
  std::cout << "completed instructions (int3): "
            << stats[0].completed_instructions << "\n";
}

}  // namespace
}  // namespace vid
