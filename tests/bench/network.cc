// Host-side netvsp throughput next to raw I/O on the same TAP device, same
// frames, same run (issue 12): 64-byte and 1500-byte frames, both ways.
//
//   bazel run -c opt //tests/bench:network [-- --runs=5 --seconds=0.5
//       --slices=10 --only=SUBSTRING --per_run --side=both|raw|netvsp]
//
// Needs root (CAP_NET_ADMIN) and /dev/net/tun. The process first moves into
// a network namespace of its own (vsp::net::testing::EnterNewNetworkNamespace)
// and creates one TAP device there as vmms opens them (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, offloads off, non-blocking); nothing is sent anywhere else.
// The frames carry an experimental ethertype (0x88B5) that the namespace's
// stack drops right after its packet taps, the same for both sides.
//
// netvsp: the real NetAdapter (manual mode: this thread runs its device
// loop with Poll() instead of a device thread), the real VMBus server, and a
// guest netvsc peer (vmwp/vsp/net/test_netvsc_guest.h, Linux's bring-up) on
// rings and buffers in guest-memory-like pages with Linux's default sizes:
// 512 KiB rings each way, a 16 MiB receive buffer, a 1 MiB send buffer
// (6144-byte sections). No KVM.
//  - guest -> host: the guest queues SEND_RNDIS_PKT messages (128 per round,
//    as netvsc under load) naming a send-buffer section that holds an
//    RNDIS_PACKET_MSG, or GPA-direct pages (the RNDIS header and the frame as
//    two page-buffer ranges, as netvsc_xmit without a section); netvsp
//    drains them, copies the bytes out of guest memory, parses them, writes
//    each frame to the TAP descriptor (writev) and completes the packet.
//  - host -> guest: frames wait in the TAP device's queue (put there by an
//    AF_PACKET socket on the interface, untimed); netvsp reads them (readv),
//    copies each into a receive section behind its RNDIS header, sends
//    transfer-page packets (32 frames each), and frees sections when the
//    guest completes them.
// Raw TAP: one thread, writev() of the same frames on the same descriptor
// (virtio-net header + frame: the syscall netvsp makes) / readv() of the
// same frames from the same queue, filled the same way.
//
// What is timed is host work only: the raw loop, and netvsp's Poll() rounds
// (drain, copies, TAP I/O, completions, transfer-page packets). The guest
// peer's part (writing packets into the ring, reading completions and
// transfer-page packets, completing them) runs on this thread too, between
// rounds, untimed: in a VM it runs on the guest's own vCPU. Its CPU per
// packet is printed apart. CPU per packet is this thread's CPU time
// (CLOCK_THREAD_CPUTIME_ID) in the timed parts: on a loaded machine it moves
// much less than packets/s. Every run measures each case on both sides in
// --slices short slices, raw and netvsp alternating (so that the machine's
// load hits both alike); figures are medians over --runs, the ratios the
// medians of the runs' paired ratios of frames/s (with their range) and of
// CPU per frame. --side=raw|netvsp measures one side only (profiling).
//
// Checked in every measurement: the interface's counters (/proc/self/net/dev
// of the namespace) saw every frame written (both sides), the guest received
// every frame that was queued (length and ethertype), netvsp counted no drop
// and no protocol error; before the runs one frame each way is compared byte
// for byte against an AF_PACKET socket on the interface.

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "tests/bench/bench_stats.h"
#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/net/net_adapter.h"
#include "vmwp/vsp/net/nvsp.h"
#include "vmwp/vsp/net/rndis.h"
#include "vmwp/vsp/net/tap_device.h"
#include "vmwp/vsp/net/test_netvsc_guest.h"
#include "vmwp/vsp/net/test_tap.h"

ABSL_FLAG(int, runs, 5, "runs; each measures every case on both sides");
ABSL_FLAG(double, seconds, 0.5, "timed seconds per case and side in a run");
ABSL_FLAG(int, slices, 10,
          "slices per case and run, raw and netvsp alternating, so that load "
          "changes hit both sides alike");
ABSL_FLAG(std::string, only, "", "run only the cases whose name contains it");
ABSL_FLAG(bool, per_run, false, "print every run's figures too");
ABSL_FLAG(std::string, side, "both",
          "both, or only raw / netvsp (for profiling one side: no ratio)");

