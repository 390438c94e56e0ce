// VmbusServer save and restore (issue 14). Kept apart from server.cc so the
// fuzz suite that compiles server.cc with clang needs no generated protobuf
// code.

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmwp/vmbus/saved_state.pb.h"
#include "vmwp/vmbus/server.h"

namespace vmbus {
namespace {

std::string GuidBytes(const Guid& g) {
  return std::string(reinterpret_cast<const char*>(g.bytes.data()),
                     g.bytes.size());
}

std::string SavedGuid(const std::string& bytes) {
  Guid g;
  if (bytes.size() != g.bytes.size()) return "(bad GUID)";
  std::memcpy(g.bytes.data(), bytes.data(), g.bytes.size());
  return g.ToString();
}

std::string Describe(const VspOffer& o, uint32_t relid) {
  return absl::StrFormat(
      "channel %d (interface %s, instance %s%s)", relid,
      o.interface_type.ToString(), o.interface_instance.ToString(),
      o.sub_channel_index != 0
          ? absl::StrCat(", sub-channel ", o.sub_channel_index)
          : "");
}

}  // namespace

absl::Status VmbusServer::QuiesceVsps(absl::Time deadline) {
  std::vector<std::pair<uint32_t, Vsp*>> vsps;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [relid, channel] : channels_)
      vsps.emplace_back(relid, channel.vsp);
  }
  for (size_t i = 0; i < vsps.size(); ++i) {
    if (absl::Status s = vsps[i].second->Quiesce(deadline); !s.ok()) {
      for (size_t j = 0; j < i; ++j) vsps[j].second->Unquiesce();
      return absl::Status(
          s.code(),
          absl::StrCat(Describe(vsps[i].second->offer(), vsps[i].first),
                       " cannot be quiesced: ", s.message()));
    }
  }
  return absl::OkStatus();
}

void VmbusServer::UnquiesceVsps() {
  std::vector<Vsp*> vsps;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [relid, channel] : channels_) vsps.push_back(channel.vsp);
  }
  for (Vsp* vsp : vsps) vsp->Unquiesce();
}

absl::StatusOr<hvstack::saved::VmbusServerState> VmbusServer::SaveState() {
  hvstack::saved::VmbusServerState out;
  std::vector<std::pair<Vsp*, hvstack::saved::VmbusChannelState*>> vsps;
  {
    absl::MutexLock lock(&mu_);
    out.set_version(kStateVersion);
    out.set_protocol_version(version_);
    out.set_message_vp(message_vp_);
    out.set_message_sint(message_sint_);
    out.set_win7_interrupt_page_gpa(win7_interrupt_page_gpa_);
    out.set_offers_requested(offers_requested_);
    out.set_dropped_messages(dropped_);
    // In handle order, so that a save is deterministic.
    std::vector<uint32_t> handles;
    for (const auto& [handle, record] : gpadls_) handles.push_back(handle);
    std::sort(handles.begin(), handles.end());
    for (uint32_t handle : handles) {
      const Gpadl& g = gpadls_.at(handle).gpadl;
      hvstack::saved::GpadlState* gs = out.add_gpadls();
      gs->set_handle(g.handle);
      gs->set_child_relid(g.child_relid);
      for (const GpaRange& r : g.ranges) {
        hvstack::saved::GpaRangeState* rs = gs->add_ranges();
        rs->set_byte_count(r.byte_count);
        rs->set_byte_offset(r.byte_offset);
        for (uint64_t pfn : r.pfns) rs->add_pfns(pfn);
      }
    }
    for (const auto& [handle, assembler] : pending_gpadls_) {
      hvstack::saved::PendingGpadlState* p = out.add_pending_gpadls();
      std::span<const uint8_t> h = assembler.header_bytes();
      p->set_header(std::string(h.begin(), h.end()));
      std::span<const uint8_t> b = assembler.bytes();
      p->set_range_bytes(std::string(b.begin(), b.end()));
    }
    for (auto& [relid, channel] : channels_) {
      hvstack::saved::VmbusChannelState* c = out.add_channels();
      const VspOffer& o = channel.vsp->offer();
      c->set_relid(relid);
      c->set_interface_type(GuidBytes(o.interface_type));
      c->set_interface_instance(GuidBytes(o.interface_instance));
      c->set_sub_channel_index(o.sub_channel_index);
      c->set_offered_to_guest(channel.offered_to_guest);
      switch (channel.state) {
        case ChannelState::kOffered:
          c->set_state(hvstack::saved::VmbusChannelState::OFFERED);
          break;
        case ChannelState::kOpen:
          c->set_state(hvstack::saved::VmbusChannelState::OPEN);
          break;
        case ChannelState::kRescinded:
          c->set_state(hvstack::saved::VmbusChannelState::RESCINDED);
          break;
      }
      if (channel.state == ChannelState::kOpen && channel.open != nullptr) {
        c->set_ring_gpadl(channel.ring_gpadl);
        c->set_downstream_offset(channel.downstream_offset);
        c->set_target_vp(channel.open->target_vp());
        c->set_user_data(
            std::string(channel.user_data.begin(), channel.user_data.end()));
        const LiveChannel::RingIndices rings = channel.open->SaveIndices();
        c->set_in_read_index(rings.in_read);
        c->set_in_published_index(rings.in_published);
        c->set_out_write_index(rings.out_write);
        c->set_out_pending_set(rings.out_pending_set);
        c->set_broken(rings.broken);
      }
      vsps.emplace_back(channel.vsp, c);
    }
  }
  // Outside the lock: a VSP may look at its channel.
  for (auto& [vsp, c] : vsps) {
    absl::StatusOr<std::string> state = vsp->SaveState();
    if (state.ok()) {
      c->set_vsp_state(*std::move(state));
      continue;
    }
    if (state.status().code() == absl::StatusCode::kUnimplemented &&
        c->state() != hvstack::saved::VmbusChannelState::OPEN) {
      continue;  // nothing to save for a closed channel
    }
    return absl::Status(
        state.status().code(),
        absl::StrCat(Describe(vsp->offer(), c->relid()),
                     " cannot save its state: ", state.status().message()));
  }
  return out;
}

