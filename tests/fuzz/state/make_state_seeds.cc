// Writes seed inputs for fuzz_state_file into DIR/state_file: real state
// files as the worker writes them (vmwp::WriteStateFile of a SavedVm whose
// device and VMBus parts come from the parts' own SaveState), each as a
// whole file (first byte 0) and as a payload (first byte 1): a VM whose
// guest connected to VMBus and opened a channel over a GPADL, and one that
// never connected.
//
//   make_state_seeds DIR

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "spdlog/spdlog.h"
#include "tests/fuzz/state/state_fuzz_parts.h"
#include "vmwp/state_file.h"
#include "vmwp/vmbus/channel_messages.h"

namespace {

using Bytes = std::vector<uint8_t>;

void Append(Bytes& out, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "make_state_seeds: %s: %s\n", what,
                 std::string(s.message()).c_str());
    std::exit(1);
  }
}

// The guest's side: connect, GPADL over pages 10-13, open relid 1.
void Connect(state_fuzz::Parts& parts) {
  auto contact =
      vmbus::MakeMessage<vmbus::InitiateContact>(vmbus::kMsgInitiateContact);
  contact.vmbus_version_requested = vmbus::kVersionWin10V5_3;
  contact.interrupt_page_or_sint = vmbus::kVmbusMessageSint;
  Check(parts.server.HandleMessage(vmbus::MessageBytes(contact)), "contact");
  Check(
      parts.server.HandleMessage(vmbus::MessageBytes(
          vmbus::MakeMessage<vmbus::RequestOffers>(vmbus::kMsgRequestOffers))),
      "offers");
  Bytes gpadl;
  vmbus::GpadlHeader h{};
  h.header.msgtype = vmbus::kMsgGpadlHeader;
  h.child_relid = 1;
  h.gpadl = 5;
  h.range_buflen = 8 + 4 * 8;
  h.rangecount = 1;
  Append(gpadl, &h, sizeof(h));
  vmbus::GpaRangeHeader r{4 * 4096, 0};
  Append(gpadl, &r, sizeof(r));
  for (uint64_t pfn = 10; pfn < 14; ++pfn) Append(gpadl, &pfn, 8);
  Check(parts.server.HandleMessage(gpadl), "GPADL");
  auto open = vmbus::MakeMessage<vmbus::OpenChannel>(vmbus::kMsgOpenChannel);
  open.child_relid = 1;
  open.openid = 1;
  open.ringbuffer_gpadlhandle = 5;
  open.downstream_ringbuffer_pageoffset = 2;
  Check(parts.server.HandleMessage(vmbus::MessageBytes(open)), "open");
}

std::string StateFile(state_fuzz::Parts& parts) {
  hvstack::saved::SavedVm vm;
  vm.set_save_id(std::string(16, '\x5a'));
  vm.set_vm_uuid("00000000-0000-4000-8000-000000000001");
  vm.set_saved_at_us(1'700'000'000'000'000);
  vm.mutable_config()->set_vcpus(state_fuzz::kVps);
  vm.mutable_config()->set_memory_mib(256);
  vm.mutable_config()->set_enlightened(true);
  *vm.mutable_com1() = parts.com1.SaveState();
  *vm.mutable_i8042() = parts.i8042.SaveState();
  *vm.mutable_rtc() = parts.rtc.SaveState();
  *vm.mutable_pm1_event() = parts.pm1_event.SaveState();
  *vm.mutable_pm1_control() = parts.power.SaveState();
  Check(parts.server.QuiesceVsps(absl::InfiniteFuture()), "quiesce");
  absl::StatusOr<hvstack::saved::VmbusServerState> vmbus =
      parts.server.SaveState();
  Check(vmbus.status(), "VMBus save");
  *vm.mutable_vmbus() = *vmbus;
  char path[] = "/tmp/hvstack-state-seed.XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) Check(absl::ErrnoToStatus(errno, "mkstemp"), "temp file");
  ::unlink(path);
  Check(vmwp::WriteStateFile(fd, vm), "write");
  // And it reads back.
  Check(vmwp::ReadStateFile(fd).status(), "read back");
  std::string bytes;
  char buf[4096];
  ssize_t n;
  off_t at = 0;
  while ((n = ::pread(fd, buf, sizeof(buf), at)) > 0) {
    bytes.append(buf, static_cast<size_t>(n));
    at += n;
  }
  ::close(fd);
  return bytes;
}

void Write(const std::filesystem::path& file, char mode, const std::string& b) {
  std::ofstream out(file, std::ios::binary);
  out.put(mode);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir =
      std::filesystem::path(argv[1]) / "state_file";
  std::filesystem::create_directories(dir);
  spdlog::set_level(spdlog::level::off);
  {
    state_fuzz::Parts parts;
    Connect(parts);
    parts.com1.PortWrite(0x3FB, 1, 0x03);  // LCR: 8N1
    parts.rtc.PortWrite(0x70, 1, 0x0B);
    parts.rtc.PortWrite(0x71, 1, 0x02);
    const std::string file = StateFile(parts);
    Write(dir / "connected_file", 0, file);
    Write(dir / "connected_payload", 1,
          file.substr(vmwp::kStateFileHeaderSize));
  }
  {
    state_fuzz::Parts parts;
    const std::string file = StateFile(parts);
    Write(dir / "idle_file", 0, file);
    Write(dir / "idle_payload", 1, file.substr(vmwp::kStateFileHeaderSize));
  }
  return 0;
}
