// Lifecycle operations with real processes (vmms, vmwp, guests from guest/,
// vmctl): pause/resume holding real VPs, 50 concurrent requests over 10 VMs,
// the restart policy after a SIGKILLed worker, autostart, stats, hostinfo.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_fixture.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;

class OperationsTest : public VmmsTest {
 protected:
  void Create(const std::string& name, const std::string& guest,
              std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"create",     name,       "--kernel",
                                     Guest(guest), "--memory", "16"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Vmctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  nlohmann::json Stats(const std::string& name) {
    CommandResult r = Vmctl({"--json", "stats", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  // Sum of the VPs' CPU time (canonical JSON prints uint64 as strings).
  static uint64_t VpCpuNs(const nlohmann::json& stats) {
    uint64_t total = 0;
    for (const auto& vp : stats.value("vps", nlohmann::json::array()))
      total += std::stoull(vp.value("cpuTimeNs", "0"));
    return total;
  }
  std::unique_ptr<hvstack::v1::VmService::Stub> Stub() {
    return hvstack::v1::VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
  }
};

TEST_F(OperationsTest, PauseHoldsTheVpsAndResumeContinuesTheGuest) {
  Create("spin1", "spin");
  ASSERT_EQ(Vmctl({"start", "spin1"}).exit_code, 0);
  // The guest spins in its VP: CPU time grows.
  absl::SleepFor(absl::Milliseconds(300));
  const uint64_t running = VpCpuNs(Stats("spin1"));
  EXPECT_GT(running, 0u);

  const absl::Time asked = absl::Now();
  CommandResult paused = Vmctl({"pause", "spin1"});
  const absl::Duration pause_cli = absl::Now() - asked;
  ASSERT_EQ(paused.exit_code, 0) << paused.err;
  EXPECT_THAT(paused.out, HasSubstr("state: paused"));
  const uint64_t held = VpCpuNs(Stats("spin1"));
  absl::SleepFor(absl::Milliseconds(500));
  nlohmann::json while_paused = Stats("spin1");
  EXPECT_EQ(while_paused["state"], "VM_STATE_PAUSED");
  // A held VP thread sits on a mutex: not one more nanosecond of CPU.
  EXPECT_EQ(VpCpuNs(while_paused), held) << "a VP ran while paused";

  CommandResult refused = Vmctl({"shutdown", "spin1", "--timeout", "1"});
  EXPECT_EQ(refused.exit_code, 3);
  EXPECT_THAT(refused.err,
              HasSubstr("VM 'spin1' is paused; cannot shut it down: resume it "
                        "first"));

  ASSERT_EQ(Vmctl({"resume", "spin1"}).exit_code, 0);
  // The guest runs again: its VP burns CPU. How much depends on how busy
  // this shared machine is, so wait for 10 ms of it (at most 10 s).
  nlohmann::json resumed;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(100))) {
    resumed = Stats("spin1");
    if (VpCpuNs(resumed) > held + 10'000'000) break;
  }
  EXPECT_EQ(resumed["state"], "VM_STATE_RUNNING");
  EXPECT_GT(VpCpuNs(resumed), held + 10'000'000)
      << "the guest did not continue: " << while_paused.dump() << " then "
      << resumed.dump();
  // The same worker and guest: nothing was restarted.
  EXPECT_EQ(resumed["workerPid"], while_paused["workerPid"]);
  std::cout << "vmctl pause round trip (real worker, 1 VP): "
            << absl::FormatDuration(pause_cli) << "\n";
  EXPECT_EQ(Vmctl({"stop", "spin1"}).exit_code, 0);
}

TEST_F(OperationsTest, FiftyConcurrentRequestsOverTenVmsStayConsistent) {
  constexpr int kVms = 10;
  constexpr int kRequests = 50;
  for (int i = 0; i < kVms; ++i) Create(absl::StrCat("c", i), "idle");
  auto stub = Stub();
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::string> unexpected;
  absl::Mutex mu;
  std::vector<std::thread> threads;
  const absl::Time begin = absl::Now();
  for (int r = 0; r < kRequests; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(r);
      const std::string name = absl::StrCat("c", rng() % kVms);
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
      hvstack::v1::Vm vm;
      grpc::Status s;
      switch (r % 3) {
        case 0: {
          hvstack::v1::StartVmRequest req;
          req.set_name(name);
          s = stub->StartVm(&context, req, &vm);
          break;
        }
        case 1: {
          hvstack::v1::StopVmRequest req;
          req.set_name(name);
          s = stub->StopVm(&context, req, &vm);
          break;
        }
        default: {
          hvstack::v1::GetVmRequest req;
          req.set_name(name);
          s = stub->GetVm(&context, req, &vm);
        }
      }
      if (s.ok()) {
        ++ok;
      } else if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                 s.error_code() == grpc::StatusCode::ABORTED) {
        // Start of a running VM, stop of an off one, a start stopped by a
        // concurrent stop: what the state table says.
        ++refused;
      } else {
        ++other;
        absl::MutexLock lock(&mu);
        unexpected.push_back(absl::StrCat(r, " ", name, ": ", s.error_code(),
                                          " ", s.error_message()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration took = absl::Now() - begin;
  EXPECT_EQ(other.load(), 0) << testing::PrintToString(unexpected);
  EXPECT_EQ(ok + refused + other, kRequests);
  std::cout << kRequests << " concurrent Start/Stop/Get over " << kVms
            << " VMs: " << ok << " ok, " << refused
            << " refused by the state table, done in "
            << absl::FormatDuration(took) << "\n";

  // Settled: every VM Off or Running, its record, history, event log and
  // processes agreeing.
  CommandResult list = Vmctl({"--json", "list"});
  nlohmann::json vms = nlohmann::json::parse(list.out)["vms"];
  ASSERT_EQ(vms.size(), size_t{kVms});
  int running = 0;
  for (const nlohmann::json& vm : vms) {
    const std::string state = vm["state"];
    ASSERT_TRUE(state == "VM_STATE_OFF" || state == "VM_STATE_RUNNING")
        << vm.dump();
    const std::string pid = vm.value("workerPid", "0");
    if (state == "VM_STATE_RUNNING") {
      ++running;
      EXPECT_EQ(kill(std::stoi(pid), 0), 0) << "no worker for " << vm.dump();
    } else {
      EXPECT_EQ(pid, "0") << vm.dump();
    }
  }
  // The last event of each VM names its current state.
  CommandResult events = Vmctl({"--json", "events"});
  std::map<std::string, std::string> last_state;
  for (absl::string_view line : absl::StrSplit(events.out, '\n')) {
    if (line.empty()) continue;
    nlohmann::json e = nlohmann::json::parse(line);
    last_state[e["vmName"]] = e.value("state", "");
  }
  for (const nlohmann::json& vm : vms)
    EXPECT_EQ(last_state[vm["name"]], vm["state"]) << vm.dump();
  // Exactly one worker per Running VM: live processes whose command line
  // names this state directory's VMs.
  std::vector<std::string> workers;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFileOrEmpty("/proc/" + pid + "/cmdline");
    std::string stat = ReadFileOrEmpty("/proc/" + pid + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() ||
        stat[paren + 2] == 'Z') {
      continue;
    }
    for (char& c : cmdline) c = c == '\0' ? ' ' : c;
    if (absl::StrContains(
            cmdline, absl::StrCat("--config=", vmms_->state_dir(), "/vms/")))
      workers.push_back(pid + ": " + cmdline);
  }
  EXPECT_EQ(workers.size(), size_t(running)) << testing::PrintToString(workers);
  for (const nlohmann::json& vm : vms) {
    if (vm["state"] == "VM_STATE_RUNNING") {
      EXPECT_EQ(Vmctl({"stop", vm["name"]}).exit_code, 0);
    }
  }
}

TEST_F(OperationsTest, SigkilledWorkerIsCrashedThenRestartedByPolicy) {
  Create("phoenix", "idle", {});
  ASSERT_EQ(
      Vmctl({"update", "phoenix", "--restart-policy", "on-failure"}).exit_code,
      0);
  ASSERT_EQ(Vmctl({"start", "phoenix"}).exit_code, 0);
  const std::string first = Show("phoenix")["workerPid"];
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(std::stoi(first), SIGKILL), 0);
  // Crashed is recorded (with an event) before the policy's 1 s backoff.
  nlohmann::json crashed =
      WaitForState("phoenix", "VM_STATE_CRASHED", absl::Seconds(1));
  const absl::Duration crash_latency = absl::Now() - killed;
  EXPECT_THAT(crashed.value("stateReason", ""), HasSubstr("signal 9"));
  nlohmann::json back = WaitForState("phoenix", "VM_STATE_RUNNING");
  const absl::Duration restart_latency = absl::Now() - killed;
  EXPECT_NE(back["workerPid"], first);
  EXPECT_EQ(back.value("restartCount", 0), 1);
  EXPECT_THAT(back.value("stateReason", ""), HasSubstr("worker ready"));
  std::cout << "SIGKILL -> Crashed seen by a polling client: "
            << absl::FormatDuration(crash_latency)
            << "; -> Running again (restart policy, 1 s backoff): "
            << absl::FormatDuration(restart_latency) << "\n";
  // A client's stop is never undone.
  ASSERT_EQ(Vmctl({"stop", "phoenix"}).exit_code, 0);
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(Show("phoenix")["state"], "VM_STATE_OFF");
}

TEST_F(OperationsTest, AutostartVmsStartWhenVmmsStarts) {
  Create("auto1", "idle");
  Create("manual1", "idle");
  CommandResult on = Vmctl({"autostart", "auto1", "on"});
  ASSERT_EQ(on.exit_code, 0) << on.err;
  EXPECT_THAT(on.out, HasSubstr("autostart: on"));
  ASSERT_TRUE(vmms_->Terminate().ok());
  vmms_ = std::make_unique<VmmsInstance>(dir_.path());
  ASSERT_TRUE(vmms_->Start().ok());
  nlohmann::json vm = WaitForState("auto1", "VM_STATE_RUNNING");
  EXPECT_EQ(Show("manual1")["state"], "VM_STATE_OFF");
  // Autostart is vmms's own decision: its Starting row says so.
  CommandResult events = Vmctl({"events"});
  EXPECT_THAT(events.out, HasSubstr("autostart (vmms started)"));
  EXPECT_EQ(Vmctl({"stop", "auto1"}).exit_code, 0);
}

TEST_F(OperationsTest, HostInfoAndStatsThroughVmctl) {
  CommandResult host = Vmctl({"hostinfo"});
  ASSERT_EQ(host.exit_code, 0) << host.err;
  EXPECT_THAT(host.out, HasSubstr("kvm_api_version: 12\n"));
  EXPECT_THAT(host.out, HasSubstr("cap_irqchip: 1\n"));
  EXPECT_THAT(host.out, HasSubstr("vm_max_vcpus: 64\n"));
  std::cout << host.out;

  Create("s1", "hello");
  Create("s2", "idle");
  ASSERT_EQ(Vmctl({"start", "s2"}).exit_code, 0);
  CommandResult table = Vmctl({"stats"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("NAME"));
  nlohmann::json s2 = Stats("s2");
  EXPECT_GT(std::stoull(s2.value("workerRssBytes", "0")), 1u << 20);
  EXPECT_FALSE(s2["vps"].empty());
  CommandResult one = Vmctl({"stats", "s2"});
  EXPECT_THAT(one.out, HasSubstr("vp0: cpu "));
  std::cout << one.out;
  EXPECT_EQ(Vmctl({"stats", "nope"}).exit_code, 2);
  EXPECT_EQ(Vmctl({"stop", "s2"}).exit_code, 0);
}

}  // namespace
}  // namespace hvtest
