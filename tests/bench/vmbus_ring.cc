// Host-side VMBus ring throughput: packets written by RingWriter and read
// back by RingReader over a ring in guest memory (vid::GuestMemory pages
// resolved through a GPADL-style page list), next to plain memcpy of the
// same payload bytes (one copy in, one copy out) in the same run.
//
//   bazel run -c opt //tests/bench:vmbus_ring [-- SECONDS_PER_CASE]

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include "vid/guest_memory.h"
#include "vmwp/vmbus/ring_buffer.h"
#include "vmwp/vmbus/vid_guest_pages.h"

namespace {

using Clock = std::chrono::steady_clock;

// Keeps the compiler from dropping copies whose results are never read.
void Escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

struct Figures {
  double packets_per_s;
  double mb_per_s;  // payload bytes, 10^6
};

Figures Ring(vmbus::RingPages pages, size_t payload_size, double seconds) {
  auto* h = pages.header();
  std::memset(h, 0, sizeof(*h));
  auto writer = vmbus::RingWriter::Create(pages);
  auto reader = vmbus::RingReader::Create(pages);
  if (!writer.ok() || !reader.ok()) std::abort();
  std::vector<uint8_t> payload(payload_size, 0x5A);
  vmbus::Packet packet;
  uint64_t packets = 0;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    // Fill the ring as a VSP would, then drain it as the guest's VSC would
    // (here: the host reader, so both directions' code is measured).
    for (;;) {
      auto r = writer->Write(vmbus::kPacketDataInband, 0, packets, payload);
      if (!r.ok()) std::abort();
      if (!r->written) break;
      ++packets;
    }
    for (;;) {
      auto got = reader->Next(&packet);
      if (!got.ok()) std::abort();
      if (!*got) break;
      Escape(packet.bytes.data());
    }
    if (!reader->Commit().ok()) std::abort();
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return {packets / s, packets * payload_size / s / 1e6};
}

Figures Memcpy(size_t payload_size, size_t ring_bytes, double seconds) {
  std::vector<uint8_t> payload(payload_size, 0x5A), ring(ring_bytes),
      out(payload_size);
  const size_t per_fill = ring_bytes / payload_size - 1;
  uint64_t packets = 0;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    for (size_t i = 0; i < per_fill; ++i) {
      std::memcpy(ring.data() + i * payload_size, payload.data(), payload_size);
      Escape(ring.data());
    }
    for (size_t i = 0; i < per_fill; ++i) {
      std::memcpy(out.data(), ring.data() + i * payload_size, payload_size);
      Escape(out.data());
    }
    packets += per_fill;
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return {packets / s, packets * payload_size / s / 1e6};
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  auto memory = vid::GuestMemory::Create(64 << 20);
  if (!memory.ok()) {
    std::fprintf(stderr, "guest memory: %s\n",
                 memory.status().ToString().c_str());
    return 1;
  }
  vmbus::VidGuestPages pages(**memory);
  // A 256 KiB data area (netvsc-sized rings are larger, util rings smaller)
  // at guest page 0x400, header first.
  constexpr uint64_t kDataPages = 64;
  std::vector<uint64_t> pfns(kDataPages + 1);
  std::iota(pfns.begin(), pfns.end(), 0x400);
  auto ring = vmbus::RingPages::FromPfns(pages, pfns);
  if (!ring.ok()) return 1;

  std::printf(
      "VMBus ring, host writer + host reader over guest memory "
      "(%llu KiB data area), vs memcpy in + out of the same bytes; "
      "%.1f s per case\n",
      static_cast<unsigned long long>(kDataPages * 4), seconds);
  std::printf("%-8s %14s %10s %14s %10s %8s\n", "payload", "ring pkt/s",
              "ring MB/s", "memcpy pkt/s", "memcpy MB/s", "ratio");
  for (size_t size : {size_t{64}, size_t{4096}}) {
    Figures r = Ring(*ring, size, seconds);
    Figures m = Memcpy(size, kDataPages * 4096, seconds);
    std::printf("%-8zu %14.0f %10.1f %14.0f %10.1f %7.2fx\n", size,
                r.packets_per_s, r.mb_per_s, m.packets_per_s, m.mb_per_s,
                m.mb_per_s / r.mb_per_s);
  }
  std::printf(
      "ratio = memcpy throughput / ring throughput (1.00x: the ring "
      "costs nothing beyond the copies)\n");
  return 0;
}
