// Writes seed inputs for the storage fuzzers: the commands Linux's sd sends
// (fuzz_scsi_cdb) and a storvsc session (fuzz_vstor_packets): the
// initialization, then INQUIRY, READ(10) and WRITE(10) with GPA-direct
// buffers, SYNCHRONIZE CACHE and UNMAP.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "vmwp/vsp/storage/vstor_protocol.h"

namespace {

using namespace vsp::storage;

void Write(const std::string& dir, const std::string& name,
           const std::vector<uint8_t>& bytes) {
  mkdir(dir.c_str(), 0755);
  FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

std::vector<uint8_t> CdbSeed(uint8_t flags, uint32_t buffer,
                             std::vector<uint8_t> cdb,
                             std::vector<uint8_t> params = {}) {
  std::vector<uint8_t> out = {flags};
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<uint8_t>(buffer >> (8 * i)));
  out.push_back(static_cast<uint8_t>(cdb.size()));
  out.insert(out.end(), cdb.begin(), cdb.end());
  out.insert(out.end(), params.begin(), params.end());
  return out;
}

void Packet(std::vector<uint8_t>& out, bool gpa, std::vector<uint8_t> ext,
            const VstorPacket& p) {
  out.push_back(gpa ? 1 : 0);
  out.push_back(static_cast<uint8_t>(ext.size() / 8));
  out.insert(out.end(), ext.begin(), ext.end());
  const auto* b = reinterpret_cast<const uint8_t*>(&p);
  out.insert(out.end(), b, b + sizeof(p));
}

VstorPacket Op(uint32_t op) {
  VstorPacket p{};
  p.operation = op;
  p.flags = kRequestCompletionFlag;
  return p;
}

VstorPacket Srb(std::vector<uint8_t> cdb, uint32_t length, bool in) {
  VstorPacket p = Op(kOpExecuteSrb);
  p.vm_srb.length = sizeof(VmscsiRequest);
  p.vm_srb.cdb_length = static_cast<uint8_t>(cdb.size());
  std::memcpy(p.vm_srb.cdb, cdb.data(), cdb.size());
  p.vm_srb.data_transfer_length = length;
  p.vm_srb.data_in = length == 0 ? kUnknownType : in ? kReadType : kWriteType;
  return p;
}

std::vector<uint8_t> Ext(uint32_t len, uint32_t offset, uint64_t first_pfn) {
  std::vector<uint8_t> e(16);
  const uint32_t h[4] = {0, 1, len, offset};
  std::memcpy(e.data(), h, 16);
  for (uint64_t i = 0; i < (offset + len + 4095) / 4096; ++i) {
    const uint64_t pfn = first_pfn + i;
    const auto* b = reinterpret_cast<const uint8_t*>(&pfn);
    e.insert(e.end(), b, b + 8);
  }
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string root = argv[1];
  const std::string cdb = root + "/scsi_cdb";
  Write(cdb, "inquiry", CdbSeed(0, 36, {0x12, 0, 0, 0, 36, 0}));
  Write(cdb, "vpd_b0", CdbSeed(2, 255, {0x12, 1, 0xB0, 0, 255, 0}));
  Write(
      cdb, "rc16",
      CdbSeed(0, 32, {0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}));
  Write(cdb, "mode_sense", CdbSeed(1, 192, {0x1A, 0, 0x3F, 0, 192, 0}));
  Write(cdb, "read10", CdbSeed(0, 4096, {0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0}));
  Write(cdb, "write16",
        CdbSeed(8, 4096, {0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}));
  Write(cdb, "unmap",
        CdbSeed(2, 24, {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0},
                {0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
                 0, 0,  0, 8,  0, 0, 0, 8, 0, 0, 0, 0}));
  Write(cdb, "report_luns",
        CdbSeed(0, 256, {0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}));

  std::vector<uint8_t> session;
  Packet(session, false, {}, Op(kOpBeginInitialization));
  VstorPacket v = Op(kOpQueryProtocolVersion);
  v.version.major_minor = kVersionWin10;
  Packet(session, false, {}, v);
  Packet(session, false, {}, Op(kOpQueryProperties));
  Packet(session, false, {}, Op(kOpEndInitialization));
  Packet(session, true, Ext(36, 0, 8), Srb({0x12, 0, 0, 0, 36, 0}, 36, true));
  Packet(session, true, Ext(4096, 512, 9),
         Srb({0x2A, 0, 0, 0, 0, 16, 0, 0, 8, 0}, 4096, false));
  Packet(session, false, {}, Srb({0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, false));
  Packet(session, true, Ext(4096, 0, 12),
         Srb({0x28, 0, 0, 0, 0, 16, 0, 0, 8, 0}, 4096, true));
  Write(root + "/vstor_packets", "session", session);
  return 0;
}
