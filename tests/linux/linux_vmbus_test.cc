// Linux's own VMBus drivers against our host: the test kernel (built from
// Debian's linux-source-6.1, tests/linux/build_test_kernel.sh) boots once, with
// 2 vCPUs, through vmctl -> vmms -> vmwp, and the cases below judge it in
// order, from vmms (`vmctl show`, the event log) and from the few lines the
// guest prints:
//   - hv_vmbus's "Vmbus version:N.M" line, and vmms reporting the same version;
//   - the integration services hv_utils bound and negotiated (heartbeat,
//     shutdown, time sync: their "... IC version" lines, and `vmctl show`);
//   - the second CPU online;
//   - heartbeat OK in `vmctl show`, answered by hv_utils;
//   - KVP end to end through Debian's hv_kvp_daemon: its intrinsic items in
//     `vmctl show`, a host item set, read back, and seen in the daemon's pool
//     file in the guest;
//   - a time-sync sample applied: the guest's wall clock, set 25 years wrong,
//     is back at the host's time after the SYNC sample of a pause + resume;
//   - `vmctl shutdown`: hv_utils powers the VM off, recorded "guest shut
//     down: ...".
// The kernel boots with `quiet` (on hosts without /dev/kvm this runs in
// kvmbox, where every console byte is two VM exits of a nested guest): /init
// prints only the kernel lines asserted on (dmesg | grep) and its own
// HVSTACK-* lines. Each case prints its time since StartVm.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/kvmbox/kvmbox.h"
#include "tests/linux/test_kernel.h"

