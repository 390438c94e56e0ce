#include "guest/unixhv/ic.h"

namespace unixhv::ic {
namespace {

// Versions we speak, newest first (hv_util.c / hv_kvp.c).
constexpr IcVersion kFrameworkVersions[] = {{3, 0}, {1, 0}};
constexpr IcVersion kHeartbeatVersions[] = {{3, 0}, {1, 0}};
constexpr IcVersion kShutdownVersions[] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};
constexpr IcVersion kTimeSyncVersions[] = {{4, 0}, {3, 0}, {1, 0}};
constexpr IcVersion kKvpVersions[] = {{5, 0}, {4, 0}, {3, 0}};

const vmbus::Guid* const kGuids[] = {&kHeartbeatGuid, &kShutdownGuid,
                                     &kTimeSyncGuid, &kKvpGuid};

// hv_utils opens its rings with 3 data pages each way (HV_UTIL_RING_*_SIZE):
// a whole hv_kvp_msg (7.3 KiB) must fit.
constexpr uint32_t kRingPages = 4;

// The largest request is a KVP message: 28 + 7430 bytes, padded.
constexpr uint32_t kMaxPacket = 8192;
uint8_t packet[kMaxPacket] __attribute__((aligned(8)));

uint16_t Read16(const uint8_t* p) { return p[0] | (p[1] << 8); }
uint32_t Read32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24);
}
uint64_t Read64(const uint8_t* p) {
  return Read32(p) | (uint64_t{Read32(p + 4)} << 32);
}
void Write32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// ---- KVP store: what the host set, per pool (hv_kvp_daemon keeps them in
// files; we keep them in RAM). Its own NOLOAD section: it is large and is
// only read below `count`.
constexpr uint32_t kKvpPools = 5;
constexpr uint32_t kKvpPoolAuto = 2;
constexpr uint32_t kKvpEntries = 16;
constexpr uint32_t kMaxKeyBytes = 512;
constexpr uint32_t kMaxValueBytes = 2048;
struct KvpEntry {
  uint32_t key_size;  // bytes, UTF-16 with NUL
  uint32_t value_size;
  uint32_t value_type;
  uint8_t key[kMaxKeyBytes];
  uint8_t value[kMaxValueBytes];
};
KvpEntry kvp_store[kKvpPools][kKvpEntries] __attribute__((section(".pages")));
uint32_t kvp_count[kKvpPools];

// hv_kvp_msg offsets within the IC body.
constexpr uint32_t kKvpOperation = 0;
constexpr uint32_t kKvpPool = 1;
constexpr uint32_t kKvpBody = 4;
// struct hv_kvp_exchg_msg_value
constexpr uint32_t kValueType = 0;
constexpr uint32_t kKeySize = 4;
constexpr uint32_t kValueSize = 8;
constexpr uint32_t kKey = 12;
constexpr uint32_t kValue = 12 + kMaxKeyBytes;
constexpr uint32_t kExchangeSize = kValue + kMaxValueBytes;  // 2572
enum KvpOp : uint8_t { kGet = 0, kSet = 1, kDelete = 2, kEnumerate = 3 };
constexpr uint32_t kRegSz = 1;

bool SameKey(const uint8_t* a, uint32_t a_size, const uint8_t* b,
             uint32_t b_size) {
  // Compare UTF-16 code units up to the first NUL.
  for (uint32_t i = 0; i + 1 < a_size && i + 1 < b_size; i += 2) {
    const uint16_t x = Read16(a + i), y = Read16(b + i);
    if (x != y) return false;
    if (x == 0) return true;
  }
  auto end = [](const uint8_t* s, uint32_t size) {
    for (uint32_t i = 0; i + 1 < size; i += 2) {
      if (Read16(s + i) == 0) return i;
    }
    return size & ~1u;
  };
  return end(a, a_size) == end(b, b_size);
}

// ASCII -> UTF-16LE with NUL; returns bytes written (the KVP size).
uint32_t ToUtf16(const char* s, uint8_t* out, uint32_t capacity) {
  uint32_t n = 0;
  while (s[0] != 0 && n + 4 <= capacity) {
    out[n++] = static_cast<uint8_t>(*s++);
    out[n++] = 0;
  }
  out[n++] = 0;
  out[n++] = 0;
  return n;
}

void Copy(uint8_t* dst, const uint8_t* src, uint32_t n) {
  uint32_t i = 0;
  if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) &
       7) == 0) {
    for (; i + 8 <= n; i += 8) {
      *reinterpret_cast<uint64_t*>(dst + i) =
          *reinterpret_cast<const uint64_t*>(src + i);
    }
  }
  for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace

