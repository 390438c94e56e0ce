// //guest:enlightened and //guest:hostile_vmbus on a real KVM partition with
// the host's synthetic interface (vid, hvcore/hyperv), VMBus server
// (vmwp/vmbus) and IC providers (vmwp/vsp/ic) wired in-process, the way the
// worker composes them but without processes, gRPC or vmms: a fast check of
// the guest library against the real host stack. The end-to-end versions
// (through vmctl, vmms and vmwp) are tests/integration/enlightened_test.cc
// and hostile_vmbus_test.cc.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/kvm_system.h"
#include "tests/kvmbox/kvmbox.h"
#include "vid/partition.h"
#include "vid/test_guest.h"
#include "vmwp/vmbus/hvcore_bridge.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/vid_guest_pages.h"
#include "vmwp/vsp/ic/ic_services.h"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class EnlightenedKvm : public ::testing::Test {
 protected:
  void SetUp() override {
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) GTEST_SKIP() << "needs /dev/kvm";
    close(fd);
  }

  // Builds the partition, the VMBus server and the four IC providers, and
  // runs the guest on its own thread.
  void Start(const std::string& elf, const std::string& cmdline = "") {
    auto kvm = hvcore::KvmSystem::Open();
    ASSERT_TRUE(kvm.ok()) << kvm.status();
    auto p = vid::Partition::Create(
        {.vcpus = 1, .memory_bytes = 16 << 20, .enlightened = true}, **kvm);
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
    ASSERT_NE(hv, nullptr);
    pages_ = std::make_unique<vmbus::VidGuestPages>(partition_->memory());
    port_ = std::make_unique<vmbus::HvPartitionSynicPort>(*hv);
    server_ = std::make_unique<vmbus::VmbusServer>(
        *pages_, *port_, vmbus::VmbusServer::Options{});
    ASSERT_TRUE(
        vmbus::RegisterVmbusMessagePorts(hv->connections(), *server_).ok());
    auto instance = [](uint8_t n) {
      return vmbus::Guid::FromFields(0x1000 + n, 0, 0,
                                     {0, 0, 0, 0, 0, 0, 0, n});
    };
    heartbeat_ = std::make_unique<vsp::ic::HeartbeatIc>(
        instance(1),
        vsp::ic::HeartbeatMonitor::Options{.interval = absl::Milliseconds(1)});
    shutdown_ = std::make_unique<vsp::ic::ShutdownIc>(instance(2));
    timesync_ = std::make_unique<vsp::ic::TimeSyncIc>(
        instance(3), [hv] { return hv->ReadMsr(0, 0x40000020).value; });
    kvp_ = std::make_unique<vsp::ic::KvpIc>(instance(4));
    for (vmbus::Vsp* vsp : std::initializer_list<vmbus::Vsp*>{
             heartbeat_.get(), shutdown_.get(), timesync_.get(), kvp_.get()}) {
      auto relid = server_->AddVsp(vsp);
      ASSERT_TRUE(relid.ok()) << relid.status();
      ASSERT_TRUE(
          vmbus::RegisterChannelEventPort(hv->connections(), *server_, *relid)
              .ok());
    }
    runner_ = std::thread([this] {
      absl::StatusOr<vid::RunOutcome> r = partition_->Run();
      if (r.ok()) {
        outcome_ = *r;
      } else {
        outcome_.kind = vid::RunOutcome::Kind::kCrashed;
        outcome_.detail = r.status().ToString();
      }
    });
  }

  void TearDown() override {
    if (runner_.joinable()) {
      partition_->RequestStop();
      runner_.join();
    }
    if (HasFailure()) std::cerr << "guest console:\n" << uart_.output();
  }

  // Sends heartbeats until the guest answered one; returns how long it took.
  absl::Duration WaitForHeartbeat(absl::Duration timeout) {
    const absl::Time start = absl::Now();
    absl::Time last_request = absl::InfinitePast();
    while (absl::Now() - start < kvmbox::Scaled(timeout)) {
      // One request at a time, with time to answer it: a Tick past the 1 ms
      // interval supersedes the outstanding request, and under nested TCG a
      // round trip takes longer than the 10 ms this loop used to wait.
      if (absl::Now() - last_request >
          kvmbox::Scaled(absl::Milliseconds(100))) {
        (void)heartbeat_->Tick();
        last_request = absl::Now();
      }
      if (heartbeat_->status() == vsp::ic::HeartbeatStatus::kOk) {
        return absl::Now() - start;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    return absl::InfiniteDuration();
  }

  bool WaitForRunEnd(absl::Duration timeout) {
    if (!uart_.WaitFor("powering off", timeout) &&
        !uart_.WaitFor("hostile: done", absl::ZeroDuration())) {
      return false;
    }
    runner_.join();
    return true;
  }

  vid::testing::CaptureUart uart_;
  std::unique_ptr<vid::testing::PowerOffPort> power_;
  std::unique_ptr<vid::Partition> partition_;
  std::unique_ptr<vmbus::VidGuestPages> pages_;
  std::unique_ptr<vmbus::HvPartitionSynicPort> port_;
  // The VSPs are declared before the server so that they outlive it: its
  // destructor closes the channels still open (a test that failed midway),
  // calling into them.
  std::unique_ptr<vsp::ic::HeartbeatIc> heartbeat_;
  std::unique_ptr<vsp::ic::ShutdownIc> shutdown_;
  std::unique_ptr<vsp::ic::TimeSyncIc> timesync_;
  std::unique_ptr<vsp::ic::KvpIc> kvp_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::thread runner_;
  vid::RunOutcome outcome_;
};

TEST_F(EnlightenedKvm, NegotiatesAnswersEveryIcAndPowersOffOnShutdown) {
  Start("guest/enlightened.elf", "console=ttyS0 hostname=vm-interop");
  ASSERT_TRUE(
      uart_.WaitFor("enlightened: ready", kvmbox::Scaled(absl::Seconds(30))))
      << uart_.output();
  // The line after "ready" (so that "ready" is complete).
  ASSERT_TRUE(uart_.WaitFor("enlightened: heartbeat negotiated",
                            kvmbox::Scaled(absl::Seconds(30))));
  const std::string boot = uart_.output();
  // The guest's own timings of the VMBus steps.
  for (const char* step : {"enlightened: vmbus version",
                           "enlightened: 4 offers", "enlightened: ready"}) {
    const size_t at = boot.find(step);
    if (at != std::string::npos) {
      std::cout << boot.substr(at, boot.find('\r', at) - at) << std::endl;
    }
  }
  EXPECT_THAT(boot, HasSubstr("enlightened: hyper-v detected"));
  EXPECT_THAT(boot, HasSubstr("enlightened: vmbus version 5.3"));
  EXPECT_THAT(boot, HasSubstr("enlightened: 4 offers"));
  for (const char* ic : {"heartbeat", "shutdown", "timesync", "kvp"}) {
    EXPECT_THAT(boot, HasSubstr(std::string("enlightened: opened ") + ic));
  }
  EXPECT_TRUE(server_->connected());

  const absl::Duration heartbeat = WaitForHeartbeat(absl::Seconds(10));
  ASSERT_NE(heartbeat, absl::InfiniteDuration()) << uart_.output();
  std::cout << "first heartbeat answered " << absl::FormatDuration(heartbeat)
            << " after the guest said ready" << std::endl;

  // VMBus round trips as the guest experiences them: host writes a request
  // into the ring and signals (event flag + SINT interrupt), the guest wakes
  // from hlt, answers and signals back (HvSignalEvent), the host drains.
  std::vector<absl::Duration> trips;
  for (int i = 0; i < 50; ++i) {
    const uint64_t before = heartbeat_->sequence();
    absl::SleepFor(absl::Milliseconds(2));  // past the 1 ms interval
    const absl::Time sent = absl::Now();
    ASSERT_TRUE(heartbeat_->Tick().ok());
    while (heartbeat_->sequence() == before &&
           absl::Now() - sent < kvmbox::Scaled(absl::Seconds(5))) {
      absl::SleepFor(absl::Microseconds(50));
    }
    ASSERT_NE(heartbeat_->sequence(), before) << "heartbeat " << i;
    trips.push_back(absl::Now() - sent);
  }
  std::sort(trips.begin(), trips.end());
  std::cout << "heartbeat round trip over VMBus (50): median "
            << absl::FormatDuration(trips[25]) << ", p90 "
            << absl::FormatDuration(trips[45]) << ", min "
            << absl::FormatDuration(trips[0]) << std::endl;

  // Time sync: the host sends a SYNC sample on negotiation.
  std::smatch m;
  std::string out;
  const std::regex sample("time sample (\\d+) .*unix (\\d+)\r\n");
  const absl::Time sample_deadline =
      absl::Now() + kvmbox::Scaled(absl::Seconds(10));
  while (absl::Now() < sample_deadline && !std::regex_search(out, m, sample)) {
    absl::SleepFor(absl::Milliseconds(10));
    out = uart_.output();
  }
  ASSERT_TRUE(std::regex_search(out, m, sample)) << out;
  const int64_t unix_seconds = std::stoll(m[2]);
  EXPECT_LT(std::abs(unix_seconds - absl::ToUnixSeconds(absl::Now())), 120)
      << "the sample is the host's wall clock";

  // KVP: the intrinsic pool was scanned on negotiation; a host SET arrives.
  const absl::Time deadline = absl::Now() + kvmbox::Scaled(absl::Seconds(10));
  while (kvp_->pool(vsp::ic::KvpPool::kAuto).size() < 8 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  auto intrinsic = kvp_->pool(vsp::ic::KvpPool::kAuto);
  EXPECT_EQ(intrinsic["OSName"], "UnixHv");
  EXPECT_EQ(intrinsic["FullyQualifiedDomainName"], "vm-interop");
  ASSERT_TRUE(kvp_->Enqueue({vsp::ic::KvpOperation::kSet,
                             vsp::ic::KvpPool::kExternal, "color", "blue"})
                  .ok());
  EXPECT_TRUE(uart_.WaitFor("enlightened: kvp set pool 0: color = blue",
                            kvmbox::Scaled(absl::Seconds(10))));

  vsp::ic::ShutdownRequest request;
  request.reason_code = 0x80040001;
  request.message = "test over";
  ASSERT_TRUE(shutdown_->Request(request).ok());
  ASSERT_TRUE(WaitForRunEnd(kvmbox::Scaled(absl::Seconds(30))))
      << uart_.output();
  EXPECT_EQ(outcome_.kind, vid::RunOutcome::Kind::kPowerOff) << outcome_.detail;
  EXPECT_THAT(uart_.output(),
              HasSubstr("enlightened: shutdown requested: flags 0 reason "
                        "0x80040001 message \"test over\""));
  EXPECT_THAT(uart_.output(), HasSubstr("enlightened: vmbus unloaded"));
  EXPECT_FALSE(server_->connected());
  EXPECT_EQ(server_->gpadl_count(), 0u);
  ASSERT_TRUE(shutdown_->last_result().has_value());
  EXPECT_TRUE(shutdown_->last_result()->ok());
}

TEST_F(EnlightenedKvm, HostileGuestGetsErrorsAndTheHostKeepsServing) {
  Start("guest/hostile_vmbus.elf");
  ASSERT_TRUE(uart_.WaitFor("hostile: done", kvmbox::Scaled(absl::Seconds(60))))
      << uart_.output();
  runner_.join();
  EXPECT_EQ(outcome_.kind, vid::RunOutcome::Kind::kPowerOff) << outcome_.detail;
  const std::string out = uart_.output();
  std::cout << out;
  EXPECT_THAT(out, HasSubstr("hostile: done, 0 unexpected"));
  EXPECT_THAT(out, Not(HasSubstr("UNEXPECTED")));
  EXPECT_THAT(out, HasSubstr("hostile: after the garbage: open shutdown "
                             "cleanly: status 0x0000 (expected 0x0000) ok"));
  EXPECT_GT(server_->dropped_messages(), 5u);
}

// Older VMBus protocols, as older Linux guests speak them: before 5.0 the
// guest sends INITIATE_CONTACT on connection 1 with an interrupt page, and
// uses connection 1 for everything after.
class OlderProtocol : public EnlightenedKvm,
                      public ::testing::WithParamInterface<const char*> {};

TEST_P(OlderProtocol, ConnectsAnswersHeartbeatsAndShutsDown) {
  Start("guest/enlightened.elf", std::string("vmbus_max=") + GetParam());
  ASSERT_TRUE(uart_.WaitFor("enlightened: heartbeat negotiated",
                            kvmbox::Scaled(absl::Seconds(30))))
      << uart_.output();
  EXPECT_THAT(uart_.output(), HasSubstr(std::string("enlightened: vmbus "
                                                    "version ") +
                                        GetParam() + " ("));
  EXPECT_EQ(server_->version() >> 16, GetParam()[0] - '0');
  ASSERT_NE(WaitForHeartbeat(absl::Seconds(10)), absl::InfiniteDuration());
  ASSERT_TRUE(shutdown_->Request({}).ok());
  ASSERT_TRUE(WaitForRunEnd(kvmbox::Scaled(absl::Seconds(30))))
      << uart_.output();
  EXPECT_EQ(outcome_.kind, vid::RunOutcome::Kind::kPowerOff) << outcome_.detail;
  EXPECT_THAT(uart_.output(), HasSubstr("enlightened: vmbus unloaded"));
}

INSTANTIATE_TEST_SUITE_P(Versions, OlderProtocol,
                         ::testing::Values("5.0", "4.0", "2.4"));

}  // namespace
