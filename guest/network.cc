// A UnixHv guest that uses its network adapters through netvsp the way
// Linux's hv_netvsc does (guest/unixhv/netvsc.h), and checks every frame
// size both ways byte for byte, and the link indications:
//  1. brings up every netvsc adapter offered (at most 2): "network: nic<i>
//     up: nvsp 0x<v> mtu <m> mac <mac> link <up|down>, <n> receive sections
//     of <s>"
//  2. sends one frame of every size from `min=` (60) to `max=` (MTU + 14) on
//     nic0 (every `step=`th size, and `max` itself, with a step: jumbo
//     frames), odd sizes as GPA-direct ranges, even ones in send sections:
//     "network: tx done <n> frames, <e> errors"
//  3. "network: rx ready", then expects the same sizes, in order, sent to
//     its MAC: "network: rx done <n> frames, <e> errors"
//  4. "network: link phase": reports "network: link down" and "network:
//     link up" as the indications come, then sends one frame
//  5. with 2 adapters: a frame out of nic1 and one in ("network: nic1 ok")
//  6. "network: done, <n> errors", then powers off (`hold`: halts instead).
// `phases=` picks the steps and their order: t (2), r (3), l (4), p (5),
// w (wait 2 s); the default is "trlp".
// Frames: dst | src | ethertype 0x88B5 | size (u16, big-endian) | byte i =
// (i * 13 + (i >> 8) * 7 + 0x5A) & 0xFF for i >= 16 (the host test builds
// and checks the same).
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/netvsc.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

using unixhv::netvsc::Adapter;

constexpr uint8_t kSintVector = 0x50;
constexpr uint8_t kTimerVector = 0x40;
constexpr uint32_t kFrameBuffer = 9216;

unixhv::Serial con;
int errors = 0;
Adapter adapters[2];  // large: never on the 16 KiB stack
uint8_t frame[kFrameBuffer];
uint8_t received[kFrameBuffer];

void Line(const char* a, const char* b = nullptr) {
  con.Write("network: ");
  con.Write(a);
  if (b != nullptr) con.Write(b);
  con.Write("\r\n");
}
[[noreturn]] void Fail(const char* why, const char* detail = nullptr) {
  con.Write("network: FAILED: ");
  con.Write(why);
  if (detail != nullptr) {
    con.Write(": ");
    con.Write(detail);
  }
  con.Write("\r\n");
  unixhv_power_off();
}