bool PrepareNegotiateResponse(uint8_t* msg, uint32_t len,
                              const IcVersion* framework, int framework_count,
                              const IcVersion* service, int service_count,
                              IcVersion* chosen_framework,
                              IcVersion* chosen_service) {
  // icmsg_negotiate: icframe_vercnt, icmsg_vercnt, reserved, versions[].
  if (len < kIcHeadersSize + 8) return false;
  uint8_t* neg = msg + kIcHeadersSize;
  const uint32_t fw_count = Read16(neg);
  const uint32_t srv_count = Read16(neg + 2);
  if (len < kIcHeadersSize + 8 + (fw_count + srv_count) * 4 ||
      len < kIcHeadersSize + 8 + 2 * 4) {
    return false;
  }
  const uint8_t* listed = neg + 8;
  auto pick = [&](const IcVersion* ours, int count, const uint8_t* theirs,
                  uint32_t their_count, IcVersion* out) {
    for (int i = 0; i < count; ++i) {
      for (uint32_t j = 0; j < their_count; ++j) {
        if (Read16(theirs + 4 * j) == ours[i].major &&
            Read16(theirs + 4 * j + 2) == ours[i].minor) {
          *out = ours[i];
          return true;
        }
      }
    }
    return false;
  };
  IcVersion fw{0, 0}, srv{0, 0};
  const bool ok =
      pick(framework, framework_count, listed, fw_count, &fw) &&
      pick(service, service_count, listed + 4 * fw_count, srv_count, &srv);
  neg[0] = ok ? 1 : 0;
  neg[1] = 0;
  neg[2] = ok ? 1 : 0;
  neg[3] = 0;
  uint8_t* out = neg + 8;
  out[0] = static_cast<uint8_t>(fw.major);
  out[1] = static_cast<uint8_t>(fw.major >> 8);
  out[2] = static_cast<uint8_t>(fw.minor);
  out[3] = static_cast<uint8_t>(fw.minor >> 8);
  out[4] = static_cast<uint8_t>(srv.major);
  out[5] = static_cast<uint8_t>(srv.major >> 8);
  out[6] = static_cast<uint8_t>(srv.minor);
  out[7] = static_cast<uint8_t>(srv.minor >> 8);
  *chosen_framework = fw;
  *chosen_service = srv;
  return ok;
}

void Services::Line(const char* text) {
  con_.Write(p_);
  con_.Write(text);
}

int Services::OpenAll(vmbus::Client& client) {
  int opened = 0;
  for (int k = 0; k < kKinds; ++k) {
    Service_& s = services_[k];
    const vmbus::Offer* offer = client.FindOffer(*kGuids[k]);
    if (offer == nullptr) {
      Line("no offer for ");
      con_.Write(s.name);
      con_.Write("\r\n");
      continue;
    }
    uint32_t status = 0;
    if (!client.Open(*offer, &s.channel, kRingPages, kRingPages, &status)) {
      Line("cannot open ");
      con_.Write(s.name);
      con_.Write(": status ");
      con_.WriteHex(status, 8);
      con_.Write("\r\n");
      continue;
    }
    Line("opened ");
    con_.Write(s.name);
    con_.Write(" (relid ");
    con_.WriteDec(offer->relid);
    con_.Write(")\r\n");
    ++opened;
  }
  return opened;
}

void Services::CloseAll(vmbus::Client& client) {
  for (Service_& s : services_) client.Close(&s.channel);
}

void Services::Service() {
  // One packet per channel per round, so that a long exchange on one (the
  // host's KVP pool scan is 7.4 KiB each way per item) does not hold up a
  // heartbeat on another. Bounded: a flooding host cannot keep us here.
  for (int round = 0; round < 32; ++round) {
    bool any = false;
    for (int k = 0; k < kKinds; ++k) {
      vmbus::Channel& ch = services_[k].channel;
      if (!ch.open || ch.broken) continue;
      vmbus::PacketDescriptor desc;
      uint32_t len = 0;
      const int r = ch.Receive(&desc, packet, sizeof(packet), &len);
      if (r < 0) {
        Line(services_[k].name);
        con_.Write(": the host wrote a malformed packet; channel stopped\r\n");
        continue;
      }
      if (r == 0) continue;
      any = true;
      if (services_[k].silent) continue;
      if (desc.type != vmbus::kPacketDataInband || len < kIcHeadersSize) {
        continue;  // hv_utils ignores these too
      }
      HandlePacket(static_cast<Kind>(k), packet, len);
      ch.Send(vmbus::kPacketDataInband, 0, desc.trans_id, packet, len);
    }
    if (!any) return;
  }
}

