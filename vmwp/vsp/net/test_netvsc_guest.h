#ifndef HVSTACK_VMWP_VSP_NET_TEST_NETVSC_GUEST_H_
#define HVSTACK_VMWP_VSP_NET_TEST_NETVSC_GUEST_H_

// A guest-side netvsc for tests and benchmarks, written from Linux's
// drivers/net/hyperv (netvsc.c, rndis_filter.c, netvsc_drv.c) on top of the
// VMBus test peer (vmwp/vmbus/test_fake_guest.h): it negotiates NVSP the way
// netvsc_connect_vsp does, lends receive and send buffers through GPADLs,
// sends RNDIS control messages as GPA-direct page buffers
// (rndis_filter_send_request), frames in send sections (batched as
// netvsc_send does) or GPA-direct ranges, and reads transfer-page packets
// from its receive buffer, completing them as netvsc_receive does. A
// protocol peer, not a mock: every byte goes through the real rings and
// buffers. Hostile variants are built from its pieces.

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "vmwp/vmbus/server.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/net/nvsp.h"
#include "vmwp/vsp/net/rndis.h"

namespace vsp::net::testing {

using vmbus::testing::FakeGuest;

struct GuestLayout {
  // Guest pages used (all inside FakeGuest's RAM).
  uint64_t ring_first = 16;
  uint64_t ring_pages = 64;  // 32 + 32: header + 31 data pages each way
  uint64_t receive_first = 256;
  uint64_t receive_pages = 256;  // 1 MiB
  uint64_t send_first = 1024;
  uint64_t send_pages = 64;       // 256 KiB
  uint64_t scratch_first = 2048;  // GPA-direct data, control messages
  uint64_t scratch_pages = 64;
};

class NetvscGuest {
 public:
  static constexpr uint32_t kRingGpadl = 0xE1E10;
  static constexpr uint32_t kReceiveGpadl = 0xE1E11;
  static constexpr uint32_t kSendGpadl = 0xE1E12;
  static constexpr uint16_t kReceiveBufferId = 0xCAFE;  // as Linux
  static constexpr uint16_t kSendBufferId = 0;

  NetvscGuest(FakeGuest& guest, vmbus::VmbusServer& server,
              std::function<void()> pump, GuestLayout layout = {})
      : g_(guest), server_(server), pump_(std::move(pump)), l_(layout) {}

  // ---- VMBus: connect, find the netvsc offer, open its channel.
  bool Open(uint32_t vmbus_version = vmbus::kVersionWin10V5_3) {
    if (!server_.connected()) g_.Connect(vmbus_version);
    std::vector<vmbus::OfferChannel> offers = g_.RequestOffers();
    for (const auto& o : offers) {
      if (o.offer.if_type == NetworkClassId()) {
        relid = o.child_relid;
        connection_id = o.connection_id;
      }
    }
    if (relid == 0) return false;
    const uint64_t split = l_.ring_pages / 2;
    g_.InitRings(l_.ring_first, l_.ring_pages, split);
    if (g_.CreateGpadl(relid, kRingGpadl,
                       FakeGuest::Pages(l_.ring_first, l_.ring_pages))
            .creation_status != 0) {
      return false;
    }
    return g_.Open(relid, kRingGpadl, static_cast<uint32_t>(split), 1).status ==
           0;
  }

  void Signal() {
    server_.OnSignalEvent(0, connection_id, 0);
    pump_();
  }

  // ---- Raw packets.
  bool Write(uint16_t type, uint16_t flags, uint64_t trans_id,
             std::span<const uint8_t> extension,
             std::span<const uint8_t> payload, bool signal = true) {
    if (!g_.out->Write(type, flags, trans_id, extension, payload)) {
      return false;
    }
    if (signal) Signal();
    return true;
  }
  template <typename T>
  bool SendNvsp(uint32_t type, const T& body, uint64_t trans_id,
                bool completion = true) {
    NvspMessage m = MakeNvsp(type, body);
    return Write(vmbus::kPacketDataInband,
                 completion ? vmbus::kPacketFlagCompletionRequested : 0,
                 trans_id, {}, Bytes(m));
  }

