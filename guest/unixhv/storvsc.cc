#include "guest/unixhv/storvsc.h"

namespace unixhv::storvsc {
namespace {

void Zero(void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = 0;
}
void Copy(void* dst, const void* src, size_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = s[i];
}

}  // namespace

void BuildSrb(VstorPacket* p, uint8_t path, uint8_t target, uint8_t lun,
              const uint8_t* cdb, uint8_t cdb_length, uint32_t length,
              bool data_in) {
  Zero(p, sizeof(*p));
  p->operation = kOpExecuteSrb;
  p->flags = 1;  // REQUEST_COMPLETION_FLAG
  VmscsiRequest& s = p->srb;
  s.length = sizeof(VmscsiRequest);
  s.path_id = path;
  s.target_id = target;
  s.lun = lun;
  s.cdb_length = cdb_length;
  s.sense_info_length = 0x14;
  s.data_in = length == 0 ? 2 : data_in ? 1 : 0;
  s.data_transfer_length = length;
  s.time_out_value = 60;
  s.srb_flags = 0x08 | (length == 0 ? 0 : data_in ? 0x40 : 0x80);
  Copy(s.cdb_or_sense, cdb, cdb_length > 16 ? 16 : cdb_length);
}

uint32_t BuildGpaDirect(uint64_t gpa, uint32_t length, uint8_t* out,
                        uint32_t capacity) {
  const uint32_t offset = static_cast<uint32_t>(gpa & 4095);
  const uint32_t pages = (offset + length + 4095) / 4096;
  const uint32_t size = 16 + 8 * pages;
  if (size > capacity) return 0;
  const uint32_t header[4] = {0, 1, length, offset};
  Copy(out, header, sizeof(header));
  for (uint32_t i = 0; i < pages; ++i) {
    const uint64_t pfn = (gpa >> 12) + i;
    Copy(out + 16 + 8 * i, &pfn, 8);
  }
  return size;
}

Result ParseReply(const VstorPacket& reply) {
  Result r;
  r.answered = true;
  r.status = reply.status;
  r.srb_status = reply.srb.srb_status;
  r.scsi_status = reply.srb.scsi_status;
  r.transferred = reply.srb.data_transfer_length;
  if ((r.srb_status & kSrbStatusAutosenseValid) != 0 &&
      reply.srb.sense_info_length >= 14) {
    const uint8_t* sense = reply.srb.cdb_or_sense;
    r.sense_key = sense[2] & 0x0F;
    r.asc = sense[12];
    r.ascq = sense[13];
  }
  return r;
}

bool Controller::Open(vmbus::Client& bus, const vmbus::Offer& offer,
                      uint32_t ring_pages) {
  bus_ = &bus;
  uint32_t status = 0;
  return bus.Open(offer, &channel_, ring_pages, ring_pages, &status) &&
         status == 0;
}

void Controller::Close() {
  if (bus_ != nullptr && channel_.open) bus_->Close(&channel_);
}

bool Controller::Send(uint16_t type, uint64_t trans_id, const void* extension,
                      uint32_t extension_len, const void* payload,
                      uint32_t len) {
  for (int tries = 0; tries < 1000; ++tries) {
    if (channel_.SendExtended(type, 1, trans_id, extension, extension_len,
                              payload, len)) {
      return true;
    }
    if (!channel_.open || channel_.broken) return false;
    bus_->Poll();
    vmbus::WaitForInterrupt();  // the host frees room and signals
  }
  return false;
}

bool Controller::WaitReply(uint64_t trans_id, VstorPacket* out,
                           uint32_t timeout_ms) {
  bool got = false;
  bus_->WaitUntil(
      [&] {
        for (;;) {
          vmbus::PacketDescriptor d;
          uint8_t buf[256];
          uint32_t len = 0;
          const int r = channel_.Receive(&d, buf, sizeof(buf), &len);
          if (r <= 0) return r < 0;              // broken: stop waiting
          if (d.trans_id != trans_id) continue;  // a stale reply
          Zero(out, sizeof(*out));
          Copy(out, buf, len < sizeof(*out) ? len : sizeof(*out));
          got = true;
          return true;
        }
      },
      timeout_ms);
  return got;
}

uint32_t Controller::Drain() {
  uint32_t n = 0;
  for (;;) {
    vmbus::PacketDescriptor d;
    uint8_t buf[256];
    uint32_t len = 0;
    if (channel_.Receive(&d, buf, sizeof(buf), &len) <= 0) return n;
    ++n;
  }
}

bool Controller::Control(VstorPacket* p, uint32_t timeout_ms) {
  p->flags = 1;
  const uint64_t id = NextId();
  if (!Send(vmbus::kPacketDataInband, id, nullptr, 0, p, sizeof(*p)))
    return false;
  return WaitReply(id, p, timeout_ms);
}

uint16_t Controller::Initialize() {
  VstorPacket p;
  Zero(&p, sizeof(p));
  p.operation = kOpBeginInitialization;
  if (!Control(&p) || p.status != 0) return 0;
  uint16_t version = 0;
  for (uint16_t v : kVersions) {
    Zero(&p, sizeof(p));
    p.operation = kOpQueryProtocolVersion;
    p.version = v;
    if (!Control(&p) || p.operation != kOpCompleteIo) return 0;
    if (p.status == 0) {
      version = v;
      break;
    }
  }
  if (version == 0) return 0;
  Zero(&p, sizeof(p));
  p.operation = kOpQueryProperties;
  if (!Control(&p) || p.status != 0) return 0;
  properties_ = p.properties;
  Zero(&p, sizeof(p));
  p.operation = kOpEndInitialization;
  if (!Control(&p) || p.status != 0) return 0;
  return version;
}

Result Controller::Execute(uint8_t target, uint8_t lun, const uint8_t* cdb,
                           uint8_t cdb_length, void* buffer, uint32_t length,
                           bool data_in, uint8_t path) {
  VstorPacket p;
  BuildSrb(&p, path, target, lun, cdb, cdb_length, length, data_in);
  const uint64_t id = NextId();
  bool sent;
  if (length == 0) {
    sent = Send(vmbus::kPacketDataInband, id, nullptr, 0, &p, sizeof(p));
  } else {
    // Enough for 1 MiB + a partial page.
    static uint8_t ext[16 + 8 * 258];
    const uint32_t n = BuildGpaDirect(reinterpret_cast<uint64_t>(buffer),
                                      length, ext, sizeof(ext));
    if (n == 0) return Result{};
    sent = Send(vmbus::kPacketDataUsingGpaDirect, id, ext, n, &p, sizeof(p));
  }
  if (!sent) return Result{};
  VstorPacket reply;
  if (!WaitReply(id, &reply)) return Result{};
  return ParseReply(reply);
}

}  // namespace unixhv::storvsc