namespace {

using Clock = std::chrono::steady_clock;
using vmbus::testing::FakeGuest;
using namespace vsp::net;
namespace nt = vsp::net::testing;
using nt::NetvscGuest;

constexpr uint16_t kEtherType = 0x88B5;  // IEEE local experimental
constexpr MacAddress kGuestMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr uint8_t kPeerMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x99};
constexpr char kTapName[] = "nbtap0";
// Frames per guest round (guest -> host), at most the send sections (170).
constexpr uint32_t kTxRound = 128;
// Frames queued in the TAP device per host -> guest batch (its txqueuelen).
constexpr uint32_t kRxBatch = 4096;

constexpr nt::GuestLayout kLayout{
    .ring_first = 16,
    .ring_pages = 2 * 129,  // 512 KiB of data each way, as Linux's netvsc
    .receive_first = 512,
    .receive_pages = 4096,  // 16 MiB: NETVSC_RECEIVE_BUFFER_DEFAULT
    .send_first = 4608,
    .send_pages = 256,  // 1 MiB: NETVSC_SEND_BUFFER_DEFAULT
    .scratch_first = 4864,
    .scratch_pages = 64,
};
// GPA-direct sends: two pages per in-flight packet (RNDIS header, frame).
constexpr uint64_t kDirectFirst = 5120;
constexpr uint64_t kRamPages = kDirectFirst + 2 * kTxRound + 64;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "network bench: %s\n", what.c_str());
  std::exit(1);
}

std::vector<uint8_t> Frame(size_t size, uint32_t seed) {
  std::vector<uint8_t> f(size);
  std::memcpy(f.data(), kGuestMac.data(), 6);
  std::memcpy(f.data() + 6, kPeerMac, 6);
  f[12] = kEtherType >> 8;
  f[13] = kEtherType & 0xFF;
  for (size_t i = 14; i < size; ++i)
    f[i] = static_cast<uint8_t>(seed * 13 + i * 7 + (i >> 8));
  return f;
}

bool Ours(const uint8_t* frame, size_t n) {
  return n >= 14 && ((frame[12] << 8) | frame[13]) == kEtherType;
}

double ThreadCpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// Wall and CPU time of the timed parts.
struct Meter {
  double wall = 0, cpu = 0;
  template <typename F>
  void operator()(F f) {
    const auto t0 = Clock::now();
    const double c0 = ThreadCpu();
    f();
    cpu += ThreadCpu() - c0;
    wall += std::chrono::duration<double>(Clock::now() - t0).count();
  }
};

struct Figure {
  uint64_t packets = 0;
  double wall = 0, cpu = 0;
  double guest_cpu = 0;  // netvsp: the guest peer's untimed part
  double pps() const { return packets / wall; }
  double cpu_us() const { return cpu * 1e6 / packets; }
  double guest_cpu_us() const { return guest_cpu * 1e6 / packets; }
  Figure& operator+=(const Figure& o) {
    packets += o.packets;
    wall += o.wall;
    cpu += o.cpu;
    guest_cpu += o.guest_cpu;
    return *this;
  }
};

// The interface's counters in this namespace (/proc/self/net/dev).
struct IfStats {
  uint64_t rx_packets = 0, rx_dropped = 0, tx_packets = 0, tx_dropped = 0;
};
IfStats ReadIfStats() {
  std::ifstream in("/proc/self/net/dev");
  std::string line;
  const std::string key = std::string(kTapName) + ":";
  while (std::getline(in, line)) {
    const size_t at = line.find(key);
    if (at == std::string::npos) continue;
    std::vector<std::string> f =
        absl::StrSplit(line.substr(at + key.size()), ' ', absl::SkipEmpty());
    if (f.size() < 12) break;
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: ...
    return {std::stoull(f[1]), std::stoull(f[3]), std::stoull(f[9]),
            std::stoull(f[11])};
  }
  Die("no counters for the TAP interface in /proc/self/net/dev");
}