  // Reads everything the host wrote: completions by transaction id,
  // transfer-page packets into RNDIS messages (frames, responses,
  // indications). Receives are completed at once unless hold_receives.
  void ProcessInbound() {
    while (auto p = g_.in->Read()) {
      ++inbound_packets;
      if (p->type == vmbus::kPacketCompletion) {
        completions[p->trans_id] = p->data;
        continue;
      }
      if (p->type != vmbus::kPacketDataUsingXferPages) {
        other_packets.push_back(*p);
        continue;
      }
      HandleTransferPages(*p);
    }
    // As hv_pkt_iter_close: tell the host when it waits for room.
    Signal();
  }

  // ---- NVSP bring-up (netvsc_connect_vsp / netvsc_init_buf).
  // Tries `versions` newest first, one INIT each (min = max), as Linux.
  uint32_t Negotiate(std::vector<uint32_t> versions = {
                         kNvspVersion61, kNvspVersion6, kNvspVersion5,
                         kNvspVersion4, kNvspVersion2, kNvspVersion1}) {
    for (uint32_t v : versions) {
      const uint64_t id = next_id_++;
      SendNvsp(kNvspMsgInit, NvspInit{v, v}, id);
      ProcessInbound();
      auto c = Completion<NvspInitComplete>(id, kNvspMsgInitComplete);
      if (c && c->status == kNvspStatusSuccess) {
        version = v;
        break;
      }
    }
    if (version == 0) return 0;
    const uint32_t ndis = version <= kNvspVersion4 ? 0x00060001 : 0x0006001e;
    SendNvsp(kNvspMsg1SendNdisVersion,
             Nvsp1SendNdisVersion{ndis >> 16, ndis & 0xFFFF}, 0, false);
    if (version >= kNvspVersion2) {
      Nvsp2SendNdisConfig config{1514, 0, 1u << 3};
      SendNvsp(kNvspMsg2SendNdisConfig, config, 0, false);
    }
    return version;
  }

  std::optional<Nvsp1SendReceiveBufferComplete> LendReceiveBuffer(
      uint32_t handle = kReceiveGpadl, bool create_gpadl = true) {
    if (create_gpadl &&
        g_.CreateGpadl(relid, handle,
                       FakeGuest::Pages(l_.receive_first, l_.receive_pages))
                .creation_status != 0) {
      return std::nullopt;
    }
    const uint64_t id = next_id_++;
    SendNvsp(kNvspMsg1SendReceiveBuffer,
             Nvsp1SendBuffer{handle, kReceiveBufferId}, id);
    ProcessInbound();
    auto c = Completion<Nvsp1SendReceiveBufferComplete>(
        id, kNvspMsg1SendReceiveBufferComplete);
    if (c && c->status == kNvspStatusSuccess) {
      receive_section_size = c->sections[0].sub_allocation_size;
      receive_section_count = c->sections[0].sub_allocation_count;
    }
    return c;
  }
  std::optional<Nvsp1SendSendBufferComplete> LendSendBuffer(
      uint32_t handle = kSendGpadl, bool create_gpadl = true) {
    if (create_gpadl &&
        g_.CreateGpadl(relid, handle,
                       FakeGuest::Pages(l_.send_first, l_.send_pages))
                .creation_status != 0) {
      return std::nullopt;
    }
    const uint64_t id = next_id_++;
    SendNvsp(kNvspMsg1SendSendBuffer, Nvsp1SendBuffer{handle, kSendBufferId},
             id);
    ProcessInbound();
    auto c = Completion<Nvsp1SendSendBufferComplete>(
        id, kNvspMsg1SendSendBufferComplete);
    if (c && c->status == kNvspStatusSuccess) {
      send_section_size = c->section_size;
      send_section_count =
          static_cast<uint32_t>(l_.send_pages * 4096 / send_section_size);
    }
    return c;
  }

