// libFuzzer target: the host's ring reader and writer over a ring whose
// header and data the fuzzer controls entirely (a hostile guest).
//
// Input: [0] data pages - 1 (mod 4), [1..20] header fields (write_index,
// read_index, interrupt_mask, pending_send_sz, feature_bits), [21] the max
// packet size selector, rest: the data area (repeated to fill it). Then:
// read every packet (checking what was accepted), commit, and finally write
// packets back through a RingWriter over the same ring and read them again.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vmbus/ring_buffer.h"

namespace {

#define CHECK(cond) \
  if (!(cond)) __builtin_trap()

uint32_t U32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 22) return 0;
  const uint32_t data_pages = 1 + data[0] % 4;
  vmbus::FlatGuestPages memory(data_pages + 1);
  auto* header = reinterpret_cast<vmbus::RingHeader*>(memory.base());
  header->write_index = U32(data + 1);
  header->read_index = U32(data + 5);
  header->interrupt_mask = U32(data + 9);
  header->pending_send_sz = U32(data + 13);
  header->feature_bits = U32(data + 17);
  const uint32_t max_packet = (data[21] % 2) ? 0 : 64u << (data[21] % 8);
  uint8_t* ring = memory.base() + vmbus::kPageSize;
  const size_t ring_size = data_pages * vmbus::kPageSize;
  if (size > 22) {
    for (size_t i = 0; i < ring_size; ++i) ring[i] = data[22 + i % (size - 22)];
  }
  std::vector<uint64_t> pfns;
  for (uint64_t i = 0; i <= data_pages; ++i) pfns.push_back(i);
  auto pages = vmbus::RingPages::FromPfns(memory, pfns);
  CHECK(pages.ok());

  auto reader = vmbus::RingReader::Create(*pages, max_packet);
  if (reader.ok()) {
    reader->BeginDrain();
    vmbus::Packet p;
    for (int i = 0; i < 1000; ++i) {
      auto got = reader->Next(&p);
      if (!got.ok() || !*got) break;
      // What was accepted is self-consistent.
      CHECK(p.bytes.size() % 8 == 0);
      CHECK(p.bytes.size() >= sizeof(vmbus::PacketDescriptor));
      CHECK(p.data_offset >= sizeof(vmbus::PacketDescriptor));
      CHECK(p.data_offset <= p.bytes.size());
      CHECK(p.bytes.size() + 8 <= reader->data_size());
      CHECK(max_packet == 0 || p.bytes.size() <= max_packet);
      CHECK(p.type >= 1 && p.type <= vmbus::kPacketTypeMax);
      (void)p.data();
      (void)p.header_extension();
    }
    (void)reader->Commit();
    (void)reader->EndDrain();
    // A broken reader stays broken.
    if (!reader->status().ok()) CHECK(!reader->Next(&p).ok());
  }

  // The host writer over the same (hostile) header: whatever it accepts to
  // write must read back identically from the write index it started at.
  auto writer = vmbus::RingWriter::Create(*pages);
  if (!writer.ok()) return 0;
  const uint32_t start = header->write_index;
  std::vector<uint8_t> payload(data + 22, data + size);
  if (payload.size() > writer->max_payload())
    payload.resize(writer->max_payload());
  auto r = writer->Write(vmbus::kPacketDataInband, 0, 77, payload);
  if (r.ok() && r->written) {
    header->read_index = start;
    auto check = vmbus::RingReader::Create(*pages);
    CHECK(check.ok());
    vmbus::Packet p;
    auto got = check->Next(&p);
    CHECK(got.ok() && *got);
    CHECK(p.trans_id == 77);
    CHECK(p.data().size() >= payload.size());
    if (!payload.empty()) {
      CHECK(std::memcmp(p.data().data(), payload.data(), payload.size()) == 0);
    }
  }
  return 0;
}