namespace hvtest {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kCpus = 2;
constexpr char kName[] = "linux";
// 2001-01-01T00:00:00Z: far enough from any real "now" that a clock the host
// corrected cannot be mistaken for one left alone.
constexpr int64_t kWrongClock = 978307200;
// The KVP item (external pool) the host sets to tell /init to set its clock
// wrong, once the boot's own SYNC sample has been applied.
constexpr char kClockKey[] = "hvstack-set-clock-wrong";

// The kernel lines /init copies to the console (everything else stays in the
// guest's log: `quiet`).
constexpr char kKernelLines[] =
    "hv_vmbus: Vmbus version|IC version|smp: Brought up|Linux version";

// /init (busybox sh). Prints the asserted kernel lines once hv_utils has
// negotiated heartbeat, shutdown and time sync (bounded: 120 guest seconds),
// starts hv_kvp_daemon and prints KVP's line once the daemon registered,
// then waits for the host's kClockKey in the daemon's external pool, sets the
// clock wrong, and says when it is right again. Idles until the host shuts
// it down.
std::vector<std::string> InitLines() {
  const std::string grep = absl::StrCat("dmesg | grep -E '", kKernelLines, "'");
  return {
      "echo HVSTACK-USERSPACE-OK $(uname -m)",
      "n=0; while [ $(dmesg | grep -c 'IC version') -lt 3 ] && "
      "[ $n -lt 120 ]; do sleep 1; n=$((n+1)); done",
      grep,
      "echo HVSTACK-CPUS-ONLINE $(cat /sys/devices/system/cpu/online)",
      "hostname hvstack-linux",
      // The daemon reports getaddrinfo(AI_CANONNAME) of the host name as the
      // FQDN (else "getaddrinfo failed: ..."): glibc's own files module
      // answers from /etc/hosts.
      "mkdir -p /etc && echo 'hosts: files' >/etc/nsswitch.conf && "
      "echo '127.0.0.1 hvstack-linux' >/etc/hosts",
      // The daemon creates /var/lib/hyperv (not its parents) for its pools;
      // -n: stays in the foreground of this background job.
      "mkdir -p /var/lib",
      "/usr/sbin/hv_kvp_daemon -n & echo HVSTACK-KVP-DAEMON-STARTED",
      "n=0; until dmesg | grep 'KVP IC version'; do [ $n -ge 120 ] && break; "
      "sleep 1; n=$((n+1)); done",
      absl::StrCat("until grep -q ", kClockKey,
                   " /var/lib/hyperv/.kvp_pool_0 2>/dev/null; do sleep 1; "
                   "done"),
      absl::StrCat("date -s @", kWrongClock,
                   " >/dev/null && echo HVSTACK-CLOCK-SET-WRONG $(date +%s)"),
      "until [ $(date +%s) -gt 1600000000 ]; do sleep 1; done",
      "echo HVSTACK-CLOCK-RIGHT $(date +%s)",
      "while :; do sleep 3600; done",
  };
}

// On the host (linux_test_main): the initramfs, with Debian's hv_kvp_daemon
// (hyperv-daemons, built from the same 6.1 source) and the host's glibc
// beside it.
const bool kInitrd = PrepareOnHost("initrd", [](const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> daemon =
      FetchPackageFiles("hyperv-daemons", dir, {"usr/sbin/hv_kvp_daemon"});
  if (!daemon.ok()) return daemon.status();
  InitramfsOptions init;
  init.binaries = {{(*daemon)[0], "usr/sbin/hv_kvp_daemon"}};
  init.run = InitLines();
  return MakeInitramfs(dir + "/vmbus-initrd.cpio", "HVSTACK-NEVER-PRINTED",
                       init);
});

// The number right after `prefix` in `line`.
std::optional<int64_t> NumberAfter(const std::string& line,
                                   const std::string& prefix) {
  const size_t at = line.find(prefix);
  if (at == std::string::npos) return std::nullopt;
  // The digits only: a kernel message may follow on the same line (the
  // kernel's console and /init's output share the serial port).
  const std::string rest = line.substr(at + prefix.size());
  const size_t end = rest.find_first_not_of("0123456789");
  int64_t n = 0;
  if (!absl::SimpleAtoi(rest.substr(0, end), &n)) return std::nullopt;
  return n;
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

// KVP through vmms's API (what `vmctl kvp` calls).
absl::Status SetKvp(LinuxVm& vm, const std::string& key,
                    const std::string& value) {
  hvstack::v1::SetKvpRequest request;
  request.set_name(kName);
  request.set_key(key);
  request.set_value(value);
  hvstack::v1::SetKvpResponse response;
  grpc::Status s =
      vm.Api().SetKvp(LinuxVm::Context().get(), request, &response);
  return s.ok() ? absl::OkStatus()
                : absl::InternalError(
                      absl::StrCat("SetKvp ", key, ": ", s.error_message()));
}

absl::StatusOr<std::string> GetKvp(LinuxVm& vm, const std::string& key) {
  hvstack::v1::GetKvpRequest request;
  request.set_name(kName);
  request.set_key(key);
  hvstack::v1::KvpItem item;
  grpc::Status s = vm.Api().GetKvp(LinuxVm::Context().get(), request, &item);
  if (!s.ok()) {
    return absl::InternalError(
        absl::StrCat("GetKvp ", key, ": ", s.error_message()));
  }
  return item.value();
}

// "Key=Value\n" for each item of `pool`.
absl::StatusOr<std::string> ListKvp(LinuxVm& vm, hvstack::v1::KvpPool pool) {
  hvstack::v1::ListKvpRequest request;
  request.set_name(kName);
  request.set_pool(pool);
  hvstack::v1::ListKvpResponse response;
  grpc::Status s =
      vm.Api().ListKvp(LinuxVm::Context().get(), request, &response);
  if (!s.ok()) {
    return absl::InternalError(absl::StrCat("ListKvp: ", s.error_message()));
  }
  std::string out;
  for (const auto& item : response.items()) {
    absl::StrAppend(&out, item.key(), "=", item.value(), "\n");
  }
  return out;
}

// The event log's reasons, one a line.
std::string EventReasons(LinuxVm& vm) {
  hvstack::v1::WatchEventsRequest request;
  std::unique_ptr<grpc::ClientContext> context = LinuxVm::Context();
  auto reader = vm.Api().WatchEvents(context.get(), request);
  std::string out;
  hvstack::v1::VmEvent event;
  while (reader->Read(&event)) absl::StrAppend(&out, event.reason(), "\n");
  (void)reader->Finish();
  return out;
}

// Waits on the guest: generous in kvmbox (its CPU is emulated).
absl::Duration GuestWait(absl::Duration d) { return kvmbox::Scaled(d); }

class LinuxVmbusTest : public ::testing::Test {
 protected:
  // One boot for all cases (each boot costs minutes in kvmbox).
  static void SetUpTestSuite() {
    setup_ = new absl::Status(Boot());
    if (!setup_->ok() && vm_ != nullptr) {
      std::fprintf(stderr, "boot failed; console so far:\n%s\n",
                   vm_->Console().c_str());
    }
  }
  static void TearDownTestSuite() {
    if (vm_ != nullptr) {
      std::printf("timeline (seconds since StartVm):\n%s",
                  vm_->Timeline().c_str());
      std::printf("the guest's console:\n%s", vm_->Console().c_str());
    }
    delete vm_;
    vm_ = nullptr;
  }

  static absl::Status Boot() {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      skip_ = new std::string(
          "needs read/write access to /dev/kvm, which this host lacks (see "
          "the kvmbox line above)");
      return absl::OkStatus();
    }
    if (!HostRunsGuestUserspace()) {
      // This test needs hv_kvp_daemon and /init's clock; on kvm_pvm hosts
      // nothing of userspace runs.
      skip_ = new std::string(NoGuestUserspaceReason());
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> kernel = TestKernelPath();
    if (!kernel.ok()) return kernel.status();
    absl::StatusOr<std::string> prepared = PreparedOnHost("initrd");
    if (!prepared.ok()) return prepared.status();
    const std::string initrd = *prepared + "/vmbus-initrd.cpio";
    absl::StatusOr<std::unique_ptr<LinuxVm>> booted = LinuxVm::Boot(
        {.name = kName, .kernel = *kernel, .initrd = initrd, .cpus = kCpus});
    if (!booted.ok()) return booted.status();
    vm_ = booted->release();
    std::printf("kernel %s\ncommand line: %s\n", kernel->c_str(),
                vm_->cmdline().c_str());
    return absl::OkStatus();
  }

  void SetUp() override {
    if (skip_ != nullptr) GTEST_SKIP() << *skip_;
    ASSERT_TRUE(setup_->ok()) << *setup_;
  }

  // Waits (bounded) for a console line matching `regex`, records when it
  // happened (kernel lines: from their timestamp) as `what`.
  static absl::StatusOr<std::string> Step(const std::string& what,
                                          const std::string& regex,
                                          absl::Duration timeout) {
    std::string matched;
    absl::StatusOr<absl::Duration> at =
        vm_->WaitForConsoleRegex(regex, GuestWait(timeout), &matched);
    if (!at.ok()) return at.status();
    vm_->Mark(what, vm_->LineTime(matched, *at));
    return matched;
  }

  static absl::StatusOr<absl::Duration> ShowStep(
      const std::string& what,
      const std::function<bool(const nlohmann::json&)>& done,
      absl::Duration timeout) {
    absl::StatusOr<absl::Duration> at =
        vm_->WaitForShow(done, what, GuestWait(timeout));
    if (at.ok()) vm_->Mark(absl::StrCat("vmctl show: ", what), *at);
    return at;
  }

  static absl::Status* setup_;
  static std::string* skip_;
  static LinuxVm* vm_;
};

absl::Status* LinuxVmbusTest::setup_ = nullptr;
std::string* LinuxVmbusTest::skip_ = nullptr;
LinuxVm* LinuxVmbusTest::vm_ = nullptr;

TEST_F(LinuxVmbusTest, VmbusVersionNegotiated) {
  // /init runs, and prints the kernel's lines.
  ASSERT_TRUE(
      Step("userspace: /init runs", "HVSTACK-USERSPACE-OK", absl::Minutes(3))
          .ok());
  absl::StatusOr<std::string> banner = Step(
      "kernel banner (Linux version)", "Linux version 6\\.1", absl::Minutes(3));
  ASSERT_TRUE(banner.ok()) << banner.status();
  absl::StatusOr<std::string> line = Step(
      "hv_vmbus: Vmbus version", "hv_vmbus: Vmbus version:", absl::Minutes(1));
  ASSERT_TRUE(line.ok()) << line.status();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m,
                                std::regex("Vmbus version:([0-9]+\\.[0-9]+)")));
  // Our host speaks Linux's newest protocol.
  EXPECT_EQ(m[1], "5.3") << *line;
  absl::StatusOr<absl::Duration> shown = ShowStep(
      "VMBus version",
      [](const nlohmann::json& j) {
        return j.contains("integration") &&
               !j["integration"].value("vmbusVersion", "").empty();
      },
      absl::Minutes(1));
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(vm_->Show()["integration"].value("vmbusVersion", ""), m[1]);
}