void Services::HandlePacket(Kind kind, uint8_t* msg, uint32_t len) {
  Service_& s = services_[kind];
  auto* h = reinterpret_cast<IcMsgHeader*>(msg + 8);
  uint32_t status = kSOk;
  if (h->icmsgtype == kIcNegotiate) {
    const IcVersion* versions = kHeartbeatVersions;
    int count = 2;
    if (kind == kShutdown) {
      versions = kShutdownVersions;
      count = 4;
    } else if (kind == kTimeSync) {
      versions = kTimeSyncVersions;
      count = 3;
    } else if (kind == kKvp) {
      versions = kKvpVersions;
      count = 3;
    }
    s.negotiated =
        PrepareNegotiateResponse(msg, len, kFrameworkVersions, 2, versions,
                                 count, &s.framework, &s.version);
    Line(s.name);
    if (s.negotiated) {
      con_.Write(" negotiated: framework ");
      con_.WriteDec(s.framework.major);
      con_.Write(".");
      con_.WriteDec(s.framework.minor);
      con_.Write(", service ");
      con_.WriteDec(s.version.major);
      con_.Write(".");
      con_.WriteDec(s.version.minor);
      con_.Write("\r\n");
    } else {
      con_.Write(" negotiation: no common version\r\n");
    }
  } else {
    uint8_t* body = msg + kIcHeadersSize;
    const uint32_t body_len = len - kIcHeadersSize;
    switch (kind) {
      case kHeartbeat:
        OnHeartbeat(body, body_len);
        break;
      case kShutdown:
        status = OnShutdown(body, body_len);
        break;
      case kTimeSync:
        OnTimeSync(s, body, body_len);
        break;
      case kKvp:
        status = OnKvp(body, body_len);
        break;
      default:
        break;
    }
  }
  h->status = status;
  h->icflags = kIcFlagTransaction | kIcFlagResponse;
}

void Services::OnHeartbeat(uint8_t* body, uint32_t body_len) {
  if (body_len < 8) return;
  // heartbeat_onchannelcallback: seq_num += 1.
  const uint64_t seq = Read64(body) + 1;
  for (int i = 0; i < 8; ++i) body[i] = static_cast<uint8_t>(seq >> (8 * i));
  if (heartbeats_++ == 0) {
    Line("heartbeat answered (seq ");
    con_.WriteDec(seq);
    con_.Write(")\r\n");
  }
}

uint32_t Services::OnShutdown(uint8_t* body, uint32_t body_len) {
  // struct shutdown_msg_data: reason_code, timeout_seconds, flags,
  // display_message[2048] (UTF-16).
  if (body_len < 12) return kEFail;
  const uint32_t reason = Read32(body);
  const uint32_t flags = Read32(body + 8);
  Line("shutdown requested: flags ");
  con_.WriteDec(flags);
  con_.Write(" reason ");
  con_.WriteHex(reason, 8);
  con_.Write(" message \"");
  for (uint32_t i = 12; i + 1 < body_len && i < 12 + 2048; i += 2) {
    const uint16_t c = Read16(body + i);
    if (c == 0) break;
    con_.PutChar(c >= 0x20 && c < 0x7F ? static_cast<char>(c) : '?');
  }
  con_.Write("\"\r\n");
  // hv_utils: 0/1 shut down (1 = forced), 2/3 restart, 4 hibernate. We power
  // off for all but hibernate, which we cannot do.
  if (flags > 3) return kEFail;
  shutdown_requested_ = true;
  shutdown_flags_ = flags;
  return kSOk;
}

void Services::OnTimeSync(Service_& s, uint8_t* body, uint32_t body_len) {
  // v4 (ictimesync_ref_data): parenttime, vmreferencetime, flags; older
  // (ictimesync_data): parenttime, childtime, roundtriptime, flags.
  if (body_len < 8) return;
  const uint64_t parent = Read64(body);
  const bool v4 = s.version.major >= 4;
  const uint32_t flags_at = v4 ? 16 : 24;
  const uint8_t flags = body_len > flags_at ? body[flags_at] : 0;
  // The first sample, and every SYNC (sent after boot and after a resume:
  // "set your clock now"); periodic SAMPLE hints stay quiet.
  if (time_samples_++ != 0 && (flags & 1) == 0) return;
  Line("time sample ");
  con_.WriteDec(parent);
  con_.Write(" flags ");
  con_.WriteDec(flags);
  if (v4 && body_len >= 17) {
    const uint64_t reference = Read64(body + 8);
    // How long the sample took to reach us, in 100 ns units of partition
    // reference time (what hv_utils uses to correct the host time).
    con_.Write(" delay_100ns ");
    const uint64_t now = now_();
    con_.WriteDec(now >= reference ? now - reference : 0);
  }
  // Unix seconds, for people reading the console.
  constexpr uint64_t kWindowsToUnix = 116444736000000000ull;
  if (parent >= kWindowsToUnix) {
    con_.Write(" unix ");
    con_.WriteDec((parent - kWindowsToUnix) / 10000000);
  }
  con_.Write("\r\n");
}