absl::Status VmbusServer::RestoreState(
    const hvstack::saved::VmbusServerState& state) {
  auto bad = [](auto&&... args) {
    return absl::InvalidArgumentError(
        absl::StrCat("saved VMBus state: ", args...));
  };
  if (state.version() == 0 || state.version() > kStateVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "VMBus state format version %d; this worker reads 1 to %d",
        state.version(), kStateVersion));
  }
  const uint32_t protocol = state.protocol_version();
  if (protocol != 0 &&
      std::find(std::begin(kSupportedVersions), std::end(kSupportedVersions),
                protocol) == std::end(kSupportedVersions)) {
    return bad("protocol version ", protocol >> 16, ".", protocol & 0xFFFF,
               " is not one this host speaks");
  }
  if (state.message_vp() >= options_.vp_count)
    return bad("message VP ", state.message_vp());
  if (state.message_sint() >= 16)
    return bad("message SINT ", state.message_sint());
  uint8_t* win7_page = nullptr;
  if (protocol == kVersionWin7) {
    const uint64_t gpa = state.win7_interrupt_page_gpa();
    absl::StatusOr<uint8_t*> page =
        gpa % kPageSize == 0 ? memory_.PageHost(gpa / kPageSize)
                             : absl::InvalidArgumentError("unaligned");
    if (!page.ok()) return bad("WIN7 interrupt page 0x", absl::Hex(gpa));
    win7_page = *page;
  }
  // GPADLs: checked as when the guest made them.
  absl::flat_hash_map<uint32_t, GpadlRecord> gpadls;
  for (const hvstack::saved::GpadlState& gs : state.gpadls()) {
    if (gs.handle() == 0 || gpadls.contains(gs.handle()))
      return bad("GPADL handle 0x", absl::Hex(gs.handle()));
    if (gpadls.size() >= options_.max_gpadls) return bad("too many GPADLs");
    Gpadl g;
    g.handle = gs.handle();
    g.child_relid = gs.child_relid();
    absl::flat_hash_map<uint64_t, bool> seen;
    for (const hvstack::saved::GpaRangeState& rs : gs.ranges()) {
      GpaRange r;
      r.byte_count = rs.byte_count();
      r.byte_offset = rs.byte_offset();
      const uint64_t pages =
          (uint64_t{r.byte_offset} + r.byte_count + kPageSize - 1) / kPageSize;
      if (r.byte_count == 0 || r.byte_offset >= kPageSize ||
          static_cast<uint64_t>(rs.pfns_size()) != pages) {
        return bad("GPADL 0x", absl::Hex(g.handle), ": a range of ",
                   r.byte_count, " bytes at offset ", r.byte_offset, " with ",
                   rs.pfns_size(), " pages");
      }
      for (uint64_t pfn : rs.pfns()) {
        if (!memory_.PageHost(pfn).ok() || seen.contains(pfn)) {
          return bad("GPADL 0x", absl::Hex(g.handle), ": page 0x",
                     absl::Hex(pfn), " is not RAM or named twice");
        }
        seen[pfn] = true;
        r.pfns.push_back(pfn);
      }
      g.ranges.push_back(std::move(r));
    }
    gpadls[g.handle] = GpadlRecord{std::move(g), false};
  }
  absl::flat_hash_map<uint32_t, GpadlAssembler> pending;
  for (const hvstack::saved::PendingGpadlState& p : state.pending_gpadls()) {
    absl::StatusOr<GpadlAssembler> a = GpadlAssembler::Restore(
        std::span<const uint8_t>(
            reinterpret_cast<const uint8_t*>(p.header().data()),
            p.header().size()),
        std::span<const uint8_t>(
            reinterpret_cast<const uint8_t*>(p.range_bytes().data()),
            p.range_bytes().size()));
    if (!a.ok()) return a.status();
    if (a->handle() == 0 || gpadls.contains(a->handle()) ||
        pending.contains(a->handle()) ||
        pending.size() >= options_.max_pending_gpadls) {
      return bad("pending GPADL handle 0x", absl::Hex(a->handle()));
    }
    const uint32_t handle = a->handle();
    pending.emplace(handle, *std::move(a));
  }
  absl::flat_hash_map<uint32_t, const hvstack::saved::VmbusChannelState*> saved;
  for (const hvstack::saved::VmbusChannelState& c : state.channels()) {
    if (c.relid() == 0 || c.relid() > kMaxRelid || saved.contains(c.relid()))
      return bad("channel relid ", c.relid());
    saved[c.relid()] = &c;
  }
  {
    absl::MutexLock lock(&mu_);
    version_ = protocol;
    message_vp_ = state.message_vp();
    message_sint_ = static_cast<uint8_t>(state.message_sint());
    win7_interrupt_page_ = win7_page;
    win7_interrupt_page_gpa_ =
        win7_page != nullptr ? state.win7_interrupt_page_gpa() : 0;
    offers_requested_ = state.offers_requested();
    dropped_ = state.dropped_messages();
    gpadls_ = std::move(gpadls);
    pending_gpadls_ = std::move(pending);
    restoring_ = true;
  }
  absl::Status result = absl::OkStatus();
  absl::flat_hash_map<uint32_t, bool> restored;
  // Rounds: VSPs may register sub-channels from their RestoreState.
  while (result.ok()) {
    struct Pending {
      uint32_t relid;
      Vsp* vsp;
      std::shared_ptr<LiveChannel> live;
      const hvstack::saved::VmbusChannelState* c;
    };
    std::vector<Pending> round;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [relid, channel] : channels_) {
        if (restored.contains(relid)) continue;
        auto it = saved.find(relid);
        if (it == saved.end()) continue;  // checked at the end
        const hvstack::saved::VmbusChannelState& c = *it->second;
        const VspOffer& o = channel.vsp->offer();
        if (c.interface_type() != GuidBytes(o.interface_type) ||
            c.interface_instance() != GuidBytes(o.interface_instance) ||
            c.sub_channel_index() != o.sub_channel_index) {
          result = absl::FailedPreconditionError(absl::StrCat(
              "device configuration: the saved VM had another device at ",
              "VMBus relid ", relid, " than ", Describe(o, relid)));
          break;
        }
        restored[relid] = true;
        channel.offered_to_guest = c.offered_to_guest();
        Pending p{relid, channel.vsp, nullptr, &c};
        if (c.state() == hvstack::saved::VmbusChannelState::RESCINDED) {
          channel.state = ChannelState::kRescinded;
          relid_by_connection_.erase(channel.connection_id);
          continue;  // no VSP restore: the guest is releasing it
        }
        if (c.state() == hvstack::saved::VmbusChannelState::OPEN) {
          auto g = gpadls_.find(c.ring_gpadl());
          if (g == gpadls_.end() || g->second.gpadl.child_relid != relid ||
              g->second.in_use || g->second.gpadl.ranges.size() != 1) {
            result = bad("channel ", relid, ": ring GPADL 0x",
                         absl::Hex(c.ring_gpadl()));
            break;
          }
          const std::vector<uint64_t>& pfns = g->second.gpadl.ranges[0].pfns;
          const uint64_t split = c.downstream_offset();
          if (split < 2 || split > pfns.size() || pfns.size() - split < 2 ||
              c.target_vp() >= options_.vp_count ||
              c.user_data().size() != channel.user_data.size()) {
            result = bad("channel ", relid, ": ring split ", split, " of ",
                         pfns.size(), " pages, target vp ", c.target_vp());
            break;
          }
          std::span<const uint64_t> all(pfns);
          absl::StatusOr<RingPages> in_pages =
              RingPages::FromPfns(memory_, all.subspan(0, split));
          absl::StatusOr<RingPages> out_pages =
              RingPages::FromPfns(memory_, all.subspan(split));
          if (!in_pages.ok() || !out_pages.ok()) {
            result = !in_pages.ok() ? in_pages.status() : out_pages.status();
            break;
          }
          absl::StatusOr<RingReader> reader =
              RingReader::Restore(*std::move(in_pages), c.in_read_index(),
                                  c.in_published_index(), o.max_packet_size);
          absl::StatusOr<RingWriter> writer = RingWriter::Restore(
              *std::move(out_pages), c.out_write_index(), c.out_pending_set());
          if (!reader.ok() || !writer.ok()) {
            result = absl::InvalidArgumentError(absl::StrCat(
                "saved VMBus state: channel ", relid, ": ",
                (!reader.ok() ? reader.status() : writer.status()).message()));
            break;
          }
          ChannelSignal signal;
          signal.synic = &synic_;
          signal.sint = message_sint_;
          signal.win7_interrupt_page = win7_interrupt_page_;
          p.live = std::make_shared<LiveChannel>(
              relid, c.target_vp(), *std::move(reader), *std::move(writer),
              signal, memory_,
              // An explicit copy: clang 14 (the fuzz build) cannot capture a
              // structured binding.
              [this, relid = relid](uint32_t handle) {
                return MapGpadl(relid, handle);
              });
          if (c.broken()) p.live->MarkBroken();
          channel.open = p.live;
          channel.state = ChannelState::kOpen;
          channel.ring_gpadl = c.ring_gpadl();
          channel.downstream_offset = c.downstream_offset();
          std::memcpy(channel.user_data.data(), c.user_data().data(),
                      channel.user_data.size());
          g->second.in_use = true;
        }
        round.push_back(std::move(p));
      }
    }
    if (!result.ok() || round.empty()) break;
    for (Pending& p : round) {
      if (p.c->state() == hvstack::saved::VmbusChannelState::RESCINDED)
        continue;
      if (absl::Status s = p.vsp->RestoreState(p.live, p.c->vsp_state());
          !s.ok()) {
        result = absl::Status(
            s.code(), absl::StrCat(Describe(p.vsp->offer(), p.relid),
                                   " cannot restore its state: ", s.message()));
        break;
      }
    }
  }
  absl::MutexLock lock(&mu_);
  restoring_ = false;
  if (!result.ok()) return result;
  for (const auto& [relid, c] : saved) {
    if (!restored.contains(relid)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "device configuration: the saved VM had VMBus channel %d "
          "(interface %s, instance %s), which this VM does not offer",
          relid, SavedGuid(c->interface_type()),
          SavedGuid(c->interface_instance())));
    }
  }
  for (const auto& [relid, channel] : channels_) {
    if (!restored.contains(relid)) {
      return absl::FailedPreconditionError(
          absl::StrCat("device configuration: this VM offers ",
                       Describe(channel.vsp->offer(), relid),
                       ", which the saved VM did not have"));
    }
  }
  spdlog::info("vmbus: restored protocol {}.{}, {} channel(s), {} GPADL(s)",
               version_ >> 16, version_ & 0xFFFF, channels_.size(),
               gpadls_.size());
  return absl::OkStatus();
}

}  // namespace vmbus