TEST_F(LinuxVmbusTest, HvUtilsBoundHeartbeatShutdownTimeSync) {
  // The newest versions both sides know (vmwp/vsp/ic/README.md).
  for (const auto& [ic, version] :
       std::vector<std::pair<std::string, std::string>>{
           {"Heartbeat", "3.0"}, {"Shutdown", "3.2"}, {"TimeSync", "4.0"}}) {
    absl::StatusOr<std::string> line =
        Step(absl::StrCat("hv_utils: ", ic, " IC version"),
             absl::StrCat(ic, " IC version"), absl::Minutes(1));
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, HasSubstr(absl::StrCat(ic, " IC version ", version)));
  }
  absl::StatusOr<absl::Duration> negotiated = ShowStep(
      "heartbeat, shutdown, timesync negotiated",
      [](const nlohmann::json& j) {
        const std::vector<std::string> c = Channels(j);
        for (const char* ic : {"heartbeat", "shutdown", "timesync"}) {
          if (std::find(c.begin(), c.end(), ic) == c.end()) return false;
        }
        return true;
      },
      absl::Minutes(1));
  ASSERT_TRUE(negotiated.ok()) << negotiated.status();
}

TEST_F(LinuxVmbusTest, SecondCpuOnline) {
  absl::StatusOr<std::string> smp =
      Step("smp: both CPUs brought up", "smp: Brought up", absl::Minutes(1));
  ASSERT_TRUE(smp.ok()) << smp.status();
  EXPECT_THAT(*smp, HasSubstr(absl::StrCat("1 node, ", kCpus, " CPUs")));
  absl::StatusOr<std::string> online =
      Step("userspace: CPUs online", "HVSTACK-CPUS-ONLINE", absl::Minutes(1));
  ASSERT_TRUE(online.ok()) << online.status();
  EXPECT_THAT(*online,
              HasSubstr(absl::StrCat("HVSTACK-CPUS-ONLINE 0-", kCpus - 1)));
}

