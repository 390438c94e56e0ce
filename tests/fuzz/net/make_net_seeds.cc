// Writes seed inputs for fuzz_net_messages: hv_netvsc's bring-up as netvsp
// sees it (NVSP INIT, NDIS version and config, SEND_RNDIS_PKT; RNDIS INIT,
// QUERY of the MAC address and link speed, SET of the packet filter,
// KEEPALIVE), and a send section with a data packet carrying a VLAN PPI.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "vmwp/vsp/net/nvsp_protocol.h"
#include "vmwp/vsp/net/rndis_protocol.h"

namespace {

using namespace vsp::net;

void Put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void Record(std::vector<uint8_t>& out, uint8_t kind,
            const std::vector<uint8_t>& bytes) {
  out.push_back(kind);
  out.push_back(static_cast<uint8_t>(bytes.size()));
  out.push_back(static_cast<uint8_t>(bytes.size() >> 8));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

std::vector<uint8_t> Nvsp(uint32_t type, std::vector<uint32_t> body) {
  std::vector<uint8_t> m;
  Put32(m, type);
  for (uint32_t v : body) Put32(m, v);
  m.resize(40, 0);  // struct nvsp_message
  return m;
}

// type, length, then the body words.
std::vector<uint8_t> Rndis(uint32_t type, std::vector<uint32_t> body) {
  std::vector<uint8_t> m;
  Put32(m, type);
  Put32(m, static_cast<uint32_t>(8 + 4 * body.size()));
  for (uint32_t v : body) Put32(m, v);
  return m;
}

void Write(const std::string& dir, const std::string& name,
           const std::vector<uint8_t>& bytes) {
  mkdir(dir.c_str(), 0755);
  FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  std::vector<uint8_t> bring_up = {5};  // NVSP 6.1
  Record(bring_up, 0, Nvsp(kNvspMsgInit, {0x60001, 0x60001}));
  Record(bring_up, 0, Nvsp(kNvspMsg1SendNdisVersion, {6, 30}));
  Record(bring_up, 0, Nvsp(kNvspMsg2SendNdisConfig, {1514, 0, 8}));
  Record(bring_up, 0, Nvsp(kNvspMsg1SendRndisPacket, {1, 0xFFFFFFFF, 0}));
  // INIT: request id, major, minor, max transfer size.
  Record(bring_up, 1, Rndis(kRndisMsgInit, {1, 1, 0, 0x4000}));
  // QUERY: request id, OID, info length, info offset (from the request
  // id), device vc handle.
  Record(bring_up, 1, Rndis(kRndisMsgQuery, {2, kOidGenLinkSpeed, 0, 20, 0}));
  Record(bring_up, 1,
         Rndis(kRndisMsgQuery, {3, kOid8023PermanentAddress, 0, 20, 0}));
  // SET: directed | all multicast | broadcast.
  Record(bring_up, 1,
         Rndis(kRndisMsgSet, {4, kOidGenCurrentPacketFilter, 4, 20, 0, 0xD}));
  Record(bring_up, 1, Rndis(kRndisMsgKeepalive, {5}));
  Write(dir, "bring_up", bring_up);

  // A data packet (rndis_packet: data offset/length from the body's start,
  // no OOB, PPI offset/length, VC handle, reserved), one VLAN PPI
  // (rndis_per_packet_info: size, type IEEE_8021Q_INFO, value offset, value)
  // and a 60-byte broadcast frame.
  std::vector<uint8_t> section =
      Rndis(kRndisMsgPacket, {52, 60, 0, 0, 0, 36, 16, 0, 0});
  for (uint32_t v : {16u, 6u, 12u, 5u}) Put32(section, v);
  for (int i = 0; i < 60; ++i) {
    section.push_back(i < 6 ? 0xFF : static_cast<uint8_t>(i));
  }
  const auto total = static_cast<uint32_t>(section.size());
  for (int i = 0; i < 4; ++i) {
    section[4 + i] = static_cast<uint8_t>(total >> (8 * i));
  }
  std::vector<uint8_t> data = {5};
  Record(data, 1, Rndis(kRndisMsgInit, {1, 1, 0, 0x4000}));
  Record(data, 1,
         Rndis(kRndisMsgSet, {2, kOidGenCurrentPacketFilter, 4, 20, 0, 0xD}));
  Record(data, 1, section);
  Write(dir, "data_packet", data);
  return 0;
}
