// Linux's own VMBus drivers against our host: the test kernel (built from
// Debian's linux-source-6.1, tests/linux/build_test_kernel.sh) boots through
// vmctl -> vmms -> vmwp, and the test asserts, from Linux's console and from
// vmms:
//   - hv_vmbus's "Vmbus version:N.M" line, and vmms reporting the same version;
//   - the integration services hv_utils bound and negotiated (heartbeat,
//     shutdown, time sync: their "... IC version" lines, and `vmctl show`);
//   - heartbeat OK in `vmctl show`, answered by hv_utils;
//   - a time-sync sample applied: hv_utils answered the host's SYNC sample
//     (the worker counts answers) and, where the guest has a userspace, the
//     guest's wall clock, set 25 years wrong by /init, is back at the host's
//     time after the next SYNC sample (pause + resume sends one);
//   - `vmctl shutdown`: hv_utils powers the VM off, recorded "guest shut
//     down: ...";
//   - KVP: what the kernel side does without its daemon (see the test's note);
//   - with 2 vCPUs, the second CPU online.
// It prints the time from StartVm to each of these. One boot per test case;
// the cases run as two shards (one per core).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/process.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// 2001-01-01T00:00:00Z: far enough from any real "now" that a clock the host
// corrected cannot be mistaken for one left alone.
constexpr int64_t kWrongClock = 978307200;

// /init for hosts with a guest userspace: says so, shows the CPUs Linux
// brought online and its wall clock, starts hv_kvp_daemon (KVP's userspace
// half), sets the clock wrong, then prints the clock every 2 s and idles
// until the host shuts it down.
std::vector<std::string> InitLines() {
  return {
      "echo HVSTACK-USERSPACE-OK $(uname -m)",
      "echo HVSTACK-CPUS-ONLINE $(cat /sys/devices/system/cpu/online)",
      "hostname hvstack-linux",
      // -n: stay in the foreground (of this background job); it registers
      // with hv_utils through /dev/vmbus/hv_kvp and keeps its pools in
      // /var/lib/hyperv.
      "/usr/sbin/hv_kvp_daemon -n & echo HVSTACK-KVP-DAEMON-STARTED",
      "echo HVSTACK-CLOCK-AT-INIT $(date +%s)",
      absl::StrCat("date -s @", kWrongClock,
                   " >/dev/null && echo HVSTACK-CLOCK-SET-WRONG $(date +%s)"),
      "while :; do echo HVSTACK-GUEST-CLOCK $(date +%s); sleep 2; done",
  };
}

// The number in "<prefix> <number>" on the last console line that has it.
std::optional<int64_t> LastNumberAfter(const std::string& console,
                                       const std::string& prefix) {
  std::optional<int64_t> value;
  for (absl::string_view line : absl::StrSplit(console, '\n')) {
    const size_t at = line.find(prefix);
    if (at == absl::string_view::npos) continue;
    int64_t n = 0;
    if (absl::SimpleAtoi(
            absl::StripAsciiWhitespace(line.substr(at + prefix.size())), &n)) {
      value = n;
    }
  }
  return value;
}

std::vector<std::string> Channels(const nlohmann::json& vm) {
  std::vector<std::string> out;
  if (!vm.contains("integration")) return out;
  for (const auto& c :
       vm["integration"].value("channels", nlohmann::json::array()))
    out.push_back(c.get<std::string>());
  return out;
}

uint64_t TimeSamples(const nlohmann::json& vm) {
  if (!vm.contains("integration")) return 0;
  // uint64 fields are strings in the canonical JSON mapping.
  const nlohmann::json& v =
      vm["integration"].value("timeSamples", nlohmann::json("0"));
  uint64_t n = 0;
  if (v.is_string()) (void)absl::SimpleAtoi(v.get<std::string>(), &n);
  if (v.is_number()) n = v.get<uint64_t>();
  return n;
}

class LinuxVmbusTest : public ::testing::TestWithParam<int> {};