// Sends frames into the TAP interface from its "wire" side: the kernel
// queues them for the TAP descriptor (untimed filler for host -> guest).
class Injector {
 public:
  explicit Injector(int ifindex) : ifindex_(ifindex) {
    fd_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!fd_.valid()) Die("socket(AF_PACKET)");
    const int one = 1;
    (void)::setsockopt(fd_.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one,
                       sizeof(one));
    const int buffer = 16 << 20;
    (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buffer,
                       sizeof(buffer));
  }
  void Send(const std::vector<uint8_t>& frame, uint32_t count) {
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex_;
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, frame.data(), 6);
    constexpr uint32_t kBatch = 64;
    iovec iov[kBatch];
    mmsghdr msgs[kBatch];
    for (uint32_t i = 0; i < kBatch; ++i) {
      iov[i] = {const_cast<uint8_t*>(frame.data()), frame.size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_name = &to;
      msgs[i].msg_hdr.msg_namelen = sizeof(to);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (uint32_t sent = 0, full = 0; sent < count;) {
      const int n =
          ::sendmmsg(fd_.get(), msgs, std::min(kBatch, count - sent), 0);
      if (n < 0) {
        if ((errno == EAGAIN || errno == ENOBUFS || errno == EINTR) &&
            ++full < 1000) {
          ::usleep(100);
          continue;
        }
        Die(std::string("sendmmsg: ") + strerror(errno));
      }
      sent += n;
    }
  }

 private:
  int ifindex_;
  base::ScopedFd fd_;
};

class Rig {
 public:
  Rig() : guest_(kRamPages) {
    if (std::string why = nt::EnterNewNetworkNamespace(); !why.empty())
      Die(why);
    auto t =
        nt::CreateTap(kTapName, /*vnet_header=*/true, 1500, kRxBatch + 256);
    if (!t.ok()) Die(t.status().ToString());
    tap_ = *std::move(t);
    // No IPv6 chatter (router solicitations) on the interface.
    std::ofstream(std::string("/proc/sys/net/ipv6/conf/") + kTapName +
                  "/disable_ipv6")
        << "1";
    NetAdapter::Config config;
    config.mac = kGuestMac;
    config.tap = base::ScopedFd(::dup(tap_.fd.get()));
    config.vnet_header = true;
    config.name = "nic0 (bench)";
    auto adapter = NetAdapter::Create(std::move(config), {.manual = true});
    if (!adapter.ok()) Die(adapter.status().ToString());
    adapter_ = *std::move(adapter);
    server_ = std::make_unique<vmbus::VmbusServer>(
        guest_.memory, guest_, vmbus::VmbusServer::Options{.vp_count = 1});
    guest_.server = server_.get();
    if (!server_->AddVsp(adapter_.get()).ok()) Die("AddVsp");
    netvsc_ = std::make_unique<NetvscGuest>(
        guest_, *server_, [this] { adapter_->Poll(); }, kLayout);
    if (!netvsc_->BringUp()) Die("the guest peer's netvsc bring-up failed");
    netvsc_->ProcessInbound();
    if (netvsc_->send_section_count < kTxRound) Die("too few send sections");
    CheckOneFrameEachWay();
    // From here on only the injector (send only) is on the interface.
    tap_.wire.reset();
    injector_ = std::make_unique<Injector>(tap_.ifindex);
    guest_.signals.clear();
  }
  ~Rig() {
    netvsc_.reset();
    server_.reset();
    adapter_.reset();
  }

  // ---------------------------------------------------- guest -> host

  Figure RawTx(const std::vector<uint8_t>& frame, double seconds) {
    static const VirtioNetHeader kNoOffload{};
    iovec iov[2] = {
        {const_cast<VirtioNetHeader*>(&kNoOffload), sizeof(kNoOffload)},
        {const_cast<uint8_t*>(frame.data()), frame.size()}};
    const ssize_t want = sizeof(kNoOffload) + frame.size();
    const IfStats before = ReadIfStats();
    Figure f;
    Meter m;
    while (m.wall < seconds) {
      m([&] {
        for (uint32_t i = 0; i < kTxRound; ++i) {
          if (::writev(tap_.fd.get(), iov, 2) != want)
            Die(std::string("TAP writev: ") + strerror(errno));
        }
      });
      f.packets += kTxRound;
    }
    CheckWire(before, f.packets, "raw writev");
    f.wall = m.wall;
    f.cpu = m.cpu;
    return f;
  }

