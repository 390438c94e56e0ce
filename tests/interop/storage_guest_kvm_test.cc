// //guest:storage on a real KVM partition with the host's synthetic
// interface, VMBus server and storvsp (a raw image on io_uring, and a
// read-only one) wired in-process as the worker composes them: the UnixHv
// storvsc client against the real host stack. Needs /dev/kvm (skips
// without; on hosts without it run it in the nested-KVM box).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/kvm_system.h"
#include "vid/partition.h"
#include "vid/test_guest.h"
#include "vmwp/vmbus/hvcore_bridge.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/vid_guest_pages.h"
#include "vmwp/vsp/storage/storvsp.h"
#include "vmwp/vsp/storage/uring_backend.h"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kDiskBytes = 8 << 20;  // 16384 blocks

// The guest's pattern (guest/storage.cc).
uint64_t Pattern(uint64_t seed, uint64_t lba, uint64_t i) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (lba << 20) ^ i ^ 0x5A5A0000ull;
}

class StorageKvm : public ::testing::Test {
 protected:
  void SetUp() override {
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) GTEST_SKIP() << "needs /dev/kvm";
    close(fd);
    dir_ = getenv("TEST_TMPDIR");
  }

  std::string Image(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_EQ(::ftruncate(fd, kDiskBytes), 0);
    ::close(fd);
    return path;
  }

  void Start(const std::string& cmdline,
             const std::string& elf = "guest/storage.elf",
             bool second_read_only = true) {
    auto kvm = hvcore::KvmSystem::Open();
    ASSERT_TRUE(kvm.ok()) << kvm.status();
    auto p = vid::Partition::Create(
        {.vcpus = 1, .memory_bytes = 32 << 20, .enlightened = true}, **kvm);
    ASSERT_TRUE(p.ok()) << p.status();
    partition_ = *std::move(p);
    power_ = std::make_unique<vid::testing::PowerOffPort>(partition_.get());
    ASSERT_TRUE(partition_->io().RegisterPortIo("com1", 0x3F8, 8, &uart_).ok());
    ASSERT_TRUE(
        partition_->io().RegisterPortIo("pm1a", 0x604, 2, power_.get()).ok());
    auto entry = vid::testing::LoadElf(vid::testing::RunfilePath(elf),
                                       partition_->memory());
    ASSERT_TRUE(entry.ok()) << entry.status();
    ASSERT_TRUE(
        vid::testing::WriteZeroPage(partition_->memory(), cmdline).ok());
    ASSERT_TRUE(
        partition_->PrepareBootVp(*entry, hvcore::kBootZeroPageAddress).ok());
    hvcore::hyperv::HvPartition* hv = partition_->hyperv();
    pages_ = std::make_unique<vmbus::VidGuestPages>(partition_->memory());
    port_ = std::make_unique<vmbus::HvPartitionSynicPort>(*hv);
    server_ = std::make_unique<vmbus::VmbusServer>(
        *pages_, *port_,
        vmbus::VmbusServer::Options{
            .on_channel_added = [this, hv](uint32_t relid) {
              return vmbus::RegisterChannelEventPort(hv->connections(),
                                                     *server_, relid);
            }});
    ASSERT_TRUE(
        vmbus::RegisterVmbusMessagePorts(hv->connections(), *server_).ok());

    std::vector<vsp::storage::StorageController::Lun> luns;
    for (auto [name, lun, ro] : {std::tuple{"rw.img", 0, false},
                                 std::tuple{"ro.img", 1, second_read_only}}) {
      const std::string path = Image(name);
      if (!ro) rw_path_ = path;
      base::ScopedFd fd(::open(path.c_str(), ro ? O_RDONLY : O_RDWR));
      auto b = vsp::storage::UringFileBackend::Create(
          std::move(fd),
          {.name = path, .size_bytes = kDiskBytes, .read_only = ro});
      ASSERT_TRUE(b.ok()) << b.status();
      vsp::storage::StorageController::Lun l;
      l.lun = static_cast<uint8_t>(lun);
      l.backend = *std::move(b);
      l.properties.serial = std::string("interop-") + name;
      luns.push_back(std::move(l));
    }
    auto c = vsp::storage::StorageController::Create(
        *pages_,
        {.instance =
             vmbus::Guid::FromFields(0x5C5100, 0, 0, {0, 0, 0, 0, 0, 0, 0, 1})},
        std::move(luns));
    ASSERT_TRUE(c.ok()) << c.status();
    controller_ = *std::move(c);
    ASSERT_TRUE(controller_->Start(nullptr).ok());
    ASSERT_TRUE(server_->AddVsp(controller_->primary()).ok());
    runner_ = std::thread([this] { (void)partition_->Run(); });
  }

  void TearDown() override {
    if (runner_.joinable()) {
      partition_->RequestStop();
      runner_.join();
    }
    // The server first: it closes the channels the guest left open (a guest
    // stopped before it unloaded), calling into the controller's VSPs.
    server_.reset();
    if (controller_) controller_->Stop();
    if (HasFailure()) std::cerr << "guest console:\n" << uart_.output();
  }

  std::string dir_, rw_path_;
  vid::testing::CaptureUart uart_;
  std::unique_ptr<vid::testing::PowerOffPort> power_;
  std::unique_ptr<vid::Partition> partition_;
  std::unique_ptr<vmbus::VidGuestPages> pages_;
  std::unique_ptr<vmbus::HvPartitionSynicPort> port_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<vsp::storage::StorageController> controller_;
  std::thread runner_;
};

