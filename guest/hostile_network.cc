// A UnixHv guest that abuses its first network adapter (netvsp) the ways a
// hostile or broken netvsc could, and checks that each abuse gets an error
// status (or nothing, where the host owes no answer) while the adapter, the
// second adapter and the worker keep working. One line per probe:
// "hostile-net: <probe>: status 0x<s> (expected 0x<e>) ok" or "...
// UNEXPECTED"; the host test checks the counters the worker reports. Then:
//  - "hostile-net: flood ready": after 3 s (the host takes nic0's TAP
//    interface down meanwhile) 2000 frames go out, every one completed:
//    "hostile-net: flood: 2000 sent, 2000 completed"; then 3 s more (the
//    host brings the interface back up);
//  - nic1 comes up, sends a frame and receives one: "hostile-net: nic1 ok";
//  - nic0 sends one more frame: "hostile-net: nic0 still works";
//  - "hostile-net: done, <n> unexpected", power off.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/netvsc.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

using unixhv::netvsc::Adapter;
using unixhv::netvsc::NvspMessage;
namespace nv = unixhv::netvsc;

constexpr uint8_t kSintVector = 0x50;
constexpr uint8_t kTimerVector = 0x40;

unixhv::Serial con;
int unexpected = 0;
Adapter nic0, nic1;
uint8_t frame[2048];
uint8_t message[4096];

void Check(const char* probe, uint32_t status, uint32_t expected) {
  con.Write("hostile-net: ");
  con.Write(probe);
  con.Write(": status ");
  con.WriteHex(status, 8);
  con.Write(" (expected ");
  con.WriteHex(expected, 8);
  con.Write(")");
  if (status == expected) {
    con.Write(" ok\r\n");
  } else {
    con.Write(" UNEXPECTED\r\n");
    ++unexpected;
  }
}
void Line(const char* a) {
  con.Write("hostile-net: ");
  con.Write(a);
  con.Write("\r\n");
}
[[noreturn]] void Fail(const char* why, const char* detail = "") {
  con.Write("hostile-net: FAILED: ");
  con.Write(why);
  con.Write(" ");
  con.Write(detail);
  con.Write("\r\n");
  unixhv_power_off();
}

