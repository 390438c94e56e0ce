// An enlightened UnixHv guest: detects Hyper-V from CPUID, enables the
// hypercall page, the reference TSC page and the SynIC, connects to VMBus,
// opens every integration-component channel offered, answers heartbeats,
// reports intrinsic KVP items, stores what the host sets, prints the first
// time sample, and powers off (closing its channels and unloading VMBus)
// when the shutdown IC asks. Every step prints an "enlightened: " line.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/ic.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

constexpr uint8_t kSintVector = 0x50;
constexpr uint8_t kTimerVector = 0x40;

// The host name comes from `hostname=NAME` on the command line (default
// below), so that a test can tell this VM's report from another's.
char hostname[64] = "enlightened.unixhv";

unixhv::ic::KvpItem kIntrinsic[] = {
    {"FullyQualifiedDomainName", hostname},
    {"IntegrationServicesVersion", "1.0.0"},
    {"OSBuildNumber", "1"},
    {"OSName", "UnixHv"},
    {"OSMajorVersion", "1"},
    {"OSMinorVersion", "0"},
    {"OSVersion", "1.0"},
    {"ProcessorArchitecture", "x86_64"},
};

[[noreturn]] void Fail(unixhv::Serial& con, const char* why) {
  con.Write("enlightened: FAILED: ");
  con.Write(why);
  con.Write("\r\n");
  unixhv_power_off();
}

// "5.3" -> 5 << 16 | 3; 0 if malformed.
uint32_t ParseVersion(const char* s) {
  uint32_t major = 0, minor = 0;
  while (*s >= '0' && *s <= '9') major = major * 10 + (*s++ - '0');
  if (*s++ != '.') return 0;
  while (*s >= '0' && *s <= '9') minor = minor * 10 + (*s++ - '0');
  return *s == 0 ? (major << 16) | minor : 0;
}