uint32_t Services::OnKvp(uint8_t* body, uint32_t body_len) {
  if (body_len < kKvpBody + 4) return kEFail;
  const uint8_t op = body[kKvpOperation];
  const uint8_t pool = body[kKvpPool];
  if (pool >= kKvpPools) return kEFail;
  uint8_t* v = body + kKvpBody;  // get/set value, or delete / enumerate
  if (op == kEnumerate) {
    if (body_len < kKvpBody + 4 + kExchangeSize) return kEFail;
    const uint32_t index = Read32(v);
    uint8_t* out = v + 4;
    if (pool == kKvpPoolAuto) {
      if (kvp_enumerations_++ == 0)
        Line("kvp: host reads the intrinsic pool\r\n");
      if (index >= static_cast<uint32_t>(intrinsic_count_)) return kSCont;
      Write32(out + kValueType, kRegSz);
      Write32(out + kKeySize,
              ToUtf16(intrinsic_[index].key, out + kKey, kMaxKeyBytes));
      Write32(out + kValueSize,
              ToUtf16(intrinsic_[index].value, out + kValue, kMaxValueBytes));
      return kSOk;
    }
    if (index >= kvp_count[pool]) return kSCont;
    const KvpEntry& e = kvp_store[pool][index];
    Write32(out + kValueType, e.value_type);
    Write32(out + kKeySize, e.key_size);
    Write32(out + kValueSize, e.value_size);
    Copy(out + kKey, e.key, e.key_size);
    Copy(out + kValue, e.value, e.value_size);
    return kSOk;
  }
  if (op == kDelete) {
    const uint32_t key_size = Read32(v);
    if (body_len < kKvpBody + 4 + kMaxKeyBytes || key_size > kMaxKeyBytes ||
        pool == kKvpPoolAuto) {
      return kEFail;
    }
    for (uint32_t i = 0; i < kvp_count[pool]; ++i) {
      KvpEntry& e = kvp_store[pool][i];
      if (SameKey(e.key, e.key_size, v + 4, key_size)) {
        e = kvp_store[pool][--kvp_count[pool]];
        return kSOk;
      }
    }
    return kEFail;
  }
  if (op != kGet && op != kSet) return kEFail;  // IP info: no network here
  if (body_len < kKvpBody + kExchangeSize) return kEFail;
  const uint32_t key_size = Read32(v + kKeySize);
  const uint32_t value_size = Read32(v + kValueSize);
  if (key_size > kMaxKeyBytes || value_size > kMaxValueBytes) return kEFail;
  if (op == kGet) {
    if (pool == kKvpPoolAuto) {
      for (int i = 0; i < intrinsic_count_; ++i) {
        uint8_t key[kMaxKeyBytes];
        const uint32_t n = ToUtf16(intrinsic_[i].key, key, sizeof(key));
        if (SameKey(key, n, v + kKey, key_size)) {
          Write32(v + kValueType, kRegSz);
          Write32(v + kValueSize,
                  ToUtf16(intrinsic_[i].value, v + kValue, kMaxValueBytes));
          return kSOk;
        }
      }
      return kEFail;
    }
    for (uint32_t i = 0; i < kvp_count[pool]; ++i) {
      const KvpEntry& e = kvp_store[pool][i];
      if (SameKey(e.key, e.key_size, v + kKey, key_size)) {
        Write32(v + kValueType, e.value_type);
        Write32(v + kValueSize, e.value_size);
        Copy(v + kValue, e.value, e.value_size);
        return kSOk;
      }
    }
    return kEFail;
  }
  // SET: the intrinsic pool is the guest's own.
  if (pool == kKvpPoolAuto) return kEFail;
  KvpEntry* e = nullptr;
  for (uint32_t i = 0; i < kvp_count[pool] && e == nullptr; ++i) {
    KvpEntry& candidate = kvp_store[pool][i];
    if (SameKey(candidate.key, candidate.key_size, v + kKey, key_size)) {
      e = &candidate;
    }
  }
  if (e == nullptr) {
    if (kvp_count[pool] == kKvpEntries) return kEFail;
    e = &kvp_store[pool][kvp_count[pool]++];
  }
  e->key_size = key_size;
  e->value_size = value_size;
  e->value_type = Read32(v + kValueType);
  Copy(e->key, v + kKey, key_size);
  Copy(e->value, v + kValue, value_size);
  Line("kvp set pool ");
  con_.WriteDec(pool);
  con_.Write(": ");
  auto print = [this](const uint8_t* s, uint32_t size) {
    for (uint32_t i = 0; i + 1 < size; i += 2) {
      const uint16_t c = Read16(s + i);
      if (c == 0) break;
      con_.PutChar(c >= 0x20 && c < 0x7F ? static_cast<char>(c) : '?');
    }
  };
  print(e->key, e->key_size);
  con_.Write(" = ");
  print(e->value, e->value_size);
  con_.Write("\r\n");
  return kSOk;
}

}  // namespace unixhv::ic