TEST_F(LinuxVmbusTest, HeartbeatOkFromHvUtils) {
  absl::StatusOr<absl::Duration> hb = ShowStep(
      "heartbeat OK",
      [](const nlohmann::json& j) {
        return j.contains("integration") &&
               j["integration"].value("heartbeat", "") == "HEARTBEAT_OK";
      },
      absl::Minutes(1));
  ASSERT_TRUE(hb.ok()) << hb.status();
}

TEST_F(LinuxVmbusTest, KvpThroughHvKvpDaemon) {
  // hv_utils opens the KVP channel at boot but answers the host's
  // negotiation only once hv_kvp_daemon has registered (hv_kvp.c).
  ASSERT_TRUE(Step("userspace: hv_kvp_daemon started",
                   "HVSTACK-KVP-DAEMON-STARTED", absl::Minutes(1))
                  .ok());
  absl::StatusOr<std::string> kvp =
      Step("hv_utils: KVP IC version (daemon registered)", "KVP IC version",
           absl::Minutes(2));
  ASSERT_TRUE(kvp.ok()) << kvp.status();
  EXPECT_THAT(*kvp, HasSubstr("KVP IC version 4.0"));
  absl::StatusOr<absl::Duration> shown = ShowStep(
      "KVP intrinsic items (the daemon's host name)",
      [](const nlohmann::json& j) {
        return j.contains("integration") &&
               j["integration"].value("hostName", "") == "hvstack-linux";
      },
      absl::Minutes(1));
  ASSERT_TRUE(shown.ok()) << shown.status();
  const nlohmann::json with_kvp = vm_->Show();
  EXPECT_THAT(Channels(with_kvp), Contains("kvp"));
  EXPECT_EQ(with_kvp["integration"].value("osName", ""), "Linux");
  ASSERT_TRUE(SetKvp(*vm_, "hvstack-role", "linux-test").ok());
  absl::StatusOr<std::string> got = GetKvp(*vm_, "hvstack-role");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "linux-test");
  absl::StatusOr<std::string> intrinsic =
      ListKvp(*vm_, hvstack::v1::KVP_POOL_AUTO);
  ASSERT_TRUE(intrinsic.ok()) << intrinsic.status();
  EXPECT_THAT(*intrinsic, HasSubstr("OSName=Linux\n"));
  EXPECT_THAT(*intrinsic, HasSubstr("OSBuildNumber=6.1."));
  EXPECT_THAT(*intrinsic, HasSubstr("ProcessorArchitecture=x86_64\n"));
  vm_->Mark("KVP set/get/list answered by hv_kvp_daemon", vm_->Elapsed());
  std::printf("the guest's intrinsic KVP items:\n%s", intrinsic->c_str());
}

