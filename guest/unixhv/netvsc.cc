#include "guest/unixhv/netvsc.h"

#include "guest/unixhv/pages.h"

namespace unixhv::netvsc {
namespace {

// 8 bytes at a time: guest code is emulated instruction by instruction on
// some hosts, and a byte loop over 1500-byte frames shows.
void Copy(void* dst, const void* src, uint32_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, s + i, 8);
    __builtin_memcpy(d + i, &w, 8);
  }
  for (; i < n; ++i) d[i] = s[i];
}
void Zero(void* dst, uint32_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  for (uint32_t i = 0; i < n; ++i) d[i] = 0;
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
void Put32(uint8_t* p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

NvspMessage Nvsp(uint32_t type, uint32_t a = 0, uint32_t b = 0, uint32_t c = 0,
                 uint32_t d = 0) {
  NvspMessage m;
  Zero(&m, sizeof(m));
  m.type = type;
  m.body[0] = a;
  m.body[1] = b;
  m.body[2] = c;
  m.body[3] = d;
  return m;
}

}  // namespace

bool Adapter::Open(vmbus::Client& bus, const vmbus::Offer& offer,
                   const Config& config) {
  step_ = "open channel";
  if (!OpenChannel(bus, offer, config)) return false;
  step_ = "NVSP version";
  if (Negotiate(config.max_nvsp) == 0) return false;
  step_ = "receive buffer";
  void* rx = AllocPages(config.receive_pages);
  if (rx == nullptr) return false;
  uint32_t status = 0;
  uint32_t gpadl =
      bus.CreateGpadl(channel_.relid, rx, config.receive_pages, &status);
  if (gpadl == 0 ||
      LendReceiveBuffer(gpadl, rx, config.receive_pages) != kNvspSuccess) {
    return false;
  }
  step_ = "send buffer";
  void* tx = AllocPages(config.send_pages);
  if (tx == nullptr) return false;
  gpadl = bus.CreateGpadl(channel_.relid, tx, config.send_pages, &status);
  if (gpadl == 0 ||
      LendSendBuffer(gpadl, tx, config.send_pages) != kNvspSuccess) {
    return false;
  }
  step_ = "RNDIS";
  if (!InitializeRndis()) return false;
  step_ = "up";
  return true;
}

bool Adapter::OpenChannel(vmbus::Client& bus, const vmbus::Offer& offer,
                          const Config& config) {
  bus_ = &bus;
  scratch_ = static_cast<uint8_t*>(AllocPages(1));
  if (scratch_ == nullptr) return false;
  uint32_t status = 0;
  return bus.Open(offer, &channel_, config.ring_pages, config.ring_pages,
                  &status) &&
         status == 0;
}

uint32_t Adapter::Negotiate(uint32_t max_version) {
  // netvsc_connect_vsp: newest first, one version per INIT (min = max).
  for (uint32_t v : kNvspVersions) {
    if (v > max_version) continue;
    const uint32_t status = Request(Nvsp(kNvspInit, v, v));
    if (status == 0) return 0;  // no answer
    if (completion_.type == kNvspInitComplete && status == kNvspSuccess) {
      nvsp_version = v;
      break;
    }
  }
  if (nvsp_version == 0) return 0;
  // NDIS 6.30 from NVSP 5 on (6.1 below), no completion.
  const uint32_t ndis_minor = nvsp_version <= 0x40000 ? 1 : 30;
  NvspMessage ndis = Nvsp(kNvspSendNdisVersion, 6, ndis_minor);
  SendRaw(vmbus::kPacketDataInband, 0, 0, nullptr, 0, &ndis, sizeof(ndis));
  if (nvsp_version >= 0x30002) {
    // MTU + ETH_HLEN, reserved, capabilities (ieee8021q).
    NvspMessage config = Nvsp(kNvspSendNdisConfig, 1514, 0, 1u << 3, 0);
    SendRaw(vmbus::kPacketDataInband, 0, 0, nullptr, 0, &config,
            sizeof(config));
  }
  return nvsp_version;
}

uint32_t Adapter::LendReceiveBuffer(uint32_t gpadl, void* base,
                                    uint32_t pages) {
  NvspMessage reply;
  const NvspMessage m = Nvsp(kNvspSendReceiveBuffer, gpadl, kReceiveBufferId);
  if (Request(m, nullptr, 0, kTimeoutMs) == 0) return 0;
  reply = completion_;
  if (reply.type != kNvspSendReceiveBufferComplete) return kNvspFail;
  // status, num_sections, then {offset, sub_alloc_size, count, end}:
  // netvsc_init_buf takes exactly one section at offset 0.
  const uint32_t bytes = pages * static_cast<uint32_t>(kPageSize);
  if (reply.body[0] != kNvspSuccess) return reply.body[0];
  if (reply.body[1] != 1 || reply.body[2] != 0 || reply.body[3] < 68 ||
      uint64_t{reply.body[3]} * reply.body[4] > bytes) {
    return kNvspFail;
  }
  receive_buffer_ = static_cast<uint8_t*>(base);
  receive_bytes_ = bytes;
  receive_section_size = reply.body[3];
  receive_sections = reply.body[4];
  return kNvspSuccess;
}

uint32_t Adapter::LendSendBuffer(uint32_t gpadl, void* base, uint32_t pages) {
  const NvspMessage m = Nvsp(kNvspSendSendBuffer, gpadl, 0);
  if (Request(m, nullptr, 0, kTimeoutMs) == 0) return 0;
  const NvspMessage reply = completion_;
  if (reply.type != kNvspSendSendBufferComplete) return kNvspFail;
  if (reply.body[0] != kNvspSuccess) return reply.body[0];
  if (reply.body[1] < 68) return kNvspFail;
  send_buffer_ = static_cast<uint8_t*>(base);
  send_section_size_ = reply.body[1];
  send_sections_ =
      pages * static_cast<uint32_t>(kPageSize) / send_section_size_;
  return kNvspSuccess;
}

uint32_t Adapter::BuildRange(const void* address, uint32_t length,
                             uint8_t* out) {
  const uint64_t gpa = reinterpret_cast<uint64_t>(address);
  const uint32_t offset = static_cast<uint32_t>(gpa & 4095);
  const uint32_t pages = (offset + length + 4095) / 4096;
  Put32(out, length);
  Put32(out + 4, offset);
  for (uint32_t i = 0; i < pages; ++i) {
    const uint64_t pfn = (gpa >> 12) + i;
    __builtin_memcpy(out + 8 + 8 * i, &pfn, 8);
  }
  return 8 + 8 * pages;
}

bool Adapter::Rndis(const void* request, uint32_t length, void* response,
                    uint32_t capacity, uint32_t* response_length,
                    uint32_t timeout_ms) {
  if (length > kPageSize) return false;
  Copy(scratch_, request, length);
  uint8_t ext[32];
  Zero(ext, 8);
  Put32(ext + 4, 1);
  const uint32_t ext_length = 8 + BuildRange(scratch_, length, ext + 8);
  have_response_ = false;
  waiting_response_ = true;
  const NvspMessage m = Nvsp(kNvspSendRndisPacket, 1, kNoSection, 0);
  // A request the host found malformed is completed with an error status
  // and may still be answered (QUERY_C with INVALID_DATA): wait for that.
  if (Request(m, ext, ext_length, timeout_ms) == 0) {
    waiting_response_ = false;
    return false;
  }
  const bool answered = bus_->WaitUntil(
      [&] {
        Poll();
        return have_response_;
      },
      timeout_ms);
  waiting_response_ = false;
  if (!answered) return false;
  if (response_length_ > capacity) return false;
  Copy(response, response_, response_length_);
  *response_length = response_length_;
  return true;
}

uint32_t Adapter::Query(uint32_t oid, const void* in, uint32_t in_length,
                        void* out, uint32_t capacity, uint32_t* out_length) {
  uint8_t m[256];
  if (in_length > sizeof(m) - 28) return kRndisNotSupported;
  const uint32_t id = next_rndis_id_++;
  const uint32_t fields[7] = {
      kRndisQuery, 28 + in_length, id, oid, in_length, 20, 0};
  Copy(m, fields, sizeof(fields));
  Copy(m + 28, in, in_length);
  uint8_t r[512];
  uint32_t n = 0;
  *out_length = 0;
  if (!Rndis(m, 28 + in_length, r, sizeof(r), &n) || n < 24 ||
      Get32(r) != (kRndisQuery | kRndisComplete) || Get32(r + 8) != id) {
    return ~0u;
  }
  // rndis_filter_query_device's checks.
  const uint32_t info_length = Get32(r + 16), info_offset = Get32(r + 20);
  if (info_offset < 16 || n - 8 < info_offset ||
      n - 8 - info_offset < info_length || info_length > capacity) {
    return ~0u;
  }
  Copy(out, r + 8 + info_offset, info_length);
  *out_length = info_length;
  return Get32(r + 12);
}

uint32_t Adapter::Set(uint32_t oid, const void* data, uint32_t length) {
  uint8_t m[256];
  if (length > sizeof(m) - 28) return kRndisNotSupported;
  const uint32_t id = next_rndis_id_++;
  const uint32_t fields[7] = {kRndisSet, 28 + length, id, oid, length, 20, 0};
  Copy(m, fields, sizeof(fields));
  Copy(m + 28, data, length);
  uint8_t r[64];
  uint32_t n = 0;
  if (!Rndis(m, 28 + length, r, sizeof(r), &n) || n < 16 ||
      Get32(r) != (kRndisSet | kRndisComplete) || Get32(r + 8) != id) {
    return ~0u;
  }
  return Get32(r + 12);
}

bool Adapter::InitializeRndis() {
  // rndis_filter_init_device: RNDIS 1.0, max_xfer_size 0x4000.
  const uint32_t init[6] = {kRndisInit, 24, next_rndis_id_++, 1, 0, 0x4000};
  uint8_t r[128];
  uint32_t n = 0;
  if (!Rndis(init, sizeof(init), r, sizeof(r), &n) || n < 52 ||
      Get32(r + 12) != kRndisSuccess) {
    return false;
  }
  uint8_t info[160];
  uint32_t len = 0;
  if (Query(kOidMaximumFrameSize, nullptr, 0, info, 4, &len) != 0 || len != 4)
    return false;
  mtu = Get32(info);
  if (Query(kOidPermanentAddress, nullptr, 0, mac, 6, &len) != 0 || len != 6)
    return false;
  // Hardware offload capabilities: the request carries the NDIS object
  // header of the size this NVSP version expects (rndis_query_hwcaps).
  const uint16_t size = nvsp_version >= 0x50000   ? 156
                        : nvsp_version >= 0x40000 ? 144
                                                  : 112;
  const uint8_t revision = nvsp_version >= 0x50000   ? 3
                           : nvsp_version >= 0x40000 ? 2
                                                     : 1;
  uint8_t caps[156];
  Zero(caps, sizeof(caps));
  caps[0] = 0xA7;
  caps[1] = revision;
  caps[2] = static_cast<uint8_t>(size);
  caps[3] = static_cast<uint8_t>(size >> 8);
  if (Query(kOidOffloadCapabilities, caps, size, info, sizeof(info), &len) !=
          0 ||
      len < 112 || info[0] != 0xA7) {
    return false;
  }
  // Offload parameters: IPv4 header checksum off, the rest unchanged.
  uint8_t params[28];
  Zero(params, sizeof(params));
  const uint32_t params_size = nvsp_version <= 0x40000 ? 22 : 28;
  params[0] = 0x80;
  params[1] = 3;
  params[2] = static_cast<uint8_t>(params_size);
  params[4] = 1;
  if (Set(kOidOffloadParameters, params, params_size) != 0) return false;
  if (Query(kOidMediaConnectStatus, nullptr, 0, info, 4, &len) != 0 ||
      len != 4) {
    return false;
  }
  link_up = Get32(info) == 0;
  if (nvsp_version >= 0x50000) Query(kOidLinkSpeed, nullptr, 0, info, 4, &len);
  const uint32_t filter =
      kFilterBroadcast | kFilterAllMulticast | kFilterDirected;
  return Set(kOidPacketFilter, &filter, 4) == 0;
}

bool Adapter::SendRaw(uint16_t type, uint16_t flags, uint64_t trans_id,
                      const void* extension, uint32_t extension_length,
                      const void* payload, uint32_t length) {
  for (int tries = 0; tries < 1000; ++tries) {
    const bool sent =
        extension_length == 0
            ? channel_.Send(type, flags, trans_id, payload, length)
            : channel_.SendExtended(type, flags, trans_id, extension,
                                    extension_length, payload, length);
    if (sent) return true;
    if (!channel_.open || channel_.broken) return false;
    Poll();
    bus_->Poll();
    vmbus::WaitForInterrupt();  // the host frees room and signals
  }
  return false;
}

bool Adapter::WaitCompletion(uint64_t id, NvspMessage* out,
                             uint32_t timeout_ms) {
  wanted_id_ = id;
  const bool got = bus_->WaitUntil(
      [&] {
        Poll();
        return have_completion_;
      },
      timeout_ms);
  wanted_id_ = 0;
  have_completion_ = false;
  if (got) *out = completion_;
  return got;
}

uint32_t Adapter::Request(const NvspMessage& m, const void* extension,
                          uint32_t extension_length, uint32_t timeout_ms) {
  const uint64_t id = NextId();
  wanted_id_ = id;
  have_completion_ = false;
  if (!SendRaw(extension_length == 0 ? vmbus::kPacketDataInband
                                     : vmbus::kPacketDataUsingGpaDirect,
               vmbus::kFlagCompletionRequested, id, extension, extension_length,
               &m, sizeof(m))) {
    return 0;
  }
  NvspMessage reply;
  if (!WaitCompletion(id, &reply, timeout_ms)) return 0;
  completion_ = reply;
  // The status of the init-type completions is the first body word
  // (INIT_COMPLETE's is the third).
  return reply.type == kNvspInitComplete ? reply.body[2] : reply.body[0];
}

uint32_t Adapter::SendFrame(const void* frame, uint32_t length,
                            bool gpa_direct) {
  uint32_t header[11];
  Zero(header, sizeof(header));
  header[0] = kRndisPacket;
  header[1] = kRndisPacketHeader + length;
  header[2] = 36;  // data offset, from the rndis_packet
  header[3] = length;
  if (!gpa_direct && send_sections_ > 0 &&
      kRndisPacketHeader + length <= send_section_size_) {
    // netvsc_copy_to_send_buf: header and frame in section 0.
    Copy(send_buffer_, header, sizeof(header));
    Copy(send_buffer_ + kRndisPacketHeader, frame, length);
    const NvspMessage m =
        Nvsp(kNvspSendRndisPacket, 0, 0, kRndisPacketHeader + length);
    return Request(m);
  }
  // init_page_array: the RNDIS header and the frame as separate ranges.
  Copy(scratch_, header, sizeof(header));
  uint8_t ext[8 + 16 + 8 + 8 * 4];
  Zero(ext, 8);
  Put32(ext + 4, 2);
  uint32_t ext_length = 8;
  ext_length += BuildRange(scratch_, kRndisPacketHeader, ext + ext_length);
  if (length > kMaxFrame) return kNvspFail;
  ext_length += BuildRange(frame, length, ext + ext_length);
  const NvspMessage m = Nvsp(kNvspSendRndisPacket, 0, kNoSection, 0);
  return Request(m, ext, ext_length);
}

uint32_t Adapter::ReceiveFrame(void* buffer, uint32_t capacity,
                               uint32_t timeout_ms) {
  if (!bus_->WaitUntil(
          [&] {
            Poll();
            return frame_count_ > 0;
          },
          timeout_ms)) {
    return 0;
  }
  const uint32_t slot = frame_head_;
  frame_head_ = (frame_head_ + 1) % kFrameSlots;
  --frame_count_;
  const uint32_t n =
      frame_lengths_[slot] < capacity ? frame_lengths_[slot] : capacity;
  Copy(buffer, frames_[slot], n);
  return n;
}

void Adapter::Poll() {
  for (;;) {
    // Frames wait in the host's sections (and the host stops reading its TAP
    // device) until there is room for a whole batch here, as hv_netvsc's
    // NAPI budget leaves packets in the ring. A request waiting for its
    // completion or an RNDIS answer takes everything, dropping frames if it
    // must: it cannot wait for a reader.
    const bool waiting_for_control = wanted_id_ != 0 || waiting_response_;
    if (!waiting_for_control && kFrameSlots - frame_count_ < kBatchRoom) {
      return;
    }
    uint32_t len = 0;
    last_receive_result =
        channel_.ReceivePacket(packet_, sizeof(packet_), &len);
    if (last_receive_result <= 0) return;
    vmbus::PacketDescriptor desc;
    __builtin_memcpy(&desc, packet_, sizeof(desc));
    ++packets_seen;
    last_packet_type = desc.type;
    last_trans_id = desc.trans_id;
    const uint32_t offset = uint32_t{desc.offset8} * 8;
    if (desc.type == vmbus::kPacketCompletion) {
      if (wanted_id_ != 0 && desc.trans_id == wanted_id_ && !have_completion_) {
        Zero(&completion_, sizeof(completion_));
        Copy(&completion_, packet_ + offset,
             len - offset < sizeof(completion_) ? len - offset
                                                : sizeof(completion_));
        have_completion_ = true;
      } else {
        ++unexpected;
      }
    } else if (desc.type == 7) {  // VM_PKT_DATA_USING_XFER_PAGES
      HandleTransferPages(packet_, len, desc.trans_id);
    }
  }
}

void Adapter::HandleTransferPages(const uint8_t* packet, uint32_t length,
                                  uint64_t trans_id) {
  vmbus::PacketDescriptor desc;
  __builtin_memcpy(&desc, packet, sizeof(desc));
  const uint32_t offset = uint32_t{desc.offset8} * 8;
  TransferPageHeader h;
  bool ok = offset >= 16 + sizeof(h) && length >= offset + 4 &&
            receive_buffer_ != nullptr;
  if (ok) {
    __builtin_memcpy(&h, packet + 16, sizeof(h));
    ok = Get32(packet + offset) == kNvspSendRndisPacket &&
         h.set_id == kReceiveBufferId &&
         16 + sizeof(h) + uint64_t{h.range_count} * 8 <= offset;
  }
  for (uint32_t i = 0; ok && i < h.range_count; ++i) {
    TransferPageRange r;
    __builtin_memcpy(&r, packet + 16 + sizeof(h) + 8 * i, sizeof(r));
    // netvsc_receive's checks.
    if (r.byte_offset > receive_bytes_ ||
        r.byte_count > receive_bytes_ - r.byte_offset ||
        r.byte_count > receive_section_size || r.byte_count < 8) {
      ++bad_receives;
      continue;
    }
    const uint8_t* m = receive_buffer_ + r.byte_offset;
    const uint32_t type = Get32(m), msg_length = Get32(m + 4);
    if (msg_length < 8 || msg_length > r.byte_count) {
      ++bad_receives;
      continue;
    }
    if (type == kRndisPacket) {
      const uint32_t data_offset = Get32(m + 8), data_length = Get32(m + 12);
      if (msg_length < kRndisPacketHeader || data_offset >= msg_length - 8 ||
          data_length > msg_length - 8 - data_offset ||
          data_length > kMaxFrame) {
        ++bad_receives;
        continue;
      }
      if (frame_count_ == kFrameSlots) {
        ++frames_dropped;
        continue;
      }
      const uint32_t slot = (frame_head_ + frame_count_) % kFrameSlots;
      Copy(frames_[slot], m + 8 + data_offset, data_length);
      frame_lengths_[slot] = data_length;
      ++frame_count_;
    } else if (type == kRndisIndicate) {
      const uint32_t status = msg_length >= 20 ? Get32(m + 8) : 0;
      if (status == kMediaConnect) {
        link_up = true;
        ++link_up_indications;
      } else if (status == kMediaDisconnect) {
        link_up = false;
        ++link_down_indications;
      }
    } else if ((type & kRndisComplete) != 0 &&
               msg_length <= sizeof(response_)) {
      Copy(response_, m, msg_length);
      response_length_ = msg_length;
      have_response_ = true;
    } else {
      ++bad_receives;
    }
  }
  if (!ok) ++bad_receives;
  // send_recv_completions: an 8-byte SEND_RNDIS_PKT_COMPLETE.
  const uint32_t complete[2] = {kNvspSendRndisPacketComplete, kNvspSuccess};
  if (!channel_.Send(vmbus::kPacketCompletion, 0, trans_id, complete,
                     sizeof(complete))) {
    ++unexpected;
  }
}

}  // namespace unixhv::netvsc