  // ---- RNDIS control (rndis_filter_send_request: one GPA-direct page
  // buffer, no send section, channel type 1). Returns the response.
  std::optional<std::vector<uint8_t>> Rndis(std::vector<uint8_t> message) {
    // The request id sits right after the header in every request.
    uint32_t request_id = 0;
    if (message.size() >= 12) std::memcpy(&request_id, message.data() + 8, 4);
    const uint64_t id = SendRndisGpaDirect(message, kRndisChannelControl);
    ProcessInbound();
    last_rndis_status = RndisCompletionStatus(id);
    for (auto it = responses.begin(); it != responses.end(); ++it) {
      uint32_t rid = 0;
      if (it->size() >= 12) std::memcpy(&rid, it->data() + 8, 4);
      uint32_t type = 0;
      std::memcpy(&type, it->data(), 4);
      if (rid == request_id || type == kRndisMsgResetComplete) {
        std::vector<uint8_t> r = std::move(*it);
        responses.erase(it);
        return r;
      }
    }
    return std::nullopt;
  }
  std::vector<uint8_t> OidMessage(uint32_t type, uint32_t oid,
                                  const std::vector<uint8_t>& info = {}) {
    std::vector<uint8_t> m(8 + sizeof(RndisOidRequest) + info.size());
    RndisHeader h{type, static_cast<uint32_t>(m.size())};
    RndisOidRequest r{next_rndis_id_++, oid, static_cast<uint32_t>(info.size()),
                      sizeof(RndisOidRequest), 0};
    std::memcpy(m.data(), &h, 8);
    std::memcpy(m.data() + 8, &r, sizeof(r));
    if (!info.empty()) {
      std::memcpy(m.data() + 8 + sizeof(r), info.data(), info.size());
    }
    return m;
  }
  // Status and info of a QUERY_C.
  std::optional<std::pair<uint32_t, std::vector<uint8_t>>> Query(
      uint32_t oid, const std::vector<uint8_t>& info = {}) {
    auto r = Rndis(OidMessage(kRndisMsgQuery, oid, info));
    if (!r || r->size() < 8 + sizeof(RndisQueryComplete)) return std::nullopt;
    RndisQueryComplete c;
    std::memcpy(&c, r->data() + 8, sizeof(c));
    if (uint64_t{c.info_buffer_offset} + c.info_buffer_length > r->size() - 8)
      return std::nullopt;
    auto begin = r->begin() + 8 + c.info_buffer_offset;
    return std::make_pair(
        c.status, std::vector<uint8_t>(begin, begin + c.info_buffer_length));
  }
  std::optional<uint32_t> Set(uint32_t oid, const std::vector<uint8_t>& info) {
    auto r = Rndis(OidMessage(kRndisMsgSet, oid, info));
    if (!r || r->size() < 16) return std::nullopt;
    RndisSetComplete c;
    std::memcpy(&c, r->data() + 8, sizeof(c));
    return c.status;
  }