  // Through send sections, or GPA-direct pages (`direct`).
  Figure NetvspTx(const std::vector<uint8_t>& frame, bool direct,
                  double seconds) {
    const std::vector<uint8_t> message = NetvscGuest::PacketMessage(frame);
    const uint32_t header = message.size() - frame.size();
    // The guest's frames, written once: every send section, or per slot an
    // RNDIS header page and a frame page, and its GPA-direct descriptor.
    uint8_t* ram = guest_.memory.base();
    std::vector<std::vector<uint8_t>> ext(kTxRound);
    std::vector<uint32_t> free;
    if (direct) {
      for (uint32_t s = 0; s < kTxRound; ++s) {
        const uint64_t page = kDirectFirst + 2 * s;
        std::memcpy(ram + page * 4096, message.data(), header);
        std::memcpy(ram + (page + 1) * 4096, frame.data(), frame.size());
        // vmbus_channel_packet_multipage_buffer: reserved, count, then
        // ranges {len, offset, pfns}.
        const uint32_t words[] = {0, 2, header, 0};
        const uint32_t frame_range[] = {static_cast<uint32_t>(frame.size()), 0};
        std::vector<uint8_t>& e = ext[s];
        e.resize(40);
        std::memcpy(e.data(), words, 16);
        std::memcpy(e.data() + 16, &page, 8);
        const uint64_t next = page + 1;
        std::memcpy(e.data() + 24, frame_range, 8);
        std::memcpy(e.data() + 32, &next, 8);
        free.push_back(s);
      }
    } else {
      for (uint32_t s = 0; s < netvsc_->send_section_count; ++s) {
        std::memcpy(ram + kLayout.send_first * 4096 +
                        uint64_t{s} * netvsc_->send_section_size,
                    message.data(), message.size());
        free.push_back(s);
      }
    }
    const IfStats before = ReadIfStats();
    const uint64_t counted = adapter_->counters().from_guest_packets.load();
    Figure f;
    Meter host, guest;
    uint64_t sent = 0;
    for (int idle = 0; host.wall < seconds || sent != f.packets; ++idle) {
      const bool more = host.wall < seconds;
      if (idle > 1000) {
        Die("netvsp completed " + std::to_string(f.packets) + " of " +
            std::to_string(sent) + " packets");
      }
      guest([&] {
        uint32_t queued = 0;
        while (more && queued < kTxRound && !free.empty()) {
          const uint32_t s = free.back();
          Nvsp1SendRndisPacket send{kRndisChannelData, kNoSendSection, 0};
          if (!direct) {
            send.send_buffer_section_index = s;
            send.send_buffer_section_size =
                static_cast<uint32_t>(message.size());
          }
          const NvspMessage m = MakeNvsp(kNvspMsg1SendRndisPacket, send);
          if (!guest_.out->Write(direct ? vmbus::kPacketDataUsingGpaDirect
                                        : vmbus::kPacketDataInband,
                                 vmbus::kPacketFlagCompletionRequested, s + 1,
                                 direct ? std::span<const uint8_t>(ext[s])
                                        : std::span<const uint8_t>(),
                                 Bytes(m))) {
            break;
          }
          free.pop_back();
          ++queued;
        }
        sent += queued;
        Signal();
      });
      host([&] { adapter_->Poll(); });
      uint64_t completed = 0;
      guest([&] { completed = TakeCompletions(free); });
      if (completed != 0) idle = 0;
      f.packets += completed;
    }
    f.wall = host.wall;
    f.cpu = host.cpu;
    f.guest_cpu = guest.cpu;
    const uint64_t through =
        adapter_->counters().from_guest_packets.load() - counted;
    if (through != f.packets) {
      Die("netvsp wrote " + std::to_string(through) + " of " +
          std::to_string(f.packets) + " frames");
    }
    CheckWire(before, f.packets, "netvsp");
    CheckCounters();
    return f;
  }

  // ---------------------------------------------------- host -> guest

