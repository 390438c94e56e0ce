// A UnixHv guest that uses its SCSI disks through storvsp the way Linux's
// storvsc + sd do: vstor initialization, REPORT LUNS on targets 0-1, then
// per disk READ CAPACITY(16), the serial (VPD 0x80), MODE SENSE (write
// protect), and:
//  - writable: patterns written at four places (the last 8 blocks
//    included), SYNCHRONIZE CACHE, read back and compared; a read past the
//    end refused with 5/21/00; UNMAP of the third region (if VPD 0xB2
//    offers it; 4 KiB-aligned), read back as zeros when LBPRZ is set.
//  - read-only: a WRITE refused with DATA PROTECT 7/27/00.
// Every step prints a "storage: " line; the last is
// "storage: done, <n> errors". `seed=N` changes the patterns; `hold` keeps
// the VM running (halted) after "storage: flushed" instead of powering off
// (crash-safety tests SIGKILL the worker then).
// `gens` replaces those tests with generations on the first disk (checkpoint
// tests): the guest keeps a generation number in memory (0 at boot) and, at
// start and after every line it reads from COM1, reads the generation block
// (LBA 8, 4 KiB: "HVGEN\0\0\0", the generation, then Pattern(seed, gen, i)),
// prints "storage: gens: disk holds gen D, memory gen M", writes generation
// M + 1 there, flushes, reads it back and prints "storage: gens: gen K
// written", then waits for the next line. A guest restored from a checkpoint
// goes on from the generation it had in memory then.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/storvsc.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

using unixhv::storvsc::Controller;
using unixhv::storvsc::Result;

constexpr uint8_t kSintVector = 0x50;
constexpr uint8_t kTimerVector = 0x40;
constexpr uint32_t kBufferPages = 16;  // 64 KiB transfers

unixhv::Serial con;
int errors = 0;

void Line(const char* a, const char* b = nullptr) {
  con.Write("storage: ");
  con.Write(a);
  if (b != nullptr) con.Write(b);
  con.Write("\r\n");
}
void Error(const char* what, const Result& r) {
  ++errors;
  con.Write("storage: ERROR: ");
  con.Write(what);
  con.Write(" (answered ");
  con.WriteDec(r.answered);
  con.Write(" status 0x");
  con.WriteHex(r.status, 8);
  con.Write(" srb 0x");
  con.WriteHex(r.srb_status, 2);
  con.Write(" scsi 0x");
  con.WriteHex(r.scsi_status, 2);
  con.Write(" sense ");
  con.WriteHex(r.sense_key, 1);
  con.Write("/");
  con.WriteHex(r.asc, 2);
  con.Write("/");
  con.WriteHex(r.ascq, 2);
  con.Write(")\r\n");
}
[[noreturn]] void Fail(const char* why) {
  Line("FAILED: ", why);
  unixhv_power_off();
}

bool HasWord(const unixhv::CommandLine& c, const char* word, uint64_t* value) {
  if (c.text == nullptr) return false;
  size_t n = 0;
  while (word[n] != 0) ++n;
  for (size_t i = 0; i + n <= c.length; ++i) {
    if (i > 0 && c.text[i - 1] != ' ') continue;
    size_t k = 0;
    while (k < n && c.text[i + k] == word[k]) ++k;
    if (k != n) continue;
    if (value != nullptr) {
      *value = 0;
      for (size_t j = i + n;
           j < c.length && c.text[j] >= '0' && c.text[j] <= '9'; ++j) {
        *value = *value * 10 + (c.text[j] - '0');
      }
    }
    return true;
  }
  return false;
}

void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}
uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
         p[3];
}

// READ(16) / WRITE(16).
Result Rw(Controller& c, uint8_t t, uint8_t l, bool write, uint64_t lba,
          uint32_t blocks, uint8_t* buf, uint32_t bytes) {
  uint8_t cdb[16] = {static_cast<uint8_t>(write ? 0x8A : 0x88)};
  Put64(cdb + 2, lba);
  Put32(cdb + 10, blocks);
  return c.Execute(t, l, cdb, 16, buf, bytes, !write);
}

// The 64-bit word at byte `i` of a region starting at `lba`.
uint64_t Pattern(uint64_t seed, uint64_t lba, uint64_t i) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (lba << 20) ^ i ^ 0x5A5A0000ull;
}