  // rndis_filter_device_add + rndis_filter_open: INIT, MTU, MAC, hwcaps,
  // offload params, link status, link speed, RSS caps, packet filter.
  bool BringUpRndis() {
    std::vector<uint8_t> init(8 + sizeof(RndisInitializeRequest));
    RndisHeader h{kRndisMsgInit, static_cast<uint32_t>(init.size())};
    RndisInitializeRequest req{next_rndis_id_++, 1, 0, 0x4000};
    std::memcpy(init.data(), &h, 8);
    std::memcpy(init.data() + 8, &req, sizeof(req));
    auto r = Rndis(init);
    if (!r || r->size() < 8 + sizeof(RndisInitializeComplete)) return false;
    RndisInitializeComplete ic;
    std::memcpy(&ic, r->data() + 8, sizeof(ic));
    if (ic.status != kRndisStatusSuccess) return false;
    max_packets = ic.max_packets_per_message;
    alignment = 1u << ic.packet_alignment_factor;
    auto mtu_answer = Query(kOidGenMaximumFrameSize);
    if (!mtu_answer || mtu_answer->first != 0) return false;
    std::memcpy(&mtu, mtu_answer->second.data(), 4);
    auto mac_answer = Query(kOid8023PermanentAddress);
    if (!mac_answer || mac_answer->second.size() != 6) return false;
    std::memcpy(mac, mac_answer->second.data(), 6);
    Query(kOidGenFriendlyName);
    const uint16_t size = version >= kNvspVersion5   ? kNdisOffloadSize
                          : version >= kNvspVersion4 ? kNdisOffloadSize61
                                                     : kNdisOffloadSize60;
    std::vector<uint8_t> caps(size, 0);
    NdisObjectHeader oh{kNdisObjectTypeOffload,
                        static_cast<uint8_t>(version >= kNvspVersion5   ? 3
                                             : version >= kNvspVersion4 ? 2
                                                                        : 1),
                        size};
    std::memcpy(caps.data(), &oh, 4);
    auto hw = Query(kOidTcpOffloadHardwareCapabilities, caps);
    if (!hw || hw->first != 0) return false;
    NdisOffloadParameters params{};
    params.header = {kNdisObjectTypeDefault, 3, sizeof(params)};
    params.ip4_checksum = kOffloadParameterDisabled;
    std::vector<uint8_t> p(version <= kNvspVersion4
                               ? kNdisOffloadParametersSizeV4
                               : sizeof(params));
    std::memcpy(p.data(), &params, p.size());
    if (Set(kOidTcpOffloadParameters, p) != kRndisStatusSuccess) return false;
    auto link = Query(kOidGenMediaConnectStatus);
    if (!link || link->second.size() != 4) return false;
    uint32_t state;
    std::memcpy(&state, link->second.data(), 4);
    link_up = state == kMediaStateConnected;
    if (version >= kNvspVersion5) {
      Query(kOidGenLinkSpeed);
      Query(kOidGenReceiveScaleCapabilities,
            std::vector<uint8_t>(sizeof(NdisReceiveScaleCapabilities), 0));
    }
    return SetFilter(kPacketTypeBroadcast | kPacketTypeAllMulticast |
                     kPacketTypeDirected);
  }
  bool SetFilter(uint32_t filter) {
    std::vector<uint8_t> f(4);
    std::memcpy(f.data(), &filter, 4);
    return Set(kOidGenCurrentPacketFilter, f) == kRndisStatusSuccess;
  }

  // Everything Linux does from channel open to an interface that is up.
  bool BringUp() {
    return Open() && Negotiate() != 0 && LendReceiveBuffer() &&
           LendSendBuffer() && BringUpRndis();
  }