void Put32(uint8_t* p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

NvspMessage Nvsp(uint32_t type, uint32_t a = 0, uint32_t b = 0,
                 uint32_t c = 0) {
  NvspMessage m{};
  m.type = type;
  m.body[0] = a;
  m.body[1] = b;
  m.body[2] = c;
  return m;
}

// An RNDIS packet message of a `length`-byte frame at `out` (header as
// netvsc_xmit writes it); its size.
uint32_t PacketMessage(uint8_t* out, uint32_t length) {
  for (uint32_t i = 0; i < nv::kRndisPacketHeader; ++i) out[i] = 0;
  Put32(out, nv::kRndisPacket);
  Put32(out + 4, nv::kRndisPacketHeader + length);
  Put32(out + 8, 36);
  Put32(out + 12, length);
  for (uint32_t i = 0; i < length; ++i) {
    out[nv::kRndisPacketHeader + i] = static_cast<uint8_t>(i * 7 + 1);
  }
  for (int i = 0; i < 6; ++i) out[nv::kRndisPacketHeader + i] = 0xff;
  out[nv::kRndisPacketHeader + 12] = 0x88;
  out[nv::kRndisPacketHeader + 13] = 0xB5;
  return nv::kRndisPacketHeader + length;
}

// `bytes` in send section `section`, announced as `size` bytes of
// `section_index`: the completion's status.
uint32_t SendSection(Adapter& a, const uint8_t* bytes, uint32_t length,
                     uint32_t section_index, uint32_t size) {
  if (length > a.send_section_size()) length = a.send_section_size();
  // Into the section named when there is one (else section 0: the host
  // must not look anyway).
  uint8_t* to = a.send_buffer() + (section_index < a.send_sections()
                                       ? section_index * a.send_section_size()
                                       : 0);
  for (uint32_t i = 0; i < length; ++i) to[i] = bytes[i];
  return a.Request(Nvsp(nv::kNvspSendRndisPacket, 0, section_index, size));
}

void Wait(unixhv::vmbus::Client& bus, uint32_t ms) {
  bus.WaitUntil([] { return false; }, ms);
}

void Probes(unixhv::vmbus::Client& bus, const unixhv::vmbus::Offer& offer) {
  if (!nic0.OpenChannel(bus, offer, {})) Fail("nic0 channel");
  if (nic0.Negotiate(0x60001) == 0) Fail("nic0 NVSP version");

  // Receive buffers: outside RAM (the GPADL itself is refused), too small,
  // the ring's own GPADL, a handle that does not exist.
  uint32_t status = 0;
  const uint32_t outside = bus.CreateGpadl(
      nic0.channel().relid, reinterpret_cast<void*>(0x40000000ull), 8, &status);
  Check("receive-buffer GPADL outside RAM refused", outside == 0 ? 1 : 0, 1);
  Check("SEND_RECV_BUF naming no GPADL",
        nic0.LendReceiveBuffer(0x12345, nullptr, 8), nv::kNvspFail);
  void* small = unixhv::AllocPages(4);
  const uint32_t small_gpadl =
      bus.CreateGpadl(nic0.channel().relid, small, 4, &status);
  Check("receive buffer of 16 KiB (too small)",
        nic0.LendReceiveBuffer(small_gpadl, small, 4), nv::kNvspFail);
  Check("receive buffer = the ring's GPADL",
        nic0.LendReceiveBuffer(nic0.channel().gpadl, nullptr, 16),
        nv::kNvspFail);
  // Now the real buffers and RNDIS.
  void* rx = unixhv::AllocPages(32);
  const uint32_t rx_gpadl =
      bus.CreateGpadl(nic0.channel().relid, rx, 32, &status);
  Check("receive buffer of 128 KiB", nic0.LendReceiveBuffer(rx_gpadl, rx, 32),
        nv::kNvspSuccess);
  Check("a second receive buffer", nic0.LendReceiveBuffer(rx_gpadl, rx, 32),
        nv::kNvspFail);
  void* tx = unixhv::AllocPages(16);
  const uint32_t tx_gpadl =
      bus.CreateGpadl(nic0.channel().relid, tx, 16, &status);
  Check("send buffer of 64 KiB", nic0.LendSendBuffer(tx_gpadl, tx, 16),
        nv::kNvspSuccess);
  if (!nic0.InitializeRndis()) Fail("nic0 RNDIS");

  // RNDIS messages with bad lengths and offsets (INVALID_RNDIS_PKT).
  const uint32_t good = PacketMessage(message, 100);
  struct Field {
    const char* probe;
    uint32_t offset;
    uint32_t value;
  } fields[] = {
      {"RNDIS msg_len 0", 4, 0},
      {"RNDIS msg_len past the section", 4, 5000},
      {"RNDIS data offset outside the message", 8, 4000},
      {"RNDIS data length past the message", 12, 101},
      {"RNDIS per-packet info length wraps", 32, 0xFFFFFFF0},
  };
  for (const Field& f : fields) {
    PacketMessage(message, 100);
    Put32(message + 8 + 20, 36);  // per-packet info offset (length 0: none)
    Put32(message + f.offset, f.value);
    Check(f.probe, SendSection(nic0, message, good, 0, good),
          nv::kNvspInvalidRndis);
  }
  // Send sections out of range, and larger than a section.
  PacketMessage(message, 100);
  Check("send section out of range",
        SendSection(nic0, message, good, nic0.send_sections(), good),
        nv::kNvspFail);
  Check("send section index 0xfffffffe",
        SendSection(nic0, message, good, 0xFFFFFFFE, good), nv::kNvspFail);
  Check("send section size larger than a section",
        SendSection(nic0, message, good, 0, nic0.send_section_size() + 1),
        nv::kNvspFail);
  // GPA-direct ranges outside RAM.
  uint8_t ext[32] = {};
  Put32(ext + 4, 1);
  const uint32_t ext_length =
      8 + nic0.BuildRange(reinterpret_cast<void*>(0x50000000ull), 100, ext + 8);
  Check("GPA-direct range outside RAM",
        nic0.Request(Nvsp(nv::kNvspSendRndisPacket, 0, nv::kNoSection, 0), ext,
                     ext_length),
        nv::kNvspFail);
  // A frame larger than the MTU: completed, dropped and counted.
  const uint32_t big = PacketMessage(message, 1515);
  Check("frame of 1515 bytes (MTU 1500)",
        SendSection(nic0, message, big, 1, big), nv::kNvspSuccess);
  // A completion for a transaction the host never sent: no answer.
  const NvspMessage complete =
      Nvsp(nv::kNvspSendRndisPacketComplete, nv::kNvspSuccess);
  nic0.SendRaw(unixhv::vmbus::kPacketCompletion, 0, 0xDEAD, nullptr, 0,
               &complete, 8);
  Line("completion for transaction 0xdead sent (the host counts it)");
  // An unknown NVSP message type.
  const NvspMessage unknown = Nvsp(200);
  nic0.SendRaw(unixhv::vmbus::kPacketDataInband, 0, 0, nullptr, 0, &unknown,
               sizeof(unknown));
  Line("NVSP message of type 200 sent (the host counts it)");
  // A QUERY whose information buffer lies outside the message.
  uint8_t query[28] = {};
  Put32(query, nv::kRndisQuery);
  Put32(query + 4, 28);
  Put32(query + 8, 77);
  Put32(query + 12, nv::kOidLinkSpeed);
  Put32(query + 16, 64);  // info length past the message
  Put32(query + 20, 20);
  uint8_t reply[64];
  uint32_t reply_length = 0;
  if (nic0.Rndis(query, sizeof(query), reply, sizeof(reply), &reply_length) &&
      reply_length >= 16) {
    uint32_t s;
    __builtin_memcpy(&s, reply + 12, 4);
    Check("RNDIS QUERY with its buffer outside the message", s, 0xC0010015);
  } else {
    Check("RNDIS QUERY with its buffer outside the message", 0, 0xC0010015);
  }
  // The adapter still moves frames.
  for (uint32_t i = 0; i < 100; ++i) frame[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 6; ++i) frame[i] = 0xff;
  frame[12] = 0x88;
  frame[13] = 0xB5;
  Check("a good frame after all that", nic0.SendFrame(frame, 100),
        nv::kNvspSuccess);
}

}  // namespace

