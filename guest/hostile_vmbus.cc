// A hostile enlightened guest: hypercalls with bad input pages and control
// words, bogus GPADLs, bogus OPENCHANNELs, garbage in ring buffers and
// malformed channel messages. Each probe prints
//   hostile: <what>: status 0x<got> (expected 0x<want>) ok|UNEXPECTED
// Then it checks that the host still answers (opens a channel cleanly after
// the garbage), unloads VMBus, prints "hostile: done" and powers off. The
// worker must stay up throughout.
#include "guest/unixhv/cpu.h"
#include "guest/unixhv/hyperv.h"
#include "guest/unixhv/ic.h"
#include "guest/unixhv/pages.h"
#include "guest/unixhv/unixhv.h"
#include "guest/unixhv/vmbus.h"

namespace {

using unixhv::kPageSize;
namespace hv = unixhv::hv;
namespace vmbus = unixhv::vmbus;

constexpr uint8_t kSintVector = 0x50;
constexpr uint8_t kTimerVector = 0x40;
constexpr uint32_t kFailed = 0xC0000001;      // what the host answers
constexpr uint64_t kOutsideRam = 1ull << 40;  // 1 TiB: no VM here has it

constinit unixhv::Serial con;
int unexpected = 0;

void Check(const char* what, uint64_t got, uint64_t want) {
  con.Write("hostile: ");
  con.Write(what);
  con.Write(": status ");
  con.WriteHex(got, 4);
  con.Write(" (expected ");
  con.WriteHex(want, 4);
  con.Write(") ");
  if (got == want) {
    con.Write("ok\r\n");
  } else {
    con.Write("UNEXPECTED\r\n");
    ++unexpected;
  }
}

// For replies that must be a failure of any kind.
void CheckFailed(const char* what, bool answered, uint32_t status) {
  con.Write("hostile: ");
  con.Write(what);
  if (!answered) {
    con.Write(": no answer UNEXPECTED\r\n");
    ++unexpected;
    return;
  }
  con.Write(": status ");
  con.WriteHex(status, 8);
  if (status == 0) {
    con.Write(" UNEXPECTED\r\n");
    ++unexpected;
  } else {
    con.Write(" refused ok\r\n");
  }
}

[[noreturn]] void Fail(const char* why) {
  con.Write("hostile: FAILED: ");
  con.Write(why);
  con.Write("\r\n");
  unixhv_power_off();
}

struct PostInput {
  uint32_t connection_id;
  uint32_t reserved;
  uint32_t message_type;
  uint32_t payload_size;
  uint8_t payload[240];
};

uint16_t Status(uint64_t rax) { return static_cast<uint16_t>(rax); }

volatile uint32_t ud_count = 0;

// #UD: count it and step over a faulting `out dx, eax` (0xEF) if RIP still
// points at it (whether the VMM completed the OUT before injecting is its
// business).
__attribute__((interrupt)) void UdHandler(unixhv::InterruptFrame* frame) {
  ud_count = ud_count + 1;
  if (*reinterpret_cast<volatile uint8_t*>(frame->rip) == 0xEF) {
    frame->rip += 1;
  }
}

// The hypercall trap port before GUEST_OS_ID / HYPERCALL enabled the page:
// the TLFS makes that a #UD.
void HypercallBeforeEnable() {
  unixhv::SetInterruptHandler(6, UdHandler);
  uint32_t rax = 0;
  asm volatile("out %%eax, %%dx"
               : "+a"(rax)
               : "d"(0x4856), "c"(0x5C)
               : "memory");
  con.Write("hostile: trap port before the hypercall page is enabled: ");
  if (ud_count == 1) {
    con.Write("#UD ok\r\n");
  } else {
    con.Write("no #UD UNEXPECTED\r\n");
    ++unexpected;
  }
}

// Requests whose replies the guest does not read: the host's queue for our
// message slot is bounded; replies beyond it are dropped on the host side
// and the host must not stall or grow. INITIATE_CONTACT while connected is
// answered (version_supported = 0) every time.
void Flood(vmbus::Client& bus) {
  vmbus::InitiateContact m = {};
  m.header.msgtype = vmbus::kMsgInitiateContact;
  m.vmbus_version_requested = vmbus::kVersionWin10V5_3;
  m.interrupt_page_or_sint = vmbus::kMessageSint;
  int accepted = 0;
  for (int i = 0; i < 200; ++i) {
    if (hv::PostMessage(vmbus::kMessageConnectionId4, 1, &m, sizeof(m)) ==
        hv::kStatusSuccess) {
      ++accepted;
    }
  }
  bus.Poll();  // drain what the host kept
  con.Write("hostile: flood: 200 INITIATE_CONTACT without reading replies: ");
  con.WriteDec(accepted);
  con.Write(" accepted, host still here\r\n");
}

void HypercallProbes(uint8_t* two_pages) {
  // A valid PostMessage input to vary: REQUESTOFFERS before INITIATE_CONTACT
  // (the host drops it, but the hypercall itself succeeds).
  auto* in = reinterpret_cast<PostInput*>(two_pages);
  auto fill = [](PostInput* p) {
    p->connection_id = vmbus::kMessageConnectionId;
    p->reserved = 0;
    p->message_type = 1;
    p->payload_size = 8;
    for (int i = 0; i < 240; ++i) p->payload[i] = 0;
    p->payload[0] = vmbus::kMsgRequestOffers;
  };
  fill(in);
  const uint64_t post = hv::kCallPostMessage;
  const uint64_t gpa = reinterpret_cast<uint64_t>(in);
  Check("post: well-formed (control)", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusSuccess);
  Check("post: input not 8-byte aligned",
        Status(hv::Hypercall(post, gpa + 4, 0)), hv::kStatusInvalidAlignment);
  auto* crossing = reinterpret_cast<PostInput*>(two_pages + kPageSize - 128);
  fill(crossing);
  Check("post: input crosses a page",
        Status(hv::Hypercall(post, reinterpret_cast<uint64_t>(crossing), 0)),
        hv::kStatusInvalidAlignment);
  Check("post: input outside RAM", Status(hv::Hypercall(post, kOutsideRam, 0)),
        hv::kStatusInvalidAlignment);
  Check("post: input in the MMIO hole (IOAPIC)",
        Status(hv::Hypercall(post, 0xFEC00000, 0)),
        hv::kStatusInvalidAlignment);
  Check("post: input at GPA 2^64-4096",
        Status(hv::Hypercall(post, ~0ull & ~0xFFFull, 0)),
        hv::kStatusInvalidAlignment);
  Check("control: unknown call code 0x7fff",
        Status(hv::Hypercall(0x7FFF, gpa, 0)), hv::kStatusInvalidHypercallCode);
  Check("control: nested bit 31",
        Status(hv::Hypercall(post | (1ull << 31), gpa, 0)),
        hv::kStatusInvalidHypercallInput);
  Check("control: reserved bit 63",
        Status(hv::Hypercall(post | (1ull << 63), gpa, 0)),
        hv::kStatusInvalidHypercallInput);
  Check("control: rep count on a simple call",
        Status(hv::Hypercall(post | (5ull << 32), gpa, 0)),
        hv::kStatusInvalidHypercallInput);
  Check("control: variable header size",
        Status(hv::Hypercall(post | (3ull << 17), gpa, 0)),
        hv::kStatusInvalidHypercallInput);
  in->payload_size = 241;
  Check("post: payload of 241 bytes", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusInvalidParameter);
  fill(in);
  in->message_type = 0;
  Check("post: message type 0", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusInvalidParameter);
  in->message_type = 0x80000001;
  Check("post: hypervisor message type", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusInvalidParameter);
  fill(in);
  in->reserved = 1;
  Check("post: reserved field set", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusInvalidParameter);
  fill(in);
  in->connection_id = 0x777;
  Check("post: unknown connection id", Status(hv::Hypercall(post, gpa, 0)),
        hv::kStatusInvalidConnectionId);
  Check("signal: unknown connection id",
        Status(hv::Hypercall(hv::kCallSignalEvent | hv::kCallFast, 0x777, 0)),
        hv::kStatusInvalidConnectionId);
  Check("signal: input page outside RAM",
        Status(hv::Hypercall(hv::kCallSignalEvent, kOutsideRam, 0)),
        hv::kStatusInvalidAlignment);
}

// GPADL_HEADER with hand-made ranges; waits for GPADL_CREATED.
void BogusGpadl(vmbus::Client& bus, const char* what, uint32_t relid,
                uint32_t handle, const uint32_t* range_words, uint32_t words,
                uint16_t rangecount, uint16_t range_buflen) {
  uint8_t msg[240] = {};
  auto* h = reinterpret_cast<vmbus::GpadlHeader*>(msg);
  h->header.msgtype = vmbus::kMsgGpadlHeader;
  h->child_relid = relid;
  h->gpadl = handle;
  h->range_buflen = range_buflen;
  h->rangecount = rangecount;
  auto* out = reinterpret_cast<uint32_t*>(msg + sizeof(vmbus::GpadlHeader));
  for (uint32_t i = 0; i < words; ++i) out[i] = range_words[i];
  bus.last_gpadl_created = {};
  bus.Post(msg, sizeof(vmbus::GpadlHeader) + words * 4);
  const bool answered = bus.WaitUntil(
      [&] {
        return bus.last_gpadl_created.seen &&
               bus.last_gpadl_created.id == handle;
      },
      1000);
  CheckFailed(what, answered, bus.last_gpadl_created.status);
}

void GpadlProbes(vmbus::Client& bus, uint32_t relid, uint8_t* pages) {
  const uint64_t pfn = reinterpret_cast<uint64_t>(pages) / kPageSize;
  auto lo = [](uint64_t v) { return static_cast<uint32_t>(v); };
  auto hi = [](uint64_t v) { return static_cast<uint32_t>(v >> 32); };
  {
    const uint64_t bad = kOutsideRam / kPageSize;
    const uint32_t r[] = {2 * 4096, 0, lo(pfn), hi(pfn), lo(bad), hi(bad)};
    BogusGpadl(bus, "gpadl: page outside RAM", relid, bus.next_gpadl_handle(),
               r, 6, 1, 24);
  }
  {
    const uint64_t hole = 0xFEC00000 / kPageSize;
    const uint32_t r[] = {4096, 0, lo(hole), hi(hole)};
    BogusGpadl(bus, "gpadl: page in the MMIO hole", relid,
               bus.next_gpadl_handle(), r, 4, 1, 16);
  }
  {
    const uint32_t r[] = {2 * 4096, 0, lo(pfn), hi(pfn), lo(pfn), hi(pfn)};
    BogusGpadl(bus, "gpadl: same page twice", relid, bus.next_gpadl_handle(), r,
               6, 1, 24);
  }
  {
    // Two ranges sharing their second page.
    const uint32_t r[] = {2 * 4096,    0,           lo(pfn),     hi(pfn),
                          lo(pfn + 1), hi(pfn + 1), 2 * 4096,    0,
                          lo(pfn + 1), hi(pfn + 1), lo(pfn + 2), hi(pfn + 2)};
    BogusGpadl(bus, "gpadl: overlapping ranges", relid, bus.next_gpadl_handle(),
               r, 12, 2, 48);
  }
  {
    const uint32_t r[] = {0, 0, lo(pfn), hi(pfn)};
    BogusGpadl(bus, "gpadl: zero byte count", relid, bus.next_gpadl_handle(), r,
               4, 1, 16);
  }
  {
    const uint32_t r[] = {16, 4096, lo(pfn), hi(pfn)};
    BogusGpadl(bus, "gpadl: byte offset outside its page", relid,
               bus.next_gpadl_handle(), r, 4, 1, 16);
  }
  {
    // Claims 3 pages, carries 1 PFN: range_buflen too short for the range.
    const uint32_t r[] = {3 * 4096, 0, lo(pfn), hi(pfn)};
    BogusGpadl(bus, "gpadl: range_buflen shorter than its range", relid,
               bus.next_gpadl_handle(), r, 4, 1, 16);
  }
  {
    const uint32_t r[] = {4096, 0, lo(pfn), hi(pfn)};
    BogusGpadl(bus, "gpadl: handle 0", relid, 0, r, 4, 1, 16);
  }
  {
    // A body that brings more than range_buflen promised.
    const uint32_t handle = bus.next_gpadl_handle();
    uint8_t msg[240] = {};
    auto* h = reinterpret_cast<vmbus::GpadlHeader*>(msg);
    h->header.msgtype = vmbus::kMsgGpadlHeader;
    h->child_relid = relid;
    h->gpadl = handle;
    h->range_buflen = 8 + 27 * 8;  // 27 pages: 26 here, 1 in a body
    h->rangecount = 1;
    auto* w = reinterpret_cast<uint32_t*>(msg + sizeof(vmbus::GpadlHeader));
    w[0] = 27 * 4096;
    w[1] = 0;
    auto* pfns = reinterpret_cast<uint64_t*>(w + 2);
    for (int i = 0; i < 26; ++i) pfns[i] = pfn + i;
    bus.last_gpadl_created = {};
    bus.Post(msg, sizeof(vmbus::GpadlHeader) + 8 + 26 * 8);
    uint8_t body[240] = {};
    auto* b = reinterpret_cast<vmbus::GpadlBody*>(body);
    b->header.msgtype = vmbus::kMsgGpadlBody;
    b->gpadl = handle;
    auto* more = reinterpret_cast<uint64_t*>(body + sizeof(vmbus::GpadlBody));
    for (int i = 0; i < 28; ++i) more[i] = pfn + 26 + i;
    bus.Post(body, sizeof(vmbus::GpadlBody) + 28 * 8);
    const bool answered = bus.WaitUntil(
        [&] {
          return bus.last_gpadl_created.seen &&
                 bus.last_gpadl_created.id == handle;
        },
        1000);
    CheckFailed("gpadl: body past range_buflen", answered,
                bus.last_gpadl_created.status);
  }
  {
    // A body nobody announced, and a header for a relid nobody offered: the
    // host has no one to answer for; it must just drop them.
    uint8_t body[240] = {};
    auto* b = reinterpret_cast<vmbus::GpadlBody*>(body);
    b->header.msgtype = vmbus::kMsgGpadlBody;
    b->gpadl = 0xBAD;
    bus.Post(body, sizeof(vmbus::GpadlBody) + 8);
    uint8_t msg[240] = {};
    auto* h = reinterpret_cast<vmbus::GpadlHeader*>(msg);
    h->header.msgtype = vmbus::kMsgGpadlHeader;
    h->child_relid = 1999;
    h->gpadl = bus.next_gpadl_handle();
    h->range_buflen = 16;
    h->rangecount = 1;
    bus.Post(msg, sizeof(vmbus::GpadlHeader) + 16);
    con.Write(
        "hostile: gpadl: body without header, header for relid 1999: sent\r\n");
  }
}

void MessageProbes(vmbus::Client& bus) {
  const uint8_t short_message[4] = {vmbus::kMsgOpenChannel, 0, 0, 0};
  bus.Post(short_message, sizeof(short_message));
  uint8_t unknown[16] = {99};
  bus.Post(unknown, sizeof(unknown));
  uint8_t wrong_size[40] = {vmbus::kMsgCloseChannel};  // 12 bytes expected
  bus.Post(wrong_size, sizeof(wrong_size));
  uint8_t host_type[20] = {vmbus::kMsgGpadlCreated};  // host-to-guest only
  bus.Post(host_type, sizeof(host_type));
  bus.Poll();
  con.Write(
      "hostile: messages: short, unknown type, wrong size, "
      "host-to-guest type: sent\r\n");
}

bool OpenWith(vmbus::Client& bus, const char* what, uint32_t relid,
              uint32_t gpadl, uint32_t split, uint32_t vp) {
  vmbus::OpenChannel m = {};
  m.header.msgtype = vmbus::kMsgOpenChannel;
  m.child_relid = relid;
  m.openid = relid;
  m.ringbuffer_gpadlhandle = gpadl;
  m.target_vp = vp;
  m.downstream_ringbuffer_pageoffset = split;
  bus.last_open_result = {};
  bus.Post(&m, sizeof(m));
  const bool answered = bus.WaitUntil(
      [&] {
        return bus.last_open_result.seen && bus.last_open_result.relid == relid;
      },
      1000);
  if (what != nullptr) CheckFailed(what, answered, bus.last_open_result.status);
  return answered && bus.last_open_result.status == 0;
}

}  // namespace

