// vid::Partition save and restore (issue 14): //guest:counter, saved while it
// runs on 1, 2 and 4 VPs and restored into a fresh partition (its memory
// loaded eagerly or mapped from the file), goes on from exactly the next
// count on every CPU.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vid/memory_file.h"
#include "vid/partition.h"
#include "vid/test_guest.h"

namespace vid {
namespace {

using testing::CaptureUart;
using ::testing::HasSubstr;
using testing::MakeTestVm;
using testing::PowerOffPort;
using testing::TestVm;

#define SKIP_WITHOUT_KVM()                                         \
  do {                                                             \
    if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) { \
      GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "   \
                   << strerror(errno) << ")";                      \
    } else {                                                       \
      ::close(fd);                                                 \
    }                                                              \
  } while (0)

constexpr uint64_t kMemory = 16 << 20;
constexpr SaveId kId = {7, 7, 7};

int TempFile() {
  std::string path =
      std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
      "/memXXXXXX";
  int fd = ::mkstemp(path.data());
  ::unlink(path.c_str());
  return fd;
}

// Per CPU, the register counts printed on complete lines, in order; fails the
// test on a line whose register and memory counts differ.
std::map<uint32_t, std::vector<uint64_t>> Counts(const std::string& out) {
  std::map<uint32_t, std::vector<uint64_t>> counts;
  std::vector<absl::string_view> lines = absl::StrSplit(out, "\r\n");
  lines.pop_back();  // the line the stop cut short, if any
  for (absl::string_view line : lines) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    if (w.size() != 7 || w[0] != "counter:" || w[1] != "cpu") continue;
    uint32_t cpu;
    uint64_t reg, mem;
    if (!absl::SimpleAtoi(w[2], &cpu) || !absl::SimpleAtoi(w[4], &reg) ||
        !absl::SimpleAtoi(w[6], &mem)) {
      ADD_FAILURE() << "bad line: " << line;
      continue;
    }
    EXPECT_EQ(reg, mem) << line;
    counts[cpu].push_back(reg);
  }
  return counts;
}

struct Running {
  std::thread thread;
  absl::StatusOr<RunOutcome> outcome = absl::UnknownError("not run");
};

void Start(Partition& p, Running& r) {
  r.thread = std::thread([&] { r.outcome = p.Run(); });
}

class SaveRestoreTest
    : public ::testing::TestWithParam<std::tuple<uint32_t, bool>> {};

TEST_P(SaveRestoreTest, RestoredGuestContinuesWithTheNextCount) {
  SKIP_WITHOUT_KVM();
  const auto [vcpus, map] = GetParam();
  absl::StatusOr<TestVm> a =
      MakeTestVm("guest/counter.elf", "delay=200", kMemory, vcpus);
  ASSERT_TRUE(a.ok()) << a.status();
  Running ra;
  Start(*a->partition, ra);
  ASSERT_TRUE(a->uart->WaitFor(
      absl::StrCat("counter: ", vcpus, " CPUs counting"), absl::Seconds(60)));
  // Every CPU has counted a little (the spinlock is not fair).
  for (uint32_t cpu = 0; cpu < vcpus; ++cpu) {
    ASSERT_TRUE(a->uart->WaitFor(absl::StrCat("cpu ", cpu, " reg 5 "),
                                 absl::Seconds(60)));
  }
  ASSERT_TRUE(a->partition->Pause().ok());
  absl::StatusOr<hvstack::saved::VidPartitionState> state =
      a->partition->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  const int fd = TempFile();
  ASSERT_GE(fd, 0);
  absl::StatusOr<MemorySaveStats> stats = a->partition->SaveMemory(fd, kId);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_LT(stats->pages_written, stats->pages_total);
  a->partition->RequestStop("saved");
  ra.thread.join();
  const std::string before = a->uart->output();

  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok());
  absl::StatusOr<std::unique_ptr<GuestMemory>> memory = LoadMemoryFile(
      fd, kMemory, kId,
      map ? GuestMemory::LoadMode::kMapPrivate : GuestMemory::LoadMode::kEager);
  ASSERT_TRUE(memory.ok()) << memory.status();
  absl::StatusOr<std::unique_ptr<Partition>> b =
      Partition::Restore({.vcpus = vcpus, .memory_bytes = kMemory}, **kvm,
                         *state, *std::move(memory));
  ASSERT_TRUE(b.ok()) << b.status();
  CaptureUart uart;
  PowerOffPort power(b->get());
  ASSERT_TRUE((*b)->io().RegisterPortIo("com1", 0x3F8, 8, &uart).ok());
  ASSERT_TRUE((*b)->io().RegisterPortIo("pm1a", 0x604, 2, &power).ok());
  Running rb;
  Start(**b, rb);
  // ... and every CPU goes on counting after the restore.
  bool more = true;
  for (const auto& [cpu, values] : Counts(before)) {
    more = more && uart.WaitFor(absl::StrCat("cpu ", cpu, " reg ",
                                             values.back() + 3, " "),
                                absl::Seconds(60));
  }
  (*b)->RequestStop("enough");
  rb.thread.join();
  ::close(fd);
  ASSERT_TRUE(more) << uart.output();
  EXPECT_THAT(uart.output(), ::testing::Not(HasSubstr("CPUs counting")));

  const auto counts = Counts(before + uart.output());
  ASSERT_EQ(counts.size(), vcpus) << before << uart.output();
  for (const auto& [cpu, values] : counts) {
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], i + 1) << "cpu " << cpu << ": no restart, no skip";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(VpsAndLoadModes, SaveRestoreTest,
                         ::testing::Combine(::testing::Values(1u, 2u, 4u),
                                            ::testing::Bool()));

TEST(SaveRestoreConfigTest, RestoreRefusesAnotherShape) {
  SKIP_WITHOUT_KVM();
  absl::StatusOr<TestVm> a = MakeTestVm("guest/counter.elf", "", kMemory, 1);
  ASSERT_TRUE(a.ok());
  absl::StatusOr<hvstack::saved::VidPartitionState> state =
      a->partition->SaveState();  // not running: VPs read on this thread
  ASSERT_TRUE(state.ok()) << state.status();
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  ASSERT_TRUE(kvm.ok());
  auto restore = [&](PartitionConfig config) {
    absl::StatusOr<std::unique_ptr<GuestMemory>> m =
        GuestMemory::Create(config.memory_bytes);
    return Partition::Restore(config, **kvm, *state, *std::move(m)).status();
  };
  EXPECT_THAT(restore({.vcpus = 2, .memory_bytes = kMemory}).message(),
              HasSubstr("vcpus: the saved VM had 1"));
  EXPECT_THAT(restore({.vcpus = 1, .memory_bytes = 2 * kMemory}).message(),
              HasSubstr("memory: the saved VM had 16 MiB"));
  EXPECT_THAT(
      restore({.vcpus = 1, .memory_bytes = kMemory, .enlightened = true})
          .message(),
      HasSubstr("enlightenments"));
}

}  // namespace
}  // namespace vid
