// Guest integration through the public API, end to end: vmctl -> vmms ->
// vmwp (VMBus + IC VSPs) -> guest/enlightened. `vmctl show` reports the
// heartbeat, the VMBus version, the open integration services and the
// guest's OS / host name; `vmctl kvp` sets, reads and lists key-value pairs
// that the guest itself answers; the error paths keep vmctl's exit codes.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

class GuestIntegrationTest : public VmmsTest {};

TEST_F(GuestIntegrationTest, ShowHeartbeatAndKvpThroughVmctl) {
  ASSERT_EQ(Vmctl({"create", "gi", "--kernel", Guest("enlightened"), "--memory",
                   "64"})
                .exit_code,
            0);
  // Not running: nothing to ask.
  CommandResult off = Vmctl({"kvp", "list", "gi"});
  EXPECT_EQ(off.exit_code, 3) << off.err;
  EXPECT_THAT(off.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(off.err, HasSubstr("start it"));
  EXPECT_THAT(Vmctl({"show", "gi"}).out,
              ::testing::Not(HasSubstr("heartbeat:")));

  CommandResult start = Vmctl({"start", "gi"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  const absl::Time started = absl::Now();
  std::string show;
  while (absl::Now() - started < absl::Seconds(30)) {
    show = Vmctl({"show", "gi"}).out;
    if (show.find("heartbeat: OK") != std::string::npos &&
        show.find("guest_os:") != std::string::npos)
      break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::cerr << "vmctl show said heartbeat OK " << absl::Now() - started
            << " after vmctl start returned\n";
  EXPECT_THAT(show, ::testing::ContainsRegex("heartbeat: OK \\(seq [0-9]+\\)"));
  EXPECT_THAT(show, HasSubstr("vmbus: 5.3\n"));
  EXPECT_THAT(
      show, HasSubstr("integration_services: heartbeat shutdown timesync kvp"));
  EXPECT_THAT(show, HasSubstr("guest_os: UnixHv\n"));
  EXPECT_THAT(show, HasSubstr("guest_host_name: enlightened.unixhv\n"));
  // The first answer is an event (KIND_GUEST_HEARTBEAT), state unchanged.
  std::string events;
  for (int i = 0; i < 100; ++i) {
    events = Vmctl({"events"}).out;
    if (events.find("guest_heartbeat") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(events, ::testing::ContainsRegex(
                          "guest_heartbeat +running +heartbeat OK \\(seq "));
  nlohmann::json json = Show("gi");
  EXPECT_EQ(json["integration"]["heartbeat"], "HEARTBEAT_OK");

  CommandResult set = Vmctl({"kvp", "set", "gi", "role", "web server"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  CommandResult get = Vmctl({"kvp", "get", "gi", "role"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "web server\n");
  CommandResult list = Vmctl({"kvp", "list", "gi"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("role=web server\n"));
  CommandResult intrinsic = Vmctl({"kvp", "list", "gi", "--pool", "auto"});
  EXPECT_EQ(intrinsic.exit_code, 0) << intrinsic.err;
  EXPECT_THAT(intrinsic.out, HasSubstr("OSName=UnixHv\n"));

  CommandResult missing = Vmctl({"kvp", "get", "gi", "no-such-key"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("no key \"no-such-key\""));
  CommandResult bad_pool = Vmctl({"kvp", "list", "gi", "--pool", "bogus"});
  EXPECT_EQ(bad_pool.exit_code, 4) << bad_pool.err;
  CommandResult guest_owned =
      Vmctl({"kvp", "set", "gi", "OSName", "x", "--pool", "auto"});
  EXPECT_EQ(guest_owned.exit_code, 4) << guest_owned.err;
  EXPECT_THAT(guest_owned.err, HasSubstr("belong to the guest"));

  // A graceful shutdown through the shutdown IC (ShutdownVm; vmctl has no
  // command for it yet): the recorded reason says so.
  auto stub = hvstack::v1::VmService::NewStub(
      grpc::CreateChannel(absl::StrCat("unix:", vmms_->socket_path()),
                          grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  hvstack::v1::ShutdownVmRequest shutdown;
  shutdown.set_name("gi");
  shutdown.set_fallback(hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL);
  hvstack::v1::Vm vm;
  grpc::Status s = stub->ShutdownVm(&ctx, shutdown, &vm);
  ASSERT_TRUE(s.ok()) << s.error_message();
  nlohmann::json down = WaitForState("gi", "VM_STATE_OFF");
  EXPECT_EQ(down.value("stateReason", ""),
            "guest shut down: shutdown requested by user");
}

// --no-enlightenments: the worker gets no Hyper-V interface and no VMBus.
TEST_F(GuestIntegrationTest, NoEnlightenmentsMeansNoIntegration) {
  ASSERT_EQ(Vmctl({"create", "plain", "--kernel", Guest("spin"), "--memory",
                   "64", "--no-enlightenments"})
                .exit_code,
            0);
  CommandResult start = Vmctl({"start", "plain"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  const std::string show = Vmctl({"show", "plain"}).out;
  EXPECT_THAT(show, HasSubstr("enlightenments: off\n"));
  EXPECT_THAT(show, HasSubstr("heartbeat: - (not enlightened)\n"));
  CommandResult kvp = Vmctl({"kvp", "list", "plain"});
  EXPECT_EQ(kvp.exit_code, 3) << kvp.err;
  EXPECT_THAT(kvp.err, HasSubstr("not enlightened"));
  EXPECT_EQ(Vmctl({"stop", "plain"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