  // ---- Data, guest -> host.
  // netvsc_xmit's RNDIS_MSG_PACKET (+ optional VLAN PPI) for `frame`.
  static std::vector<uint8_t> PacketMessage(std::span<const uint8_t> frame,
                                            std::optional<uint32_t> vlan = {},
                                            std::optional<uint32_t> lso = {}) {
    RndisPacket p{};
    p.data_offset = sizeof(RndisPacket);
    p.data_length = static_cast<uint32_t>(frame.size());
    p.per_packet_info_offset = sizeof(RndisPacket);
    std::vector<uint8_t> ppis;
    auto add_ppi = [&](uint32_t type, uint32_t value) {
      RndisPerPacketInfo e{16, type, 12};
      const size_t at = ppis.size();
      ppis.resize(at + 16);
      std::memcpy(ppis.data() + at, &e, 12);
      std::memcpy(ppis.data() + at + 12, &value, 4);
      p.data_offset += 16;
      p.per_packet_info_length += 16;
    };
    if (vlan) add_ppi(kPpiIeee8021q, *vlan);
    if (lso) add_ppi(kPpiTcpLargeSend, *lso);
    RndisHeader h{
        kRndisMsgPacket,
        static_cast<uint32_t>(8 + sizeof(p) + ppis.size() + frame.size())};
    std::vector<uint8_t> m(h.length);
    std::memcpy(m.data(), &h, 8);
    std::memcpy(m.data() + 8, &p, sizeof(p));
    std::memcpy(m.data() + 8 + sizeof(p), ppis.data(), ppis.size());
    std::memcpy(m.data() + 8 + sizeof(p) + ppis.size(), frame.data(),
                frame.size());
    return m;
  }
  // Copies `messages` (each padded to the RNDIS alignment but the last, as
  // netvsc_copy_to_send_buf) into send section `section` and sends
  // SEND_RNDIS_PKT naming it. The transaction id.
  uint64_t SendInSection(const std::vector<std::vector<uint8_t>>& messages,
                         uint32_t section = 0, bool signal = true) {
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i < messages.size(); ++i) {
      std::vector<uint8_t> m = messages[i];
      if (i + 1 < messages.size() && m.size() % alignment != 0) {
        const uint32_t pad = alignment - m.size() % alignment;
        uint32_t len;
        std::memcpy(&len, m.data() + 4, 4);
        len += pad;
        std::memcpy(m.data() + 4, &len, 4);
        m.resize(m.size() + pad, 0);
      }
      bytes.insert(bytes.end(), m.begin(), m.end());
    }
    std::memcpy(g_.memory.base() + l_.send_first * 4096 +
                    uint64_t{section} * send_section_size,
                bytes.data(), bytes.size());
    const uint64_t id = next_id_++;
    NvspMessage m =
        MakeNvsp(kNvspMsg1SendRndisPacket,
                 Nvsp1SendRndisPacket{kRndisChannelData, section,
                                      static_cast<uint32_t>(bytes.size())});
    Write(vmbus::kPacketDataInband, vmbus::kPacketFlagCompletionRequested, id,
          {}, Bytes(m), signal);
    return id;
  }
  // GPA-direct: `bytes` placed in scratch pages (page-crossing when
  // `offset` says so) and named by mpb ranges of at most `chunk` bytes; an
  // optional send-section prefix (netvsc's cp_partial).
  uint64_t SendRndisGpaDirect(std::span<const uint8_t> bytes,
                              uint32_t channel_type,
                              uint32_t section = kNoSendSection,
                              uint32_t section_bytes = 0, uint32_t offset = 100,
                              uint32_t chunk = 3000, bool signal = true) {
    uint8_t* scratch = g_.memory.base() + l_.scratch_first * 4096;
    std::memcpy(scratch + offset, bytes.data(), bytes.size());
    std::vector<uint8_t> ext(8);
    uint32_t count = 0;
    for (uint32_t done = 0; done < bytes.size();) {
      const uint32_t len =
          std::min<uint32_t>(chunk, static_cast<uint32_t>(bytes.size()) - done);
      const uint64_t gpa = l_.scratch_first * 4096 + offset + done;
      const uint32_t in_page = gpa % 4096;
      const uint64_t pages = (in_page + len + 4095) / 4096;
      const size_t at = ext.size();
      ext.resize(at + 8 + pages * 8);
      std::memcpy(ext.data() + at, &len, 4);
      std::memcpy(ext.data() + at + 4, &in_page, 4);
      for (uint64_t j = 0; j < pages; ++j) {
        const uint64_t pfn = gpa / 4096 + j;
        std::memcpy(ext.data() + at + 8 + j * 8, &pfn, 8);
      }
      done += len;
      ++count;
    }
    std::memcpy(ext.data() + 4, &count, 4);
    const uint64_t id = next_id_++;
    NvspMessage m =
        MakeNvsp(kNvspMsg1SendRndisPacket,
                 Nvsp1SendRndisPacket{channel_type, section, section_bytes});
    Write(vmbus::kPacketDataUsingGpaDirect,
          vmbus::kPacketFlagCompletionRequested, id, ext, Bytes(m), signal);
    return id;
  }
  // The status of SEND_RNDIS_PKT `id`'s completion, if it came.
  std::optional<uint32_t> RndisCompletionStatus(uint64_t id) {
    auto c = Completion<Nvsp1SendRndisPacketComplete>(
        id, kNvspMsg1SendRndisPacketComplete);
    if (!c) return std::nullopt;
    return c->status;
  }

  template <typename T>
  std::optional<T> Completion(uint64_t id, uint32_t type) {
    auto it = completions.find(id);
    if (it == completions.end() || it->second.size() < 4 + sizeof(T)) {
      return std::nullopt;
    }
    uint32_t t;
    std::memcpy(&t, it->second.data(), 4);
    if (t != type) return std::nullopt;
    T out;
    std::memcpy(&out, it->second.data() + 4, sizeof(T));
    completions.erase(it);
    return out;
  }

  // Completes held receives (hold_receives).
  void CompleteReceives(uint32_t status = kNvspStatusSuccess) {
    for (uint64_t id : held) {
      NvspMessage m = MakeNvsp(kNvspMsg1SendRndisPacketComplete,
                               Nvsp1SendRndisPacketComplete{status});
      g_.out->Write(vmbus::kPacketCompletion, 0, id, {}, Bytes(m));
    }
    held.clear();
    Signal();
  }

