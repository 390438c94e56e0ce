// A hostile storvsc: what a malicious guest may send storvsp. Each probe
// prints "hostile_storage: <probe>: ok" when the host answered with the
// expected error status or sense, "UNEXPECTED" otherwise; then the first
// disk must still read and write, and the second disk too. Ends
// "hostile_storage: done, <n> unexpected" and powers off.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/storvsc.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

using unixhv::storvsc::Controller;
using unixhv::storvsc::ParseReply;
using unixhv::storvsc::Result;
using unixhv::storvsc::VstorPacket;
namespace sv = unixhv::storvsc;

unixhv::Serial con;
int unexpected = 0;

void Check(const char* probe, bool ok) {
  con.Write("hostile_storage: ");
  con.Write(probe);
  con.Write(ok ? ": ok\r\n" : ": UNEXPECTED\r\n");
  if (!ok) ++unexpected;
}

void Zero(void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = 0;
}

// Sends `p` (with an optional extension) and returns the reply.
bool Exchange(Controller& c, VstorPacket* p, const void* ext = nullptr,
              uint32_t ext_len = 0, uint32_t len = sizeof(VstorPacket)) {
  const uint64_t id = c.NextId();
  if (!c.Send(ext_len ? unixhv::vmbus::kPacketDataUsingGpaDirect
                      : unixhv::vmbus::kPacketDataInband,
              id, ext, ext_len, p, len)) {
    return false;
  }
  return c.WaitReply(id, p);
}