TEST_P(LinuxVmbusTest, HvVmbusAndHvUtilsAgainstOurHost) {
  const int cpus = GetParam();
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs read/write access to /dev/kvm, which this host "
                    "lacks";
  }
  absl::StatusOr<std::string> kernel = TestKernelPath();
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  const bool userspace = HostRunsGuestUserspace();
  TempDir work;
  const std::string initrd = work.path() + "/initrd.cpio";
  InitramfsOptions init;
  if (userspace) {
    // Debian's hv_kvp_daemon (hyperv-daemons, built from the same 6.1
    // source), with the host's glibc beside it.
    absl::StatusOr<std::vector<std::string>> daemon = FetchPackageFiles(
        "hyperv-daemons", work.path(), {"usr/sbin/hv_kvp_daemon"});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    init.binaries = {{(*daemon)[0], "usr/sbin/hv_kvp_daemon"}};
    init.run = InitLines();
  } else {
    init.no_busybox = true;
    init.init = SpinInitPath();
  }
  ASSERT_TRUE(MakeInitramfs(initrd, "HVSTACK-NEVER-PRINTED", init).ok());

  const std::string name = absl::StrCat("linux", cpus);
  absl::StatusOr<std::unique_ptr<LinuxVm>> booted = LinuxVm::Boot(
      {.name = name, .kernel = *kernel, .initrd = initrd, .cpus = cpus});
  ASSERT_TRUE(booted.ok()) << booted.status();
  LinuxVm& vm = **booted;
  std::printf("[%s] kernel %s\n[%s] command line: %s\n", name.c_str(),
              kernel->c_str(), name.c_str(), vm.cmdline().c_str());

  // Each step: wait (bounded), record the time since StartVm.
  auto step = [&](const std::string& what, const std::string& regex,
                  absl::Duration timeout, std::string* line = nullptr) -> bool {
    absl::StatusOr<absl::Duration> at =
        vm.WaitForConsoleRegex(regex, timeout, line);
    EXPECT_TRUE(at.ok()) << what << ": " << at.status();
    if (!at.ok()) return false;
    vm.Mark(what, *at);
    return true;
  };

  ASSERT_TRUE(
      step("banner (Linux version)", "Linux version 6\\.1", absl::Minutes(2)));
  std::string vmbus_line;
  ASSERT_TRUE(step("hv_vmbus: Vmbus version",
                   "hv_vmbus: Vmbus version:", absl::Minutes(6), &vmbus_line));
  std::smatch version_match;
  ASSERT_TRUE(std::regex_search(vmbus_line, version_match,
                                std::regex("Vmbus version:([0-9]+\\.[0-9]+)")));
  const std::string vmbus_version = version_match[1];
  // Our host speaks Linux's newest protocol.
  EXPECT_EQ(vmbus_version, "5.3") << vmbus_line;

  std::string heartbeat_line, shutdown_line, timesync_line;
  step("hv_utils: Heartbeat IC version", "Heartbeat IC version",
       absl::Minutes(3), &heartbeat_line);
  step("hv_utils: Shutdown IC version", "Shutdown IC version", absl::Minutes(3),
       &shutdown_line);
  step("hv_utils: TimeSync IC version", "TimeSync IC version", absl::Minutes(3),
       &timesync_line);
  // The newest versions both sides know (vmwp/vsp/ic/README.md).
  EXPECT_THAT(heartbeat_line, HasSubstr("Heartbeat IC version 3.0"));
  EXPECT_THAT(shutdown_line, HasSubstr("Shutdown IC version 3.2"));
  EXPECT_THAT(timesync_line, HasSubstr("TimeSync IC version 4.0"));

  if (cpus > 1) {
    step("second CPU online (smp: 2 CPUs)",
         absl::StrCat("smp: Brought up 1 node, ", cpus, " CPUs"),
         absl::Minutes(3));
  }
  ASSERT_TRUE(step("Run /init", "Run /init as init process", absl::Minutes(5)));

  // What vmms sees: heartbeat OK, the VMBus version, the negotiated channels,
  // and hv_utils' answer to the SYNC time sample the host sends on
  // negotiation.
  absl::StatusOr<absl::Duration> hb = vm.WaitForShow(
      [](const nlohmann::json& j) {
        return j.contains("integration") &&
               j["integration"].value("heartbeat", "") == "HEARTBEAT_OK";
      },
      "heartbeat OK", absl::Minutes(2));
  ASSERT_TRUE(hb.ok()) << hb.status();
  vm.Mark("vmctl show: heartbeat OK", *hb);
  absl::StatusOr<absl::Duration> sampled = vm.WaitForShow(
      [](const nlohmann::json& j) { return TimeSamples(j) >= 1; },
      "time sample answered", absl::Minutes(1));
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  vm.Mark("vmctl show: time sample answered", *sampled);
  nlohmann::json shown = vm.Show();
  EXPECT_EQ(shown["integration"].value("vmbusVersion", ""), vmbus_version);
  const std::vector<std::string> channels = Channels(shown);
  EXPECT_THAT(channels, Contains("heartbeat"));
  EXPECT_THAT(channels, Contains("shutdown"));
  EXPECT_THAT(channels, Contains("timesync"));
  // KVP: hv_utils opens the channel but, until its daemon (hv_kvp_daemon)
  // has opened /dev/vmbus/hv_kvp, it defers the host's negotiation
  // (hv_kvp.c: kvp_transaction.state < HVUTIL_READY), re-checking every
  // HV_UTIL_NEGO_TIMEOUT (55 s). Without a userspace there is no daemon: no
  // "KVP IC version" line and no negotiated kvp channel.
  if (!userspace) {
    EXPECT_THAT(channels, Not(Contains("kvp")))
        << "hv_utils negotiated KVP without hv_kvp_daemon?";
    EXPECT_THAT(vm.Console(), Not(HasSubstr("KVP IC version")));
  }
  std::printf("[%s] vmctl show: vmbus %s, channels %s, time samples %llu\n",
              name.c_str(), vmbus_version.c_str(),
              absl::StrJoin(channels, " ").c_str(),
              static_cast<unsigned long long>(TimeSamples(shown)));

  if (userspace) {
    ASSERT_TRUE(step("userspace: /init runs", "HVSTACK-USERSPACE-OK",
                     absl::Minutes(2)));
    if (cpus > 1) {
      std::string online;
      step("userspace: CPUs online", "HVSTACK-CPUS-ONLINE", absl::Minutes(1),
           &online);
      EXPECT_THAT(online,
                  HasSubstr(absl::StrCat("HVSTACK-CPUS-ONLINE 0-", cpus - 1)));
    }
    // KVP end to end: hv_kvp_daemon registers, hv_utils answers the
    // negotiation it had deferred, and the host reads the daemon's
    // intrinsic items and stores and reads back an item of its own.
    ASSERT_TRUE(step("userspace: hv_kvp_daemon started",
                     "HVSTACK-KVP-DAEMON-STARTED", absl::Minutes(1)));
    std::string kvp_line;
    ASSERT_TRUE(step("hv_utils: KVP IC version (daemon registered)",
                     "KVP IC version", absl::Minutes(2), &kvp_line));
    EXPECT_THAT(kvp_line, HasSubstr("KVP IC version 4.0"));
    absl::StatusOr<absl::Duration> kvp_shown = vm.WaitForShow(
        [](const nlohmann::json& j) {
          return j.contains("integration") &&
                 j["integration"].value("hostName", "") == "hvstack-linux";
        },
        "the daemon's host name in vmctl show", absl::Minutes(1));
    ASSERT_TRUE(kvp_shown.ok()) << kvp_shown.status();
    vm.Mark("vmctl show: KVP intrinsic items (host name)", *kvp_shown);
    const nlohmann::json with_kvp = vm.Show();
    EXPECT_THAT(Channels(with_kvp), Contains("kvp"));
    EXPECT_EQ(with_kvp["integration"].value("osName", ""), "Linux");
    absl::StatusOr<CommandResult> kvp_set =
        vm.Vmctl({"kvp", "set", name, "hvstack-role", "linux-test"});
    ASSERT_TRUE(kvp_set.ok());
    EXPECT_EQ(kvp_set->exit_code, 0) << kvp_set->err;
    absl::StatusOr<CommandResult> kvp_get =
        vm.Vmctl({"kvp", "get", name, "hvstack-role"});
    ASSERT_TRUE(kvp_get.ok());
    EXPECT_EQ(kvp_get->exit_code, 0) << kvp_get->err;
    EXPECT_EQ(kvp_get->out, "linux-test\n");
    absl::StatusOr<CommandResult> intrinsic =
        vm.Vmctl({"kvp", "list", name, "--pool", "auto"});
    ASSERT_TRUE(intrinsic.ok());
    EXPECT_EQ(intrinsic->exit_code, 0) << intrinsic->err;
    EXPECT_THAT(intrinsic->out, HasSubstr("OSName=Linux\n"));
    EXPECT_THAT(intrinsic->out, HasSubstr("OSBuildNumber=6.1."));
    EXPECT_THAT(intrinsic->out, HasSubstr("ProcessorArchitecture=x86_64\n"));
    vm.Mark("vmctl kvp set/get/list answered by hv_kvp_daemon", vm.Elapsed());
    std::printf("[%s] the guest's intrinsic KVP items:\n%s", name.c_str(),
                intrinsic->out.c_str());

    // The guest's wall clock at /init: the host's time (from the SYNC sample
    // or the CMOS clock), within the slack of a slow boot.
    ASSERT_TRUE(step("userspace: clock set wrong", "HVSTACK-CLOCK-SET-WRONG",
                     absl::Minutes(1)));
    const std::string console = vm.Console();
    std::optional<int64_t> at_init =
        LastNumberAfter(console, "HVSTACK-CLOCK-AT-INIT ");
    ASSERT_TRUE(at_init.has_value());
    EXPECT_NEAR(static_cast<double>(*at_init), absl::ToUnixSeconds(absl::Now()),
                300.0)
        << "the guest's clock at /init is not the host's";
    // A SYNC sample after a pause: hv_utils must put the clock right.
    const uint64_t samples_before = TimeSamples(vm.Show());
    absl::StatusOr<CommandResult> pause = vm.Vmctl({"pause", name});
    ASSERT_TRUE(pause.ok() && pause->exit_code == 0)
        << (pause.ok() ? pause->err : pause.status().ToString());
    absl::StatusOr<CommandResult> resume = vm.Vmctl({"resume", name});
    ASSERT_TRUE(resume.ok() && resume->exit_code == 0)
        << (resume.ok() ? resume->err : resume.status().ToString());
    const absl::Duration resumed = vm.Elapsed();
    vm.Mark("vmctl pause + resume (SYNC sample sent)", resumed);
    absl::StatusOr<absl::Duration> answered = vm.WaitForShow(
        [&](const nlohmann::json& j) {
          return TimeSamples(j) > samples_before;
        },
        "answer to the SYNC sample after resume", absl::Minutes(1));
    ASSERT_TRUE(answered.ok()) << answered.status();
    vm.Mark("vmctl show: resume's sample answered", *answered);
    // The clock lines after that answer: back within a minute of the host's.
    const absl::Time deadline = absl::Now() + absl::Minutes(1);
    std::optional<int64_t> guest_now;
    int64_t host_now = 0;
    for (;;) {
      host_now = absl::ToUnixSeconds(absl::Now());
      guest_now = LastNumberAfter(vm.Console(), "HVSTACK-GUEST-CLOCK ");
      if (guest_now.has_value() && std::abs(*guest_now - host_now) < 60) break;
      ASSERT_LT(absl::Now(), deadline)
          << "hv_utils did not apply the time sample: the guest's clock reads "
          << guest_now.value_or(-1) << ", the host's " << host_now;
      absl::SleepFor(absl::Milliseconds(200));
    }
    vm.Mark("userspace: guest clock = host clock again", vm.Elapsed());
    std::printf(
        "[%s] guest clock: %lld at /init, set to %lld, %lld after the "
        "host's sample (host %lld)\n",
        name.c_str(), static_cast<long long>(*at_init),
        static_cast<long long>(kWrongClock), static_cast<long long>(*guest_now),
        static_cast<long long>(host_now));
  } else {
    std::printf(
        "[%s] no guest userspace here (%s): the applied time sample "
        "is judged by hv_utils' answer only\n",
        name.c_str(), NoGuestUserspaceReason().c_str());
  }

  // The shutdown IC: hv_utils runs orderly_poweroff, whose /sbin/poweroff is
  // absent, so the kernel powers off (ACPI S5) itself.
  const absl::Duration asked = vm.Elapsed();
  absl::StatusOr<CommandResult> shutdown =
      vm.Vmctl({"shutdown", name, "--timeout", "120"}, absl::Minutes(3));
  ASSERT_TRUE(shutdown.ok()) << shutdown.status();
  EXPECT_EQ(shutdown->exit_code, 0) << shutdown->err;
  vm.Mark("vmctl shutdown asked", asked);
  absl::StatusOr<absl::Duration> off = vm.WaitForState("VM_STATE_OFF");
  ASSERT_TRUE(off.ok()) << off.status();
  vm.Mark("VM off (hv_utils shut it down)", *off);
  const nlohmann::json final_vm = vm.Show();
  EXPECT_THAT(final_vm.value("stateReason", ""),
              HasSubstr("guest shut down: "));
  std::printf("[%s] final state %s: %s\n", name.c_str(),
              final_vm.value("state", "").c_str(),
              final_vm.value("stateReason", "").c_str());

  // Linux had nothing to complain about.
  const std::string console = vm.Console();
  EXPECT_THAT(console, Not(HasSubstr("Call Trace")));
  EXPECT_THAT(console, Not(HasSubstr("Kernel panic")));
  std::printf("[%s] Linux's Hyper-V / VMBus lines:\n%s", name.c_str(),
              vm.ConsoleLines({"Hyper-V", "hv_", "vmbus", "smp:", "Run /init",
                               "HVSTACK-"})
                  .c_str());
  std::string worker_lines;
  for (absl::string_view l : absl::StrSplit(vm.ServiceLog(), '\n')) {
    if (absl::StrContains(l, "hyperv: ") || absl::StrContains(l, "vmbus:") ||
        absl::StrContains(l, "ic ")) {
      absl::StrAppend(&worker_lines, l, "\n");
    }
  }
  std::printf("[%s] worker's Hyper-V / VMBus lines:\n%s", name.c_str(),
              worker_lines.c_str());
  std::printf("[%s] timeline (seconds since StartVm):\n%s", name.c_str(),
              vm.Timeline().c_str());
}

INSTANTIATE_TEST_SUITE_P(Cpus, LinuxVmbusTest, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, "vcpu");
                         });

}  // namespace
}  // namespace hvtest