extern "C" void unixhv_main(uint64_t) {
  con.Init();
  con.Write("hostile: start\r\n");
  const hv::Features f = hv::Detect();
  if (!f.present) Fail("no Hyper-V interface");
  HypercallBeforeEnable();
  void* hypercall_page = unixhv::AllocPages(1);
  if (hypercall_page == nullptr || !hv::EnableHypercalls(hypercall_page)) {
    Fail("hypercall page");
  }
  hv::EnableReferenceTsc(unixhv::AllocPages(1));
  void* simp = unixhv::AllocPages(1);
  void* siefp = unixhv::AllocPages(1);
  hv::EnableSynic(simp, siefp, vmbus::kMessageSint, kSintVector);
  vmbus::InstallInterrupts(kSintVector, kTimerVector, 50);

  auto* scratch = static_cast<uint8_t*>(unixhv::AllocPages(2));
  HypercallProbes(scratch);

  vmbus::Client bus;
  if (bus.Connect() == 0) Fail("no VMBus version accepted");
  if (!bus.RequestOffers() || bus.offer_count() == 0) Fail("no offers");
  con.Write("hostile: vmbus connected, ");
  con.WriteDec(bus.offer_count());
  con.Write(" offers\r\n");

  const vmbus::Offer* hb = bus.FindOffer(unixhv::ic::kHeartbeatGuid);
  const vmbus::Offer* ts = bus.FindOffer(unixhv::ic::kTimeSyncGuid);
  const vmbus::Offer* sd = bus.FindOffer(unixhv::ic::kShutdownGuid);
  if (hb == nullptr || ts == nullptr || sd == nullptr) {
    Fail("heartbeat, time sync and shutdown offers needed");
  }
  auto* ring_pages = static_cast<uint8_t*>(unixhv::AllocPages(8));
  if (ring_pages == nullptr) Fail("out of pages");
  GpadlProbes(bus, hb->relid, ring_pages);
  MessageProbes(bus);
  Flood(bus);

  // OPENCHANNEL with bad parameters, against one good 8-page GPADL.
  uint32_t status = 0;
  const uint32_t gpadl = bus.CreateGpadl(hb->relid, ring_pages, 8, &status);
  Check("gpadl: well-formed 8 pages (control)", status, 0);
  OpenWith(bus, "open: unknown ring gpadl", hb->relid, 0xBADBAD, 4, 0);
  OpenWith(bus, "open: downstream offset 0", hb->relid, gpadl, 0, 0);
  OpenWith(bus, "open: downstream offset past the gpadl", hb->relid, gpadl, 8,
           0);
  OpenWith(bus, "open: target vp 7 of 1", hb->relid, gpadl, 4, 7);
  OpenWith(bus, "open: another channel's gpadl", ts->relid, gpadl, 4, 0);
  {
    // The same GPADL handle again.
    const uint64_t pfn = reinterpret_cast<uint64_t>(ring_pages) / kPageSize;
    const uint32_t r[] = {4096, 0, static_cast<uint32_t>(pfn),
                          static_cast<uint32_t>(pfn >> 32)};
    BogusGpadl(bus, "gpadl: handle already in use", hb->relid, gpadl, r, 4, 1,
               16);
  }

  // Garbage in rings: a channel opened properly, then fed nonsense.
  vmbus::Channel heartbeat;
  heartbeat.relid = hb->relid;
  heartbeat.connection_id = hb->connection_id;
  heartbeat.gpadl = gpadl;
  heartbeat.out.Init(ring_pages, 4);
  heartbeat.in.Init(ring_pages + 4 * kPageSize, 4);
  if (!OpenWith(bus, nullptr, hb->relid, gpadl, 4, 0)) {
    Fail("open heartbeat with a good ring");
  }
  heartbeat.open = true;
  con.Write("hostile: heartbeat opened\r\n");
  // A descriptor claiming 0xFFFF * 8 bytes, with an offset past its length.
  const uint8_t garbage[24] = {0x06, 0x00, 0x30, 0x00, 0xFF, 0xFF, 0x01, 0x00,
                               0xDE, 0xAD, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF,
                               0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55};
  heartbeat.out.WriteRaw(garbage, sizeof(garbage), 24);
  Check("ring: oversized descriptor, signal",
        hv::SignalEvent(heartbeat.connection_id), hv::kStatusSuccess);
  bus.Poll();

  vmbus::Channel timesync;
  if (!bus.Open(*ts, &timesync, 4, 4, &status)) Fail("open time sync");
  con.Write("hostile: timesync opened\r\n");
  // Write index outside the ring, not a multiple of 8.
  timesync.out.WriteRaw(garbage, 8, 0xFFFFFFF3);
  Check("ring: write index outside the ring, signal",
        hv::SignalEvent(timesync.connection_id), hv::kStatusSuccess);
  // And a zero-length descriptor (len8 = 0) at index 0.
  const uint8_t zero_len[24] = {0x06, 0, 0x02, 0, 0, 0, 0, 0};
  timesync.out.header()->write_index = 0;
  timesync.out.WriteRaw(zero_len, sizeof(zero_len), 24);
  hv::SignalEvent(timesync.connection_id);
  // Read index outside our inbound ring: the host's writer must refuse it.
  timesync.in.header()->read_index = 0x7FFFFFF8;
  hv::SignalEvent(timesync.connection_id);
  bus.Poll();

  // Ring header abuse on a third channel: an absurd pending_send_sz on the
  // ring we write (the host's reader must not overflow computing when to
  // signal us), and our inbound ring masked and never read (the host's
  // writer must give up, not wait).
  const vmbus::Offer* kv = bus.FindOffer(unixhv::ic::kKvpGuid);
  vmbus::Channel kvp;
  if (kv != nullptr && bus.Open(*kv, &kvp, 4, 4, &status)) {
    kvp.out.header()->pending_send_sz = 0xFFFFFFF8;
    kvp.out.header()->feature_bits = 0xFFFFFFFF;
    kvp.in.header()->interrupt_mask = 1;
    uint8_t junk[64] = {1, 2, 3};
    bool signal = false;
    for (int i = 0; i < 3; ++i) {
      kvp.out.Write(vmbus::kPacketDataInband, 0, i, junk, sizeof(junk),
                    &signal);
      hv::SignalEvent(kvp.connection_id);
    }
    bus.Poll();
    con.Write(
        "hostile: ring: absurd pending_send_sz, masked inbound ring: "
        "sent\r\n");
  } else {
    Check("open kvp for the ring-header probe", status, 0);
  }

  // The host must still do its job: a clean open, a clean close.
  vmbus::Channel shutdown;
  const bool opened = bus.Open(*sd, &shutdown, 4, 4, &status);
  Check("after the garbage: open shutdown cleanly", opened ? 0 : status, 0);
  bus.Close(&shutdown);
  vmbus::RelidMessage close = {};
  close.header.msgtype = vmbus::kMsgCloseChannel;
  close.child_relid = hb->relid;
  bus.Post(&close, sizeof(close));
  close.child_relid = ts->relid;
  bus.Post(&close, sizeof(close));
  bus.Close(&kvp);
  Check("unload answered", bus.Unload() ? 0 : 1, 0);
  con.Write("hostile: done, ");
  con.WriteDec(unexpected);
  con.Write(" unexpected\r\n");
}