TEST_F(LinuxVmbusTest, TimeSyncSampleCorrectsTheClock) {
  // The boot's SYNC sample answered (and applied) before the guest sets its
  // clock wrong: the host tells it when, through KVP.
  absl::StatusOr<absl::Duration> sampled = ShowStep(
      "boot's time sample answered",
      [](const nlohmann::json& j) { return TimeSamples(j) >= 1; },
      absl::Minutes(1));
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  ASSERT_TRUE(SetKvp(*vm_, kClockKey, "now").ok());
  absl::StatusOr<std::string> wrong =
      Step("userspace: clock set wrong (host's KVP item seen)",
           "HVSTACK-CLOCK-SET-WRONG", absl::Minutes(1));
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  std::optional<int64_t> set = NumberAfter(*wrong, "HVSTACK-CLOCK-SET-WRONG ");
  ASSERT_TRUE(set.has_value()) << *wrong;
  EXPECT_LT(*set, kWrongClock + 60) << *wrong;
  // Timesync's periodic SAMPLEs leave the clock alone (hv_utils applies only
  // SYNC): still wrong a few samples later.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_THAT(vm_->Console(), Not(HasSubstr("HVSTACK-CLOCK-RIGHT")));

  // A SYNC sample after a pause: hv_utils puts the clock right.
  const uint64_t before = TimeSamples(vm_->Show());
  hvstack::v1::PauseVmRequest pause;
  pause.set_name(kName);
  hvstack::v1::Vm vm;
  grpc::Status paused =
      vm_->Api().PauseVm(LinuxVm::Context().get(), pause, &vm);
  ASSERT_TRUE(paused.ok()) << paused.error_message();
  hvstack::v1::ResumeVmRequest resume;
  resume.set_name(kName);
  grpc::Status resumed =
      vm_->Api().ResumeVm(LinuxVm::Context().get(), resume, &vm);
  ASSERT_TRUE(resumed.ok()) << resumed.error_message();
  vm_->Mark("PauseVm + ResumeVm (SYNC sample sent)", vm_->Elapsed());
  absl::StatusOr<absl::Duration> answered = ShowStep(
      "resume's time sample answered",
      [&](const nlohmann::json& j) { return TimeSamples(j) > before; },
      absl::Minutes(1));
  ASSERT_TRUE(answered.ok()) << answered.status();
  absl::StatusOr<std::string> right = Step(
      "userspace: clock right again", "HVSTACK-CLOCK-RIGHT", absl::Minutes(1));
  ASSERT_TRUE(right.ok()) << right.status();
  const int64_t host_now = absl::ToUnixSeconds(absl::Now());
  std::optional<int64_t> guest = NumberAfter(*right, "HVSTACK-CLOCK-RIGHT ");
  ASSERT_TRUE(guest.has_value()) << *right;
  EXPECT_NEAR(static_cast<double>(*guest), static_cast<double>(host_now), 120.0)
      << "hv_utils set the guest's clock, but not to the host's time";
  std::printf(
      "guest clock: set to %lld, %lld after the SYNC sample (host %lld)\n",
      static_cast<long long>(*set), static_cast<long long>(*guest),
      static_cast<long long>(host_now));
}

TEST_F(LinuxVmbusTest, ShutdownIcPowersLinuxOff) {
  // hv_utils runs orderly_poweroff, whose /sbin/poweroff is absent, so the
  // kernel powers off (ACPI S5) itself.
  const absl::Duration asked = vm_->Elapsed();
  absl::StatusOr<CommandResult> shutdown = vm_->Vmctl(
      {"shutdown", kName, "--timeout",
       absl::StrCat(absl::ToInt64Seconds(GuestWait(absl::Seconds(60))))},
      absl::Seconds(90));  // RunCommand scales it in kvmbox
  ASSERT_TRUE(shutdown.ok()) << shutdown.status();
  ASSERT_EQ(shutdown->exit_code, 0) << shutdown->err;
  vm_->Mark("vmctl shutdown asked", asked);
  absl::StatusOr<absl::Duration> off = ShowStep(
      "Off",
      [](const nlohmann::json& j) {
        return j.value("state", "") == "VM_STATE_OFF";
      },
      absl::Seconds(30));
  ASSERT_TRUE(off.ok()) << off.status();
  const nlohmann::json final_vm = vm_->Show();
  EXPECT_THAT(final_vm.value("stateReason", ""),
              HasSubstr("guest shut down: "));
  EXPECT_THAT(EventReasons(*vm_), HasSubstr("guest shut down: "));
  std::printf("final state %s: %s\n", final_vm.value("state", "").c_str(),
              final_vm.value("stateReason", "").c_str());
  // Linux had nothing to complain about (with `quiet`, warnings and errors
  // still reach the console).
  const std::string console = vm_->Console();
  EXPECT_THAT(console, Not(HasSubstr("Call Trace")));
  EXPECT_THAT(console, Not(HasSubstr("Kernel panic")));
  std::string worker_lines;
  for (absl::string_view l : absl::StrSplit(vm_->ServiceLog(), '\n')) {
    if (absl::StrContains(l, "hyperv: ") || absl::StrContains(l, "vmbus:") ||
        absl::StrContains(l, "ic ")) {
      absl::StrAppend(&worker_lines, l, "\n");
    }
  }
  std::printf("worker's Hyper-V / VMBus lines:\n%s", worker_lines.c_str());
}

}  // namespace
}  // namespace hvtest