extern "C" void unixhv_main(uint64_t boot_params) {
  con.Init();
  Line("start");
  if (const char* missing =
          unixhv::vmbus::EnableHyperV(kSintVector, kTimerVector)) {
    Fail(missing);
  }
  unixhv::vmbus::Client bus;
  if (bus.Connect() == 0) Fail("no VMBus version accepted");
  if (!bus.RequestOffers()) Fail("no ALLOFFERS_DELIVERED");
  const unixhv::vmbus::Offer* offers[2] = {};
  int count = 0;
  for (int i = 0; i < bus.offer_count() && count < 2; ++i) {
    if (bus.offer(i).type == nv::kNetType) offers[count++] = &bus.offer(i);
  }
  if (count < 2) Fail("needs two network adapters");

  Probes(bus, *offers[0]);

  // A flood while the host's TAP device refuses every write.
  Line("flood ready");
  Wait(bus, 3000);
  uint32_t completed = 0;
  for (uint32_t i = 0; i < 2000; ++i) {
    frame[14] = static_cast<uint8_t>(i);
    if (nic0.SendFrame(frame, 100) == nv::kNvspSuccess) ++completed;
  }
  con.Write("hostile-net: flood: 2000 sent, ");
  con.WriteDec(completed);
  con.Write(" completed\r\n");
  if (completed != 2000) ++unexpected;
  Wait(bus, 3000);

  // The other adapter works.
  if (!nic1.Open(bus, *offers[1])) Fail("nic1 bring-up", nic1.step());
  for (uint32_t i = 0; i < 200; ++i) frame[i] = static_cast<uint8_t>(i + 3);
  for (int i = 0; i < 6; ++i) frame[i] = 0xff;
  frame[12] = 0x88;
  frame[13] = 0xB5;
  const bool sent = nic1.SendFrame(frame, 200) == nv::kNvspSuccess;
  Line("nic1: sent");
  uint8_t in[2048];
  const uint32_t n = nic1.ReceiveFrame(in, sizeof(in), 60000);
  if (sent && n == 200) {
    Line("nic1 ok");
  } else {
    ++unexpected;
    Line("nic1 UNEXPECTED");
  }
  // And the abused one still does.
  frame[14] = 0xEE;
  if (nic0.SendFrame(frame, 100) == nv::kNvspSuccess) {
    Line("nic0 still works");
  } else {
    ++unexpected;
    Line("nic0 UNEXPECTED");
  }
  con.Write("hostile-net: done, ");
  con.WriteDec(unexpected);
  con.Write(" unexpected\r\n");
  unixhv_power_off();
}