void* Page(unixhv::Serial& con) {
  void* p = unixhv::AllocPages(1);
  if (p == nullptr) Fail(con, "out of pages");
  return p;
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  unixhv::Serial con;
  con.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  char value[64];
  if (unixhv::CommandLineValue(cmdline, "hostname=", value, sizeof(value))) {
    for (size_t i = 0; i < sizeof(hostname); ++i) {
      hostname[i] = value[i];
      if (value[i] == 0) break;
    }
  }
  // vmbus_max=MAJOR.MINOR: offer no newer protocol (exercises the host's
  // older paths: connection id 1, the pre-5.0 INITIATE_CONTACT).
  uint32_t max_version = unixhv::vmbus::kVersions[0];
  if (unixhv::CommandLineValue(cmdline, "vmbus_max=", value, sizeof(value))) {
    max_version = ParseVersion(value);
  }
  con.Write("enlightened: start (hostname ");
  con.Write(hostname);
  con.Write(")\r\n");

  const unixhv::hv::Features f = unixhv::hv::Detect();
  if (!f.present) Fail(con, "no Hyper-V interface in CPUID 0x40000000");
  con.Write("enlightened: hyper-v detected: version ");
  con.WriteDec(f.major);
  con.Write(".");
  con.WriteDec(f.minor);
  con.Write(" build ");
  con.WriteDec(f.build);
  con.Write(" privileges ");
  con.WriteHex((uint64_t{f.privileges_high} << 32) | f.privileges_low, 16);
  con.Write("\r\n");
  using unixhv::hv::kPrivHypercallMsrs;
  using unixhv::hv::kPrivPostMessages;
  using unixhv::hv::kPrivSignalEvents;
  using unixhv::hv::kPrivSynicRegs;
  if ((f.privileges_low & (kPrivHypercallMsrs | kPrivSynicRegs)) !=
          (kPrivHypercallMsrs | kPrivSynicRegs) ||
      (f.privileges_high & (kPrivPostMessages | kPrivSignalEvents)) !=
          (kPrivPostMessages | kPrivSignalEvents)) {
    Fail(con, "the hypervisor lacks hypercalls, SynIC or messages");
  }

  void* hypercall_page = Page(con);
  if (!unixhv::hv::EnableHypercalls(hypercall_page)) {
    Fail(con, "the hypercall page did not enable");
  }
  con.Write("enlightened: hypercall page at ");
  con.WriteHex(reinterpret_cast<uint64_t>(hypercall_page), 8);
  con.Write("\r\n");

  if ((f.privileges_low & unixhv::hv::kPrivReferenceTsc) != 0 &&
      unixhv::hv::EnableReferenceTsc(Page(con))) {
    const uint64_t msr = unixhv::hv::ReadTimeRefCount();
    const uint64_t page = unixhv::hv::ReadReferenceTime();
    con.Write("enlightened: reference time: msr ");
    con.WriteDec(msr);
    con.Write(" tsc page ");
    con.WriteDec(page);
    con.Write("\r\n");
  }

  void* simp = Page(con);
  void* siefp = Page(con);
  unixhv::hv::EnableSynic(simp, siefp, unixhv::vmbus::kMessageSint,
                          kSintVector);
  unixhv::vmbus::InstallInterrupts(kSintVector, kTimerVector, 50);
  con.Write("enlightened: synic enabled (sint 2 -> vector 0x50)\r\n");

  unixhv::vmbus::Client bus;
  // Partition reference time (100 ns) around each VMBus step: what the
  // protocol costs as the guest sees it (every hypercall and SynIC message
  // is a VM exit here, and guest code is emulated).
  uint64_t t0 = unixhv::hv::ReadReferenceTime();
  const uint32_t version = bus.Connect(max_version);
  if (version == 0) Fail(con, "no VMBus version accepted");
  con.Write("enlightened: vmbus version ");
  con.WriteDec(version >> 16);
  con.Write(".");
  con.WriteDec(version & 0xFFFF);
  con.Write(" (");
  con.WriteDec((unixhv::hv::ReadReferenceTime() - t0) / 10);
  con.Write(" us)\r\n");
  t0 = unixhv::hv::ReadReferenceTime();
  if (!bus.RequestOffers()) Fail(con, "no ALLOFFERS_DELIVERED");
  con.Write("enlightened: ");
  con.WriteDec(bus.offer_count());
  con.Write(" offers (");
  con.WriteDec((unixhv::hv::ReadReferenceTime() - t0) / 10);
  con.Write(" us)\r\n");
  t0 = unixhv::hv::ReadReferenceTime();

  unixhv::ic::Services ics(con, "enlightened: ");
  ics.set_intrinsic(kIntrinsic, sizeof(kIntrinsic) / sizeof(kIntrinsic[0]));
  // kvp=silent: open the KVP channel but never answer on it, as Linux's
  // hv_utils does while hv_kvp_daemon is not running.
  if (char kvp[8];
      unixhv::CommandLineValue(cmdline, "kvp=", kvp, sizeof(kvp)) &&
      kvp[0] == 's') {
    ics.set_silent(unixhv::ic::Services::kKvp);
    con.Write("enlightened: kvp channel silent (no KVP service)\r\n");
  }
  const int opened = ics.OpenAll(bus);
  if (opened == 0) Fail(con, "no IC channel opened");
  con.Write("enlightened: ready (");
  con.WriteDec(opened);
  con.Write(" channels opened in ");
  con.WriteDec((unixhv::hv::ReadReferenceTime() - t0) / 10);
  con.Write(" us)\r\n");

  while (!ics.shutdown_requested()) {
    bus.Poll();
    ics.Service();
    if (ics.shutdown_requested()) break;
    unixhv::vmbus::WaitForInterrupt();
  }
  ics.CloseAll(bus);
  const bool unloaded = bus.Unload();
  con.Write(unloaded ? "enlightened: vmbus unloaded\r\n"
                     : "enlightened: vmbus unload not answered\r\n");
  if (ics.shutdown_flags() == 2 || ics.shutdown_flags() == 3) {
    con.Write("enlightened: restarting\r\n");
    unixhv::Outb(0x64, 0xFE);  // i8042 reset
  }
  con.Write("enlightened: powering off\r\n");
}