bool Word(const unixhv::CommandLine& c, const char* word, uint64_t* value,
          const char** text = nullptr) {
  if (c.text == nullptr) return false;
  size_t n = 0;
  while (word[n] != 0) ++n;
  for (size_t i = 0; i + n <= c.length; ++i) {
    if (i > 0 && c.text[i - 1] != ' ') continue;
    size_t k = 0;
    while (k < n && c.text[i + k] == word[k]) ++k;
    if (k != n) continue;
    if (text != nullptr) *text = c.text + i + n;
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

uint8_t Pattern(uint32_t i) {
  return static_cast<uint8_t>(i * 13 + (i >> 8) * 7 + 0x5A);
}

// frame[] keeps the pattern; only the header changes per frame.
void Header(const uint8_t* dst, const uint8_t* src, uint32_t size) {
  for (int i = 0; i < 6; ++i) {
    frame[i] = dst[i];
    frame[6 + i] = src[i];
  }
  frame[12] = 0x88;
  frame[13] = 0xB5;
  frame[14] = static_cast<uint8_t>(size >> 8);
  frame[15] = static_cast<uint8_t>(size);
}

bool SameAsPattern(const uint8_t* f, uint32_t size) {
  uint32_t i = 16;
  for (; i + 8 <= size; i += 8) {
    uint64_t a, b;
    __builtin_memcpy(&a, f + i, 8);
    __builtin_memcpy(&b, frame + i, 8);
    if (a != b) return false;
  }
  for (; i < size; ++i) {
    if (f[i] != frame[i]) return false;
  }
  return true;
}

void WriteMac(const uint8_t* mac) {
  static const char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 6; ++i) {
    if (i > 0) con.PutChar(':');
    con.PutChar(kDigits[mac[i] >> 4]);
    con.PutChar(kDigits[mac[i] & 0xF]);
  }
}

constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// Waits until `done` holds, handling the adapter's ring meanwhile.
template <typename Pred>
bool WaitFor(unixhv::vmbus::Client& bus, Adapter& a, Pred done,
             uint32_t timeout_ms) {
  return bus.WaitUntil(
      [&] {
        a.Poll();
        return done();
      },
      timeout_ms);
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  con.Init();
  const unixhv::CommandLine cmdline = unixhv::GetCommandLine(boot_params);
  const char* phases = nullptr;
  Word(cmdline, "phases=", nullptr, &phases);
  uint64_t min = 60, max = 0, step = 1;
  Word(cmdline, "min=", &min);
  Word(cmdline, "max=", &max);
  Word(cmdline, "step=", &step);
  if (step == 0) step = 1;
  const bool hold = Word(cmdline, "hold", nullptr);
  Line("start");
  if (const char* missing =
          unixhv::vmbus::EnableHyperV(kSintVector, kTimerVector)) {
    Fail(missing);
  }
  unixhv::vmbus::Client bus;
  if (bus.Connect() == 0) Fail("no VMBus version accepted");
  if (!bus.RequestOffers()) Fail("no ALLOFFERS_DELIVERED");

  int count = 0;
  for (int i = 0; i < bus.offer_count() && count < 2; ++i) {
    const unixhv::vmbus::Offer& o = bus.offer(i);
    if (!(o.type == unixhv::netvsc::kNetType)) continue;
    Adapter& a = adapters[count];
    if (!a.Open(bus, o)) {
      con.Write("network: bring-up state: packets ");
      con.WriteDec(a.packets_seen);
      con.Write(" last type ");
      con.WriteDec(a.last_packet_type);
      con.Write(" trans_id ");
      con.WriteHex(a.last_trans_id, 8);
      con.Write(" receive ");
      con.WriteDec(a.last_receive_result < 0 ? 999 : a.last_receive_result);
      con.Write(" unexpected ");
      con.WriteDec(a.unexpected);
      con.Write(a.channel().broken ? " broken" : " ok");
      con.Write("\r\n");
      Fail("adapter bring-up", a.step());
    }
    con.Write("network: nic");
    con.WriteDec(count);
    con.Write(" up: nvsp ");
    con.WriteHex(a.nvsp_version, 5);
    con.Write(" mtu ");
    con.WriteDec(a.mtu);
    con.Write(" mac ");
    WriteMac(a.mac);
    con.Write(a.link_up ? " link up, " : " link down, ");
    con.WriteDec(a.receive_sections);
    con.Write(" receive sections of ");
    con.WriteDec(a.receive_section_size);
    con.Write("\r\n");
    ++count;
  }
  if (count == 0) Fail("no network adapter offered");
  Adapter& nic = adapters[0];
  if (max == 0 || max > nic.mtu + 14u) max = nic.mtu + 14u;
  // The size after `size`: `step` on, `max` last.
  auto next = [&](uint32_t size) -> uint32_t {
    if (size >= max) return size + 1;
    return size + step > max ? static_cast<uint32_t>(max)
                             : size + static_cast<uint32_t>(step);
  };
  for (uint32_t i = 16; i < kFrameBuffer; ++i) frame[i] = Pattern(i);

  auto tx = [&] {
    uint32_t sent = 0, failed = 0;
    for (uint32_t size = static_cast<uint32_t>(min); size <= max;
         size = next(size)) {
      Header(kBroadcast, nic.mac, size);
      const uint32_t status = nic.SendFrame(frame, size, (size & 1) != 0);
      if (status == unixhv::netvsc::kNvspSuccess) {
        ++sent;
      } else {
        ++failed;
        if (failed <= 4) {
          con.Write("network: ERROR: frame of ");
          con.WriteDec(size);
          con.Write(" bytes: status ");
          con.WriteDec(status);
          con.Write("\r\n");
        }
      }
    }
    errors += failed;
    con.Write("network: tx done ");
    con.WriteDec(sent);
    con.Write(" frames, ");
    con.WriteDec(failed);
    con.Write(" errors\r\n");
  };

  auto rx = [&] {
    Line("rx ready");
    uint32_t got = 0, bad = 0;
    for (uint32_t size = static_cast<uint32_t>(min); size <= max;) {
      // The first frame may come much later: the sender may be a VM that is
      // still booting (minutes under emulation).
      const uint32_t n =
          nic.ReceiveFrame(received, kFrameBuffer, got == 0 ? 900000 : 30000);
      if (n == 0) {
        con.Write("network: ERROR: rx timeout waiting for ");
        con.WriteDec(size);
        con.Write(" bytes\r\n");
        ++bad;
        break;
      }
      if (n < 16 || received[12] != 0x88 || received[13] != 0xB5) continue;
      const uint32_t tag = uint32_t{received[14]} << 8 | received[15];
      if (tag != size || n != size || !SameAsPattern(received, n)) {
        if (++bad <= 4) {
          con.Write("network: ERROR: rx expected ");
          con.WriteDec(size);
          con.Write(" bytes, got ");
          con.WriteDec(n);
          con.Write(" (tag ");
          con.WriteDec(tag);
          con.Write(")\r\n");
        }
        size = next(tag);  // resynchronise on what came
        continue;
      }
      ++got;
      size = next(size);
    }
    errors += bad;
    con.Write("network: rx done ");
    con.WriteDec(got);
    con.Write(" frames, ");
    con.WriteDec(bad);
    con.Write(" errors\r\n");
  };

  auto link = [&] {
    Line("link phase");
    const uint32_t downs = nic.link_down_indications;
    if (!WaitFor(
            bus, nic, [&] { return nic.link_down_indications > downs; },
            60000)) {
      ++errors;
      Line("ERROR: no link-down indication");
    } else {
      Line("link down");
    }
    const uint32_t ups = nic.link_up_indications;
    if (!WaitFor(
            bus, nic, [&] { return nic.link_up_indications > ups; }, 60000)) {
      ++errors;
      Line("ERROR: no link-up indication");
    } else {
      Line("link up");
    }
    Header(kBroadcast, nic.mac, 100);
    if (nic.SendFrame(frame, 100) == unixhv::netvsc::kNvspSuccess) {
      Line("tx after link up ok");
    } else {
      ++errors;
      Line("ERROR: tx after link up");
    }
  };

  auto second_nic = [&] {
    if (count < 2) return;
    Adapter& second = adapters[1];
    Header(kBroadcast, second.mac, 200);
    const bool out =
        second.SendFrame(frame, 200) == unixhv::netvsc::kNvspSuccess;
    const uint32_t n = second.ReceiveFrame(received, kFrameBuffer, 30000);
    if (out && n == 200 && SameAsPattern(received, n)) {
      Line("nic1 ok");
    } else {
      ++errors;
      Line("ERROR: nic1");
    }
  };

  // The phases in the order given (default "trlp"); 'w' waits 2 s.
  const char* order = phases != nullptr ? phases : "trlp";
  for (const char* c = order; *c != 0 && *c != ' '; ++c) {
    switch (*c) {
      case 't':
        tx();
        break;
      case 'r':
        rx();
        break;
      case 'l':
        link();
        break;
      case 'p':
        second_nic();
        break;
      case 'w': {
        const uint64_t until = unixhv::hv::ReadReferenceTime() + 20000000;
        while (unixhv::hv::ReadReferenceTime() < until) {
          unixhv::vmbus::WaitForInterrupt();
        }
        break;
      }
      default:
        break;
    }
  }

  con.Write("network: done, ");
  con.WriteDec(errors);
  con.Write(" errors\r\n");
  if (hold) {
    for (;;) unixhv::StiHlt();
  }
  unixhv_power_off();
}
