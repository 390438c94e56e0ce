// libFuzzer target: loading a saved VM's state file (issue 14). The worker
// must refuse, never crash on, any byte string given as a state file.
//
// The first input byte picks how the rest is used:
//   even: the rest is the whole state file (header + payload) as read from
//         disk: ParseStateFile must refuse it or parse it;
//   odd:  the rest is a payload, framed here with a valid header and CRC, so
//         that mutations reach the SavedVm parser and what restores it.
// Whatever parses is then restored the way a fresh worker does, as far as
// that needs no KVM: CheckSavedConfig against a fixed configuration, COM1,
// i8042, CMOS RTC, PM1a event and control, and the VMBus server with two
// VSPs over 64 pages of guest RAM. What restores must save again, restore
// again into fresh parts, and keep working (port accesses, signals and
// channel messages from the guest afterwards).
//
// Not covered (needs KVM): vid::Partition::Restore (VPs, irqchip, clock,
// synthetic interface) and the memory file.

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "proto/hvstack/internal/worker.pb.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/state/state_fuzz_parts.h"
#include "vmwp/saved_config.h"
#include "vmwp/state_file.h"
#include "vmwp/vmbus/channel_messages.h"

namespace {

using state_fuzz::Parts;

std::string Frame(const uint8_t* payload, size_t size) {
  std::string file(vmwp::kStateFileHeaderSize, '\0');
  std::memcpy(file.data(), "HVSTSAVE", 8);
  const uint32_t format = vmwp::kStateFileFormat;
  const uint32_t header = vmwp::kStateFileHeaderSize;
  const uint64_t length = size;
  const uint32_t crc = static_cast<uint32_t>(
      ::crc32(::crc32(0L, Z_NULL, 0), payload, static_cast<uInt>(size)));
  std::memcpy(file.data() + 8, &format, 4);
  std::memcpy(file.data() + 12, &header, 4);
  std::memcpy(file.data() + 16, &length, 8);
  std::memcpy(file.data() + 24, &crc, 4);
  file.append(reinterpret_cast<const char*>(payload), size);
  return file;
}

// Restores every part; false at the first refusal.
bool RestoreInto(Parts& parts, const hvstack::saved::SavedVm& vm) {
  return parts.com1.RestoreState(vm.com1()).ok() &&
         parts.i8042.RestoreState(vm.i8042()).ok() &&
         parts.rtc.RestoreState(vm.rtc()).ok() &&
         parts.pm1_event.RestoreState(vm.pm1_event()).ok() &&
         parts.power.RestoreState(vm.pm1_control()).ok() &&
         parts.server.RestoreState(vm.vmbus()).ok();
}

// The guest goes on after a restore: ports, channel signals, messages.
void Exercise(Parts& parts) {
  for (uint16_t port = 0x3F8; port < 0x400; ++port) {
    (void)parts.com1.PortRead(port, 1);
  }
  parts.com1.PortWrite(0x3F8, 1, 'x');
  (void)parts.i8042.PortRead(0x64, 1);
  (void)parts.i8042.PortRead(0x60, 1);
  for (uint8_t reg : {0x00, 0x0A, 0x0B, 0x0C, 0x32}) {
    parts.rtc.PortWrite(0x70, 1, reg);
    (void)parts.rtc.PortRead(0x71, 1);
  }
  (void)parts.pm1_event.PortRead(vmwp::AcpiPm1Event::kPm1aEventPort, 2);
  (void)parts.power.PortRead(vmwp::AcpiPowerPort::kPm1aControlPort, 2);
  for (uint32_t c = 0; c < 4; ++c) {
    (void)parts.server.OnSignalEvent(
        0, vmbus::VmbusServer::kChannelConnectionIdBase + c, 0);
  }
  auto offers =
      vmbus::MakeMessage<vmbus::RequestOffers>(vmbus::kMsgRequestOffers);
  (void)parts.server.HandleMessage(vmbus::MessageBytes(offers));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  if (size == 0) return 0;
  const std::string file =
      (data[0] & 1)
          ? Frame(data + 1, size - 1)
          : std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<hvstack::saved::SavedVm> vm = vmwp::ParseStateFile(
      reinterpret_cast<const uint8_t*>(file.data()), file.size());
  if (!vm.ok()) {
    STATE_FUZZ_CHECK(!vm.status().message().empty());
    return 0;
  }
  STATE_FUZZ_CHECK(file.size() >= vmwp::kStateFileHeaderSize);

  hvstack::internal::WorkerConfig config;
  config.set_vcpus(state_fuzz::kVps);
  config.set_memory_mib(256);
  config.set_enlightened(true);
  if (absl::Status s = vmwp::CheckSavedConfig(vm->config(), config); !s.ok()) {
    STATE_FUZZ_CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    STATE_FUZZ_CHECK(!s.message().empty());
  }

  Parts parts;
  if (!RestoreInto(parts, *vm)) return 0;
  // What restored saves again, and that restores into fresh parts.
  hvstack::saved::SavedVm again = *vm;
  *again.mutable_com1() = parts.com1.SaveState();
  *again.mutable_i8042() = parts.i8042.SaveState();
  *again.mutable_rtc() = parts.rtc.SaveState();
  *again.mutable_pm1_event() = parts.pm1_event.SaveState();
  *again.mutable_pm1_control() = parts.power.SaveState();
  STATE_FUZZ_CHECK(parts.server.QuiesceVsps(absl::InfiniteFuture()).ok());
  absl::StatusOr<hvstack::saved::VmbusServerState> vmbus =
      parts.server.SaveState();
  STATE_FUZZ_CHECK(vmbus.ok());
  parts.server.UnquiesceVsps();
  *again.mutable_vmbus() = *std::move(vmbus);
  Parts fresh;
  STATE_FUZZ_CHECK(RestoreInto(fresh, again));
  Exercise(parts);
  Exercise(fresh);
  return 0;
}