  Figure RawRx(const std::vector<uint8_t>& frame, double seconds) {
    VirtioNetHeader h;
    std::vector<uint8_t> buffer(65536);
    iovec iov[2] = {{&h, sizeof(h)}, {buffer.data(), buffer.size()}};
    Figure f;
    Meter m;
    while (m.wall < seconds) {
      Queue(frame);
      uint32_t got = 0;
      m([&] {
        while (got < kRxBatch) {
          const ssize_t n = ::readv(tap_.fd.get(), iov, 2);
          if (n < 0) break;
          got += n == static_cast<ssize_t>(sizeof(h) + frame.size()) &&
                 Ours(buffer.data(), n - sizeof(h));
        }
      });
      if (got != kRxBatch) {
        Die("raw readv got " + std::to_string(got) + " of " +
            std::to_string(kRxBatch) + " queued frames");
      }
      f.packets += got;
    }
    f.wall = m.wall;
    f.cpu = m.cpu;
    return f;
  }

  Figure NetvspRx(const std::vector<uint8_t>& frame, double seconds) {
    const uint64_t counted = adapter_->counters().to_guest_packets.load();
    Figure f;
    Meter host, guest;
    while (host.wall < seconds) {
      Queue(frame);
      uint64_t got = 0;
      for (int idle = 0; got < kRxBatch; ++idle) {
        host([&] { adapter_->Poll(); });
        uint64_t now = 0;
        guest([&] { now = TakeFrames(frame.size()); });
        if (now != 0) idle = 0;
        if (idle > 100) {
          Die("the guest got " + std::to_string(got) + " of " +
              std::to_string(kRxBatch) + " queued frames");
        }
        got += now;
      }
      f.packets += got;
    }
    f.wall = host.wall;
    f.cpu = host.cpu;
    f.guest_cpu = guest.cpu;
    if (adapter_->counters().to_guest_packets.load() - counted != f.packets)
      Die("netvsp's to-guest counter disagrees");
    CheckCounters();
    return f;
  }

 private:
  void Signal() {
    server_->OnSignalEvent(0, netvsc_->connection_id, 0);
    guest_.signals.clear();
  }

  // Completions of SEND_RNDIS_PKT: each frees its section or slot.
  uint64_t TakeCompletions(std::vector<uint32_t>& free) {
    uint64_t n = 0;
    while (auto p = guest_.in->Read()) {
      Nvsp1SendRndisPacketComplete c{};
      uint32_t type = 0;
      if (p->type != vmbus::kPacketCompletion || p->data.size() < 8) {
        Die("unexpected packet from the host");
      }
      std::memcpy(&type, p->data.data(), 4);
      std::memcpy(&c, p->data.data() + 4, sizeof(c));
      if (type != kNvspMsg1SendRndisPacketComplete ||
          c.status != kNvspStatusSuccess) {
        Die("SEND_RNDIS_PKT failed: status " + std::to_string(c.status));
      }
      free.push_back(static_cast<uint32_t>(p->trans_id - 1));
      ++n;
    }
    guest_.signals.clear();
    return n;
  }

  // Transfer-page packets: each frame checked (RNDIS PACKET, length,
  // ethertype) where netvsc would read it, then the packet completed.
  uint64_t TakeFrames(size_t size) {
    const uint8_t* buffer = guest_.memory.base() + kLayout.receive_first * 4096;
    uint64_t n = 0;
    bool completed = false;
    while (auto p = guest_.in->Read()) {
      if (p->type != vmbus::kPacketDataUsingXferPages ||
          p->extension.size() < sizeof(TransferPageHeader)) {
        Die("unexpected packet from the host");
      }
      TransferPageHeader h;
      std::memcpy(&h, p->extension.data(), sizeof(h));
      if (sizeof(h) + uint64_t{h.range_count} * 8 > p->extension.size())
        Die("bad transfer-page packet");
      for (uint32_t i = 0; i < h.range_count; ++i) {
        TransferPageRange r;
        std::memcpy(&r, p->extension.data() + sizeof(h) + i * 8, 8);
        const uint8_t* m = buffer + r.byte_offset;
        uint32_t type;
        std::memcpy(&type, m, 4);
        if (type != kRndisMsgPacket ||
            r.byte_count != kRndisPacketHeaderSize + size ||
            !Ours(m + kRndisPacketHeaderSize, size)) {
          Die("a frame reached the guest damaged");
        }
        ++n;
      }
      const NvspMessage c =
          MakeNvsp(kNvspMsg1SendRndisPacketComplete,
                   Nvsp1SendRndisPacketComplete{kNvspStatusSuccess});
      // Linux's 8-byte completion (send_recv_completions).
      if (!guest_.out->Write(vmbus::kPacketCompletion, 0, p->trans_id, {},
                             Bytes(c).first(8))) {
        Die("the guest's ring is full of completions");
      }
      completed = true;
    }
    if (completed) Signal();
    guest_.signals.clear();
    return n;
  }