TEST_F(StorageKvm, GuestWritesFlushesReadsBackAndIsRefusedOnReadOnly) {
  const absl::Time start = absl::Now();
  Start("seed=7");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(uart_.WaitFor("storage: done", absl::Seconds(120)))
      << uart_.output();
  ASSERT_TRUE(uart_.WaitFor(" errors", absl::Seconds(5)));
  std::cout << "guest storage run: "
            << absl::FormatDuration(absl::Now() - start) << std::endl;
  const std::string out = uart_.output();
  EXPECT_THAT(out, HasSubstr("storage: controller 0: vstor 6.2, max transfer "
                             "1048576"));
  EXPECT_THAT(out, HasSubstr("storage: disk 0:0: 16384 blocks of 512 bytes, "
                             "serial interop-rw.img, write protect off"));
  EXPECT_THAT(out, HasSubstr("storage: disk 0:1: 16384 blocks of 512 bytes, "
                             "serial interop-ro.img, write protect on"));
  EXPECT_THAT(out, HasSubstr("storage: wrote and read back 4 regions"));
  EXPECT_THAT(out, HasSubstr("storage: read past the end refused: sense "
                             "5/21/00 ok"));
  EXPECT_THAT(out, HasSubstr("storage: unknown opcode refused: sense 5/20/00 "
                             "ok"));
  EXPECT_THAT(out, HasSubstr("storage: unmap ok"));
  EXPECT_THAT(out, HasSubstr("storage: write to the read-only disk refused: "
                             "sense 7/27/00 ok"));
  EXPECT_THAT(out, HasSubstr("storage: done, 0 errors"));
  EXPECT_THAT(out, Not(HasSubstr("ERROR")));
  // The host file holds the last region's pattern.
  std::vector<uint64_t> words(512);
  int fd = ::open(rw_path_.c_str(), O_RDONLY);
  const uint64_t lba = kDiskBytes / 512 - 8;
  ASSERT_EQ(::pread(fd, words.data(), 4096, lba * 512), 4096);
  ::close(fd);
  for (uint64_t i = 0; i < 512; ++i) {
    ASSERT_EQ(words[i], Pattern(7, lba, i)) << "word " << i;
  }
  // UNMAP deallocated the third region (guest/storage.cc: LBA blocks / 2):
  // the host file has a hole there, and its allocated size grows again
  // by that region when the host writes it back.
  const off_t unmapped = kDiskBytes / 2;
  fd = ::open(rw_path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, unmapped, SEEK_HOLE), unmapped)
      << "no hole where the guest unmapped";
  struct stat before, after;
  ASSERT_EQ(::fstat(fd, &before), 0);
  std::vector<char> block(4096, 'x');
  ASSERT_EQ(::pwrite(fd, block.data(), block.size(), unmapped), 4096);
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::fstat(fd, &after), 0);
  ::close(fd);
  EXPECT_GE((after.st_blocks - before.st_blocks) * 512, 4096)
      << "UNMAP left the region allocated";
  std::cout << "rw image allocated after the guest's UNMAP: "
            << before.st_blocks * 512
            << " bytes; with the region written back: " << after.st_blocks * 512
            << " bytes" << std::endl;
  vsp::storage::StorageStats s = controller_->stats();
  EXPECT_EQ(s.io_errors, 0u);
  EXPECT_GE(s.bytes_written, 4u * 4096);
  EXPECT_GE(s.unmaps, 1u);
}

TEST_F(StorageKvm, HostileGuestGetsErrorsAndBothDisksKeepWorking) {
  Start("", "guest/hostile_storage.elf", /*second_read_only=*/false);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(uart_.WaitFor("hostile_storage: done", absl::Seconds(120)))
      << uart_.output();
  ASSERT_TRUE(uart_.WaitFor(" unexpected", absl::Seconds(5)));
  const std::string out = uart_.output();
  EXPECT_THAT(out, HasSubstr("hostile_storage: done, 0 unexpected"));
  EXPECT_THAT(out, Not(HasSubstr("UNEXPECTED")));
  EXPECT_THAT(out, HasSubstr("hostile_storage: disk 0 still works: ok"));
  EXPECT_THAT(out, HasSubstr("hostile_storage: disk 1 still works: ok"));
  vsp::storage::StorageStats s = controller_->stats();
  EXPECT_GE(s.invalid_requests, 6u);
  EXPECT_GE(s.bad_packets, 8u);
  std::cout << "hostile run: " << s.packets << " packets, "
            << s.invalid_requests << " invalid SRBs, " << s.bad_packets
            << " bad packets, " << s.dropped_completions
            << " dropped completions" << std::endl;
}

}  // namespace
