// Writes seed inputs for the VMBus fuzzers into DIR/vmbus_ring and
// DIR/vmbus_messages: a ring holding one valid packet, and a guest script
// that creates a GPADL, opens a channel, sends a packet and signals.
//
//   make_vmbus_seeds DIR

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vmwp/vmbus/channel_messages.h"
#include "vmwp/vmbus/ring_layout.h"

namespace {

using Bytes = std::vector<uint8_t>;

void Append(Bytes& out, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}
void Put32(Bytes& out, uint32_t v) { Append(out, &v, 4); }

Bytes OnePacket() {
  Bytes p;
  vmbus::PacketDescriptor d{vmbus::kPacketDataInband, 2, 3, 1, 42};
  Append(p, &d, sizeof(d));
  uint64_t payload = 0x1122334455667788ull, trailer = 0;
  Append(p, &payload, 8);
  Append(p, &trailer, 8);
  return p;
}

void Write(const std::filesystem::path& file, const Bytes& b) {
  std::ofstream(file, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir / "vmbus_ring");
  std::filesystem::create_directories(dir / "vmbus_messages");

  // Ring: 1 data page, write_index 32, read_index 0, feature bit, any size.
  Bytes ring = {0};
  Put32(ring, 32);
  Put32(ring, 0);
  Put32(ring, 0);
  Put32(ring, 0);
  Put32(ring, 1);
  ring.push_back(1);
  Bytes packet = OnePacket();
  ring.insert(ring.end(), packet.begin(), packet.end());
  Write(dir / "vmbus_ring" / "one_packet", ring);

  // Script: GPADL (pages 10-13) for relid 1, open with 2 + 2 pages, a packet
  // in the guest -> host ring (data page 11), write_index, signal, close.
  Bytes s;
  auto message = [&](const Bytes& m) {
    s.push_back(0);
    s.push_back(static_cast<uint8_t>(m.size()));
    s.insert(s.end(), m.begin(), m.end());
  };
  auto poke = [&](uint32_t gpa, const Bytes& b) {
    s.push_back(2);
    s.push_back(static_cast<uint8_t>((gpa / 8) & 0xFF));
    s.push_back(static_cast<uint8_t>((gpa / 8) >> 8));
    s.push_back(static_cast<uint8_t>(b.size()));
    s.insert(s.end(), b.begin(), b.end());
  };
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
  message(gpadl);
  auto open = vmbus::MakeMessage<vmbus::OpenChannel>(vmbus::kMsgOpenChannel);
  open.child_relid = 1;
  open.openid = 1;
  open.ringbuffer_gpadlhandle = 5;
  open.downstream_ringbuffer_pageoffset = 2;
  message(vmbus::MessageBytes(open));
  poke(11 * 4096, packet);
  Bytes write_index;
  Put32(write_index, 32);
  poke(10 * 4096, write_index);
  s.push_back(1);
  s.push_back(0);
  auto close = vmbus::MakeMessage<vmbus::CloseChannel>(vmbus::kMsgCloseChannel);
  close.child_relid = 1;
  message(vmbus::MessageBytes(close));
  auto teardown =
      vmbus::MakeMessage<vmbus::GpadlTeardown>(vmbus::kMsgGpadlTeardown);
  teardown.child_relid = 1;
  teardown.gpadl = 5;
  message(vmbus::MessageBytes(teardown));
  Write(dir / "vmbus_messages" / "open_and_talk", s);
  message(vmbus::MessageBytes(
      vmbus::MakeMessage<vmbus::Unload>(vmbus::kMsgUnload)));
  Write(dir / "vmbus_messages" / "open_talk_unload", s);
  return 0;
}