  // kRxBatch frames into the TAP device's queue, all of them kept (tun
  // counts a frame that finds its queue full as a transmit drop; its
  // tx_packets count frames read from the descriptor).
  void Queue(const std::vector<uint8_t>& frame) {
    const IfStats before = ReadIfStats();
    injector_->Send(frame, kRxBatch);
    const IfStats after = ReadIfStats();
    if (after.tx_dropped != before.tx_dropped) {
      Die("the TAP queue dropped " +
          std::to_string(after.tx_dropped - before.tx_dropped) + " of " +
          std::to_string(kRxBatch) + " frames");
    }
  }

  void CheckWire(const IfStats& before, uint64_t packets, const char* who) {
    const IfStats after = ReadIfStats();
    if (after.rx_packets - before.rx_packets != packets) {
      Die(std::string(who) + ": the TAP interface received " +
          std::to_string(after.rx_packets - before.rx_packets) + " of " +
          std::to_string(packets) + " frames");
    }
  }

  void CheckCounters() {
    const NicCounters& c = adapter_->counters();
    if (c.FromGuestDrops() != 0 || c.ToGuestDrops() != 0 ||
        c.protocol_errors.load() != 0) {
      Die("netvsp counted drops or protocol errors: from guest " +
          std::to_string(c.FromGuestDrops()) + ", to guest " +
          std::to_string(c.ToGuestDrops()) + ", errors " +
          std::to_string(c.protocol_errors.load()));
    }
  }

  // Byte for byte against the AF_PACKET socket, once each way.
  void CheckOneFrameEachWay() {
    const std::vector<uint8_t> out = Frame(1514, 1);
    netvsc_->SendInSection({NetvscGuest::PacketMessage(out)}, 0);
    netvsc_->ProcessInbound();
    auto got = nt::WireReceive(tap_, kEtherType);
    if (!got || *got != out) Die("guest -> wire: the frame differs");
    const std::vector<uint8_t> in = Frame(1514, 2);
    if (!nt::WireSend(tap_, in).ok()) Die("WireSend");
    for (int i = 0; i < 2000 && netvsc_->frames.empty(); ++i) {
      adapter_->Poll();
      netvsc_->ProcessInbound();
      while (!netvsc_->frames.empty() &&
             !Ours(netvsc_->frames.front().data(),
                   netvsc_->frames.front().size())) {
        netvsc_->frames.pop_front();
      }
      if (netvsc_->frames.empty()) ::usleep(500);
    }
    if (netvsc_->frames.empty() || netvsc_->frames.front() != in)
      Die("wire -> guest: the frame differs or did not come");
    netvsc_->frames.clear();
    CheckCounters();
  }

  FakeGuest guest_;
  nt::TestTap tap_;
  std::unique_ptr<NetAdapter> adapter_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<NetvscGuest> netvsc_;
  std::unique_ptr<Injector> injector_;
};

struct Case {
  std::string name;
  bool to_host;  // guest -> host
  bool direct;   // GPA-direct pages instead of a send section
  uint32_t size;
};