  // What came in.
  std::deque<std::vector<uint8_t>> frames;     // RNDIS data packets
  std::deque<std::vector<uint8_t>> responses;  // *_C messages
  std::vector<uint32_t> indications;           // RNDIS_MSG_INDICATE status
  std::map<uint64_t, std::vector<uint8_t>> completions;
  std::vector<vmbus::testing::GuestPacket> other_packets;
  std::vector<uint64_t> held;
  bool hold_receives = false;
  uint64_t bad_receives = 0;  // what netvsc_receive would refuse
  uint64_t inbound_packets = 0;

  uint32_t relid = 0;
  uint32_t connection_id = 0;
  uint32_t version = 0;
  uint32_t receive_section_size = 0;
  uint32_t receive_section_count = 0;
  uint32_t send_section_size = 0;
  uint32_t send_section_count = 0;
  uint32_t max_packets = 0;
  uint32_t alignment = 8;
  uint32_t mtu = 0;
  uint8_t mac[6] = {};
  bool link_up = false;
  std::optional<uint32_t> last_rndis_status;

 private:
  // netvsc_receive + rndis_filter_receive, with their checks.
  void HandleTransferPages(const vmbus::testing::GuestPacket& p) {
    bool ok =
        p.extension.size() >= sizeof(TransferPageHeader) && p.data.size() >= 4;
    TransferPageHeader h{};
    if (ok) {
      std::memcpy(&h, p.extension.data(), sizeof(h));
      uint32_t type;
      std::memcpy(&type, p.data.data(), 4);
      ok = type == kNvspMsg1SendRndisPacket &&
           h.transfer_page_set_id == kReceiveBufferId &&
           sizeof(h) + uint64_t{h.range_count} * 8 <= p.extension.size();
    }
    const uint8_t* buffer = g_.memory.base() + l_.receive_first * 4096;
    const uint64_t buffer_size = l_.receive_pages * 4096;
    for (uint32_t i = 0; ok && i < h.range_count; ++i) {
      TransferPageRange r;
      std::memcpy(&r, p.extension.data() + sizeof(h) + i * 8, 8);
      if (r.byte_offset > buffer_size ||
          r.byte_count > buffer_size - r.byte_offset ||
          r.byte_count > receive_section_size) {
        ++bad_receives;
        continue;
      }
      std::vector<uint8_t> msg(buffer + r.byte_offset,
                               buffer + r.byte_offset + r.byte_count);
      auto view = ParseRndisMessage(msg);
      if (!view.ok()) {
        ++bad_receives;
        continue;
      }
      if (view->type == kRndisMsgPacket) {
        auto pkt = ParseRndisPacket(view->body);
        if (!pkt.ok()) {
          ++bad_receives;
          continue;
        }
        frames.emplace_back(pkt->frame.begin(), pkt->frame.end());
      } else if (view->type == kRndisMsgIndicate) {
        RndisIndicateStatus s{};
        std::memcpy(&s, view->body.data(),
                    std::min(view->body.size(), sizeof(s)));
        indications.push_back(s.status);
      } else {
        responses.push_back(msg);
      }
    }
    if (!ok) ++bad_receives;
    if (hold_receives) {
      held.push_back(p.trans_id);
      return;
    }
    NvspMessage m = MakeNvsp(kNvspMsg1SendRndisPacketComplete,
                             Nvsp1SendRndisPacketComplete{kNvspStatusSuccess});
    // Linux sends an 8-byte completion (send_recv_completions).
    g_.out->Write(vmbus::kPacketCompletion, 0, p.trans_id, {},
                  std::span<const uint8_t>(Bytes(m)).first(8));
  }

  FakeGuest& g_;
  vmbus::VmbusServer& server_;
  std::function<void()> pump_;
  const GuestLayout l_;
  uint64_t next_id_ = 1;
  uint32_t next_rndis_id_ = 1;
};

}  // namespace vsp::net::testing

#endif  // HVSTACK_VMWP_VSP_NET_TEST_NETVSC_GUEST_H_