void TestDisk(Controller& c, uint8_t t, uint8_t l, uint8_t* buf,
              uint64_t seed) {
  con.Write("storage: disk ");
  con.WriteDec(t);
  con.Write(":");
  con.WriteDec(l);
  uint8_t rc16[16] = {0x9E, 0x10};
  rc16[13] = 32;
  Result r = c.Execute(t, l, rc16, 16, buf, 32, true);
  if (!r.good()) {
    con.Write("\r\n");
    Error("READ CAPACITY(16)", r);
    return;
  }
  const uint64_t blocks = Get64(buf) + 1;
  const uint32_t bs = Get32(buf + 8);
  const bool lbpme = (buf[14] & 0x80) != 0;
  con.Write(": ");
  con.WriteDec(blocks);
  con.Write(" blocks of ");
  con.WriteDec(bs);
  con.Write(" bytes");
  uint8_t vpd80[6] = {0x12, 1, 0x80, 0, 255, 0};
  r = c.Execute(t, l, vpd80, 6, buf, 255, true);
  if (r.good() && r.transferred >= 4) {
    con.Write(", serial ");
    for (uint32_t i = 4; i < r.transferred && i < 4u + buf[3]; ++i) {
      con.PutChar(static_cast<char>(buf[i]));
    }
  }
  uint8_t ms[6] = {0x1A, 0, 0x3F, 0, 4, 0};
  r = c.Execute(t, l, ms, 6, buf, 4, true);
  const bool wp = r.good() && (buf[2] & 0x80) != 0;
  con.Write(wp ? ", write protect on\r\n" : ", write protect off\r\n");
  if (!r.good()) Error("MODE SENSE(6)", r);
  if (bs == 0 || blocks < 64) {
    Error("capacity too small to test", r);
    return;
  }
  const uint32_t region = 4096 / bs;  // blocks per region
  if (wp) {
    r = Rw(c, t, l, true, 0, region, buf, 4096);
    if (r.sense(0x7, 0x27, 0x00)) {
      Line("write to the read-only disk refused: sense 7/27/00 ok");
    } else {
      Error("write to a read-only disk", r);
    }
    r = Rw(c, t, l, false, blocks - region, region, buf, 4096);
    if (!r.good()) Error("read of the last blocks", r);
    return;
  }
  // The third (UNMAPped below) starts on a 4 KiB boundary for 4 KiB-aligned
  // capacities, so that the host can see the hole it leaves.
  const uint64_t where[4] = {0, blocks / 3, blocks / 2 / region * region,
                             blocks - region};
  for (uint64_t lba : where) {
    auto* words = reinterpret_cast<uint64_t*>(buf);
    for (uint32_t i = 0; i < 512; ++i) words[i] = Pattern(seed, lba, i);
    r = Rw(c, t, l, true, lba, region, buf, 4096);
    if (!r.good() || r.transferred != 4096) Error("WRITE(16)", r);
  }
  uint8_t sync[10] = {0x35};
  r = c.Execute(t, l, sync, 10, nullptr, 0, false);
  if (!r.good()) Error("SYNCHRONIZE CACHE(10)", r);
  Line("flushed");
  int mismatches = 0;
  for (uint64_t lba : where) {
    for (uint32_t i = 0; i < 4096; ++i) buf[i] = 0xEE;
    r = Rw(c, t, l, false, lba, region, buf, 4096);
    if (!r.good() || r.transferred != 4096) Error("READ(16)", r);
    const auto* words = reinterpret_cast<const uint64_t*>(buf);
    for (uint32_t i = 0; i < 512; ++i) {
      if (words[i] != Pattern(seed, lba, i)) {
        ++mismatches;
        break;
      }
    }
  }
  if (mismatches == 0) {
    Line("wrote and read back 4 regions (the last blocks included) ok");
  } else {
    ++errors;
    Line("ERROR: read back differs from what was written");
  }
  // A 64 KiB read across regions exercises multi-page buffers.
  r = Rw(c, t, l, false, 0, 65536 / bs, buf, 65536);
  if (!r.good() || r.transferred != 65536) Error("64 KiB READ(16)", r);
  r = Rw(c, t, l, false, blocks - region + 1, region, buf, 4096);
  if (r.sense(0x5, 0x21, 0x00)) {
    Line("read past the end refused: sense 5/21/00 ok");
  } else {
    Error("read past the end", r);
  }
  uint8_t unknown[6] = {0xC7};
  r = c.Execute(t, l, unknown, 6, nullptr, 0, false);
  if (r.sense(0x5, 0x20, 0x00)) {
    Line("unknown opcode refused: sense 5/20/00 ok");
  } else {
    Error("unknown opcode", r);
  }
  if (!lbpme) return;
  uint8_t b2[6] = {0x12, 1, 0xB2, 0, 64, 0};
  r = c.Execute(t, l, b2, 6, buf, 64, true);
  if (!r.good() || (buf[5] & 0x80) == 0) return;  // no UNMAP
  // LBPRZ: unmapped blocks read back as zeros (a raw file's holes). Without
  // it (an NBD export: qcow2 drops only whole clusters) the contents after
  // UNMAP are not defined.
  const bool lbprz = (buf[5] & 0x04) != 0;
  // UNMAP the middle region written above, as sd does: one descriptor.
  const uint64_t lba = where[2];
  uint8_t* p = buf;
  for (int i = 0; i < 24; ++i) p[i] = 0;
  p[1] = 22;
  p[3] = 16;
  Put64(p + 8, lba);
  Put32(p + 16, region);
  uint8_t unmap[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  r = c.Execute(t, l, unmap, 10, buf, 24, false);
  if (!r.good()) {
    Error("UNMAP", r);
    return;
  }
  r = Rw(c, t, l, false, lba, region, buf, 4096);
  bool zero = r.good();
  for (uint32_t i = 0; i < 4096 && zero; ++i) zero = buf[i] == 0;
  if (!lbprz && r.good()) {
    Line("unmap ok (LBPRZ off: contents not checked)");
  } else if (zero) {
    Line("unmap ok (reads back zeros)");
  } else {
    Error("read after UNMAP", r);
  }
}

constexpr uint64_t kGenLba = 8;
constexpr uint64_t kGenMagic = 0x004E45475648ull;  // "HVGEN\0\0\0"

// Waits (sti; hlt, woken by the 50 ms timer at the latest) for a line on
// COM1.
void WaitForLine() {
  constexpr uint16_t kLsr = unixhv::Serial::kCom1 + 5;
  for (;;) {
    if ((unixhv::Inb(kLsr) & 0x01) == 0) {
      unixhv::vmbus::WaitForInterrupt();
      continue;
    }
    const uint8_t c = unixhv::Inb(unixhv::Serial::kCom1);
    if (c == '\n' || c == '\r') return;
  }
}

// Reads the generation block: the generation it holds, 0 if none (zeros),
// ~0 if it is neither zeros nor a whole generation.
uint64_t ReadGeneration(Controller& c, uint8_t t, uint8_t l, uint32_t bs,
                        uint8_t* buf, uint64_t seed) {
  const uint32_t region = 4096 / bs;
  Result r = Rw(c, t, l, false, kGenLba, region, buf, 4096);
  if (!r.good() || r.transferred != 4096) {
    Error("READ(16) of the generation block", r);
    return ~0ull;
  }
  const auto* words = reinterpret_cast<const uint64_t*>(buf);
  bool zero = true;
  for (uint32_t i = 0; i < 512 && zero; ++i) zero = words[i] == 0;
  if (zero) return 0;
  if (words[0] != kGenMagic) return ~0ull;
  for (uint32_t i = 2; i < 512; ++i) {
    if (words[i] != Pattern(seed, words[1], i)) return ~0ull;
  }
  return words[1];
}

[[noreturn]] void Generations(Controller& c, uint8_t t, uint8_t l, uint8_t* buf,
                              uint64_t seed) {
  uint8_t rc16[16] = {0x9E, 0x10};
  rc16[13] = 32;
  Result r = c.Execute(t, l, rc16, 16, buf, 32, true);
  if (!r.good()) Fail("READ CAPACITY(16) of the generations disk");
  const uint32_t bs = Get32(buf + 8);
  if (bs == 0 || bs > 4096 || 4096 % bs != 0 ||
      Get64(buf) + 1 < kGenLba + 4096 / bs) {
    Fail("the generations disk is too small or has odd blocks");
  }
  uint64_t gen = 0;  // in memory: a restored guest has its own again
  for (;;) {
    const uint64_t on_disk = ReadGeneration(c, t, l, bs, buf, seed);
    con.Write("storage: gens: disk holds gen ");
    if (on_disk == ~0ull) {
      con.Write("<garbage>");
    } else {
      con.WriteDec(on_disk);
    }
    con.Write(", memory gen ");
    con.WriteDec(gen);
    con.Write("\r\n");
    ++gen;
    auto* words = reinterpret_cast<uint64_t*>(buf);
    words[0] = kGenMagic;
    words[1] = gen;
    for (uint32_t i = 2; i < 512; ++i) words[i] = Pattern(seed, gen, i);
    r = Rw(c, t, l, true, kGenLba, 4096 / bs, buf, 4096);
    if (!r.good() || r.transferred != 4096) Error("WRITE(16)", r);
    uint8_t sync[10] = {0x35};
    r = c.Execute(t, l, sync, 10, nullptr, 0, false);
    if (!r.good()) Error("SYNCHRONIZE CACHE(10)", r);
    if (ReadGeneration(c, t, l, bs, buf, seed) != gen) {
      ++errors;
      Line("ERROR: gens: the generation block reads back wrong");
    }
    con.Write("storage: gens: gen ");
    con.WriteDec(gen);
    con.Write(" written, ");
    con.WriteDec(errors);
    con.Write(" errors\r\n");
    WaitForLine();
  }
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  con.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  uint64_t seed = 1;
  HasWord(cmdline, "seed=", &seed);
  const bool hold = HasWord(cmdline, "hold", nullptr);
  const bool gens = HasWord(cmdline, "gens", nullptr);
  Line("start");
  if (const char* error =
          unixhv::vmbus::EnableHyperV(kSintVector, kTimerVector)) {
    Fail(error);
  }
  unixhv::vmbus::Client bus;
  if (bus.Connect() == 0) Fail("no VMBus version accepted");
  if (!bus.RequestOffers()) Fail("no ALLOFFERS_DELIVERED");
  auto* buf = static_cast<uint8_t*>(unixhv::AllocDataPages(kBufferPages));
  if (buf == nullptr) Fail("out of pages");
  int controllers = 0;
  for (int i = 0; i < bus.offer_count(); ++i) {
    if (!(bus.offer(i).type == unixhv::storvsc::kScsiType)) continue;
    Controller c;
    if (!c.Open(bus, bus.offer(i))) Fail("cannot open the SCSI channel");
    const uint16_t v = c.Initialize();
    if (v == 0) Fail("vstor initialization failed");
    con.Write("storage: controller ");
    con.WriteDec(controllers++);
    con.Write(": vstor ");
    con.WriteDec(v >> 8);
    con.Write(".");
    con.WriteDec(v & 0xFF);
    con.Write(", max transfer ");
    con.WriteDec(c.properties().max_transfer_bytes);
    con.Write("\r\n");
    for (uint8_t t = 0; t < 2; ++t) {
      uint8_t rl[12] = {0xA0};
      Put32(rl + 6, 4096);
      Result r = c.Execute(t, 0, rl, 12, buf, 4096, true);
      if (!r.good()) continue;  // no such target
      const uint32_t n = Get32(buf) / 8;
      uint8_t luns[64];
      uint32_t count = 0;
      for (uint32_t k = 0; k < n && k < 64 && 8 + 8 * k + 1 < r.transferred;
           ++k) {
        luns[count++] = buf[8 + 8 * k + 1];
      }
      if (gens && count > 0) Generations(c, t, luns[0], buf, seed);
      for (uint32_t k = 0; k < count; ++k) TestDisk(c, t, luns[k], buf, seed);
    }
    if (!hold) c.Close();
  }
  if (controllers == 0) Fail("no SCSI controller offered");
  con.Write("storage: done, ");
  con.WriteDec(errors);
  con.Write(" errors\r\n");
  if (hold) {
    Line("holding");
    for (;;) unixhv::vmbus::WaitForInterrupt();
  }
  bus.Unload();
}