uint32_t Ext(uint8_t* e, uint32_t len, uint32_t offset, uint64_t pfn,
             uint32_t pfns) {
  const uint32_t h[4] = {0, 1, len, offset};
  auto* b = reinterpret_cast<const uint8_t*>(h);
  for (int i = 0; i < 16; ++i) e[i] = b[i];
  for (uint32_t i = 0; i < pfns; ++i) {
    const uint64_t v = pfn + i;
    auto* vb = reinterpret_cast<const uint8_t*>(&v);
    for (int k = 0; k < 8; ++k) e[16 + 8 * i + k] = vb[k];
  }
  return 16 + 8 * pfns;
}

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  con.Init();
  con.Write("hostile_storage: start\r\n");
  if (const char* error = unixhv::vmbus::EnableHyperV(0x50, 0x40)) {
    con.Write("hostile_storage: FAILED: ");
    con.Write(error);
    con.Write("\r\n");
    unixhv_power_off();
  }
  unixhv::vmbus::Client bus;
  if (bus.Connect() == 0 || !bus.RequestOffers()) {
    con.Write("hostile_storage: FAILED: no VMBus\r\n");
    unixhv_power_off();
  }
  const unixhv::vmbus::Offer* offer = bus.FindOffer(sv::kScsiType);
  Controller c;
  if (offer == nullptr || !c.Open(bus, *offer)) {
    con.Write("hostile_storage: FAILED: no SCSI controller\r\n");
    unixhv_power_off();
  }
  auto* buf = static_cast<uint8_t*>(unixhv::AllocDataPages(4));
  static uint8_t ext[16 + 8 * 600];
  VstorPacket p;
  const uint8_t read10[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0};

  // Out of order: SRBs and properties before initialization.
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, 0, true);
  Check("srb before initialization", Exchange(c, &p) && p.status == 0xC0000184);
  Zero(&p, sizeof(p));
  p.operation = sv::kOpQueryProperties;
  Check("properties before begin", Exchange(c, &p) && p.status == 0xC0000184);
  Zero(&p, sizeof(p));
  p.operation = sv::kOpQueryProtocolVersion;
  p.version = 0x0101;
  Check("query version before begin",
        Exchange(c, &p) && p.status == 0xC0000184);
  if (c.Initialize() == 0) {
    con.Write("hostile_storage: FAILED: initialization\r\n");
    unixhv_power_off();
  }
  Zero(&p, sizeof(p));
  p.operation = sv::kOpQueryProtocolVersion;
  p.version = 0x0402;  // WIN7: not offered by Linux, refused
  Check("old protocol version", Exchange(c, &p) && p.status == 0xC0000059);
  Zero(&p, sizeof(p));
  p.operation = 99;
  Check("unknown operation", Exchange(c, &p) && p.status == 0xC00000BB);
  Zero(&p, sizeof(p));
  p.operation = sv::kOpExecuteSrb;
  Check("short packet",
        Exchange(c, &p, nullptr, 0, 8) && p.status == 0xC000000D);

  // Buffers: outside RAM, overflowing, beyond the negotiated maximum.
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, 4096, true);
  uint32_t n = Ext(ext, 4096, 0, 0xFFFFFFFFF0ull, 1);
  Check("buffer outside guest RAM",
        Exchange(c, &p, ext, n) &&
            ParseReply(p).srb_status == sv::kSrbStatusInvalidRequest);
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, 4096, true);
  n = Ext(ext, 4096, 0, 0xC0000, 1);  // 3 GiB: the MMIO hole
  Check("buffer in the MMIO hole",
        Exchange(c, &p, ext, n) &&
            ParseReply(p).srb_status == sv::kSrbStatusInvalidRequest);
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, 0xFFFFFFFFu, true);
  n = Ext(ext, 0xFFFFF000u, 4095, reinterpret_cast<uint64_t>(buf) >> 12, 2);
  Check("length that overflows",
        Exchange(c, &p, ext, n) &&
            ParseReply(p).srb_status == sv::kSrbStatusInvalidRequest);
  const uint32_t big = c.properties().max_transfer_bytes + 4096;
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, big, true);
  n = Ext(ext, big, 0, reinterpret_cast<uint64_t>(buf) >> 12, big / 4096);
  Check("transfer beyond the negotiated maximum",
        Exchange(c, &p, ext, n) &&
            ParseReply(p).srb_status == sv::kSrbStatusInvalidRequest);
  sv::BuildSrb(&p, 0, 0, 0, read10, 10, 4096, true);
  Zero(ext, 16);  // rangecount 0
  Check("no ranges",
        Exchange(c, &p, ext, 8) &&
            ParseReply(p).srb_status == sv::kSrbStatusInvalidRequest);
  sv::BuildSrb(&p, 0, 0, 0, read10, 17, 0, true);
  Check("17-byte CDB", Exchange(c, &p) && ParseReply(p).srb_status ==
                                              sv::kSrbStatusInvalidRequest);
  Result r = c.Execute(0, 0, read10, 10, buf, 512, true);  // CDB > buffer
  Check("CDB beyond its buffer", r.sense(0x5, 0x24, 0x00));
  r = c.Execute(0, 0, read10, 10, buf, 4096, true, /*path=*/3);
  Check("absent path", r.answered && r.srb_status == sv::kSrbStatusInvalidLun);

  // A flood: 400 SRBs without reading one reply, then drain them.
  sv::BuildSrb(&p, 0, 0, 0, read10, 6, 0, false);
  p.srb.cdb_or_sense[0] = 0;  // TEST UNIT READY
  int sent = 0;
  for (int i = 0; i < 400; ++i) {
    if (!c.channel().Send(unixhv::vmbus::kPacketDataInband, 1, 1000000 + i, &p,
                          sizeof(p))) {
      c.Drain();
      continue;
    }
    ++sent;
  }
  for (int i = 0; i < 50; ++i) {
    c.Drain();
    bus.Poll();
  }
  con.Write("hostile_storage: flood sent ");
  con.WriteDec(sent);
  con.Write("\r\n");

  // Still serving: both disks read and write.
  for (uint8_t lun = 0; lun < 2; ++lun) {
    for (int i = 0; i < 4096; ++i) buf[i] = static_cast<uint8_t>(i + lun);
    const uint8_t write10[10] = {0x2A, 0, 0, 0, 0, 64, 0, 0, 8, 0};
    const Result w = c.Execute(0, lun, write10, 10, buf, 4096, false);
    for (int i = 0; i < 4096; ++i) buf[i] = 0;
    const uint8_t back[10] = {0x28, 0, 0, 0, 0, 64, 0, 0, 8, 0};
    const Result rr = c.Execute(0, lun, back, 10, buf, 4096, true);
    bool same = w.good() && rr.good();
    for (int i = 0; i < 4096 && same; ++i) {
      same = buf[i] == static_cast<uint8_t>(i + lun);
    }
    if (!same) {
      con.Write("hostile_storage: write srb ");
      con.WriteHex(w.srb_status, 2);
      con.Write(" sense ");
      con.WriteHex(w.sense_key, 1);
      con.Write("/");
      con.WriteHex(w.asc, 2);
      con.Write(" answered ");
      con.WriteDec(w.answered);
      con.Write(", read srb ");
      con.WriteHex(rr.srb_status, 2);
      con.Write(" answered ");
      con.WriteDec(rr.answered);
      con.Write("\r\n");
    }
    Check(lun == 0 ? "disk 0 still works" : "disk 1 still works", same);
  }
  con.Write("hostile_storage: done, ");
  con.WriteDec(unexpected);
  con.Write(" unexpected\r\n");
  c.Close();
  bus.Unload();
}