double Median(std::vector<double> v) { return hvbench::Percentile(v, 0.5); }

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // As the installed worker runs (vmwp/main.cc): without absl's debug-only
  // deadlock detector, which Debian's libabsl leaves on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const std::string only = absl::GetFlag(FLAGS_only);
  std::vector<Case> cases;
  for (const Case& c : std::vector<Case>{
           {"guest->host   64 B, send section", true, false, 64},
           {"guest->host 1500 B, send section", true, false, 1500},
           {"guest->host 1500 B, GPA-direct", true, true, 1500},
           {"host->guest   64 B", false, false, 64},
           {"host->guest 1500 B", false, false, 1500}}) {
    if (only.empty() || c.name.find(only) != std::string::npos)
      cases.push_back(c);
  }
  Rig rig;
  std::printf(
      "netvsp host-side throughput vs raw TAP I/O, TAP with virtio-net header "
      "in a private netns; %d runs x %.2f s per case and side in %d "
      "alternating slices (cores: %ld)\n",
      runs, seconds, std::max(1, absl::GetFlag(FLAGS_slices)),
      sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<std::vector<Figure>> raw(cases.size()), vsp(cases.size());
  const std::string side = absl::GetFlag(FLAGS_side);
  const int slices = std::max(1, absl::GetFlag(FLAGS_slices));
  const double slice = seconds / slices;
  for (int r = 0; r < runs; ++r) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const std::vector<uint8_t> frame = Frame(c.size, c.size);
      Figure rf, vf;
      auto measure_raw = [&] {
        if (side == "netvsp") return;
        rf += c.to_host ? rig.RawTx(frame, slice) : rig.RawRx(frame, slice);
      };
      auto measure_vsp = [&] {
        if (side == "raw") return;
        vf += c.to_host ? rig.NetvspTx(frame, c.direct, slice)
                        : rig.NetvspRx(frame, slice);
      };
      // Short slices, alternating which side goes first.
      for (int k = 0; k < slices; ++k) {
        if ((r + k) % 2 == 0) {
          measure_raw();
          measure_vsp();
        } else {
          measure_vsp();
          measure_raw();
        }
      }
      raw[i].push_back(rf);
      vsp[i].push_back(vf);
      if (side != "both") {
        const Figure& f = side == "raw" ? rf : vf;
        std::printf("  run %d %-34s %s %8.1f kpps %5.2f us CPU/pkt\n", r + 1,
                    c.name.c_str(), side.c_str(), f.pps() / 1e3, f.cpu_us());
      } else if (absl::GetFlag(FLAGS_per_run)) {
        std::printf(
            "  run %d %-34s raw %8.1f kpps %5.2f us | netvsp %8.1f kpps %5.2f "
            "us | %.2fx, CPU %.2fx\n",
            r + 1, c.name.c_str(), rf.pps() / 1e3, rf.cpu_us(), vf.pps() / 1e3,
            vf.cpu_us(), vf.pps() / rf.pps(), rf.cpu_us() / vf.cpu_us());
      }
    }
  }
  if (side != "both") return 0;
  std::printf("%-34s | %-27s | %-27s | %-22s | %-11s | %s\n", "case",
              "raw TAP: kpps  MB/s   CPU", "netvsp:  kpps  MB/s   CPU",
              "netvsp/raw (min-max)", "CPU raw/vsp", "guest peer CPU");
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::vector<double> rp, vp, rc, vc, ratio, cpu_ratio, gc;
    for (int r = 0; r < runs; ++r) {
      rp.push_back(raw[i][r].pps());
      vp.push_back(vsp[i][r].pps());
      rc.push_back(raw[i][r].cpu_us());
      vc.push_back(vsp[i][r].cpu_us());
      gc.push_back(vsp[i][r].guest_cpu_us());
      ratio.push_back(vp.back() / rp.back());
      cpu_ratio.push_back(rc.back() / vc.back());
    }
    std::printf(
        "%-34s | %7.1f %6.1f %5.2f us | %7.1f %6.1f %5.2f us | %.2fx "
        "(%.2f-%.2f)"
        "      | %.2fx       | %.2f us\n",
        c.name.c_str(), Median(rp) / 1e3, Median(rp) * c.size / 1e6, Median(rc),
        Median(vp) / 1e3, Median(vp) * c.size / 1e6, Median(vc), Median(ratio),
        *std::min_element(ratio.begin(), ratio.end()),
        *std::max_element(ratio.begin(), ratio.end()), Median(cpu_ratio),
        Median(gc));
  }
  std::printf(
      "(medians of %d runs; kpps = 1000 frames per second of host time; CPU = "
      "this thread's CPU time per frame in the timed part; netvsp/raw = the "
      "runs' paired ratios of frames/s, CPU raw/vsp = of CPU per frame; guest "
      "peer = untimed guest work per frame. Target: netvsp >= 0.7x of raw TAP "
      "at 1500 B)\n",
      runs);
  return 0;
}
