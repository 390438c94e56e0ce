#include "vmwp/vsp/storage/storvsp.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmwp/vmbus/gpa_direct.h"
#include "vmwp/vmbus/ring_layout.h"
#include "vmwp/vsp/storage/iovecs.h"
#include "vmwp/vsp/storage/saved_state.pb.h"

namespace vsp::storage {

// One SRB whose I/O is in a backend: what its completion needs. Taken from
// its channel's pool by the drain and given back when the completion is
// sent, so that an SRB allocates nothing once the pool has grown (the
// callback the backend gets holds only this pointer, inside
// absl::AnyInvocable's own storage).
struct StorageController::SrbIo {
  Channel* channel = nullptr;
  uint64_t generation = 0;
  uint64_t trans_id = 0;
  VstorPacket request{};
  DiskIo::Kind kind = DiskIo::Kind::kRead;
  uint32_t transfer = 0;
  Sense error;
  const std::string* name = nullptr;
  // The guest buffer (valid until the backend calls back); keeps its
  // capacity while pooled.
  std::vector<iovec> iov;
  SrbIo* next = nullptr;  // in a free list
};

// One VMBus channel of the controller: its send side, the completions that
// wait for room in the guest's ring, and the backends its current drain has
// queued I/O on. OnPacket/OnSignal are serialized per channel by the server;
// completions arrive from backend threads.
class StorageController::Channel final : public vmbus::Vsp {
 public:
  Channel(StorageController& controller, uint16_t index)
      : controller_(controller) {
    offer_.interface_type = ScsiInterfaceType();
    offer_.interface_instance = controller.options_.instance;
    offer_.sub_channel_index = index;
    // A request is one vstor_packet; with a buffer, its PFN list comes
    // first (max_transfer_bytes / 4 KiB + 1 PFNs for Linux). Larger packets
    // break the channel (the ring reader refuses them).
    offer_.max_packet_size = 64 * 1024;
    offer_.min_ring_data_bytes = 4096;
    offer_.max_ring_data_bytes = 16u << 20;
  }

  const vmbus::VspOffer& offer() const override { return offer_; }

  absl::Status OnOpen(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                      std::span<const uint8_t> user_data) override {
    {
      absl::MutexLock lock(&mu_);
      endpoint_ = std::move(endpoint);
      generation_.fetch_add(1);
      pending_.clear();
      in_flight_.store(0);
    }
    if (offer_.sub_channel_index == 0) controller_.ResetInitialization();
    return absl::OkStatus();
  }

  void OnPacket(vmbus::ChannelEndpoint& endpoint,
                const vmbus::Packet& packet) override {
    controller_.OnPacket(*this, packet);
  }

  // End of a drain: hand the queued I/O to the backends (completions that
  // finish at once are sent from here), then retry waiting completions.
  void OnSignal(vmbus::ChannelEndpoint& endpoint) override {
    for (BlockBackend* b : kick_) b->Kick();
    kick_.clear();
    Flush();
  }

  void OnClose(uint32_t relid) override {
    absl::MutexLock lock(&mu_);
    endpoint_.reset();
    generation_.fetch_add(1);
    pending_.clear();
  }

  // Changes (under mu_) when the channel opens or closes; read without it
  // on every SRB.
  uint64_t generation() const { return generation_.load(); }

  // Save and restore (issue 14): storvsp_state.cc.
  absl::Status Quiesce(absl::Time deadline) override {
    return controller_.QuiesceChannel(*this, deadline);
  }
  absl::StatusOr<std::string> SaveState() override {
    return controller_.SaveChannel(*this);
  }
  absl::Status RestoreState(std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
                            std::string_view state) override {
    return controller_.RestoreChannel(*this, std::move(endpoint), state);
  }

  void NeedsKick(BlockBackend* b) {
    if (std::find(kick_.begin(), kick_.end(), b) == kick_.end()) {
      kick_.push_back(b);
    }
  }

  // Counts an SRB in flight; false when the channel has too many.
  bool Admit() {
    if (in_flight_.fetch_add(1) >= controller_.options_.max_in_flight) {
      in_flight_.fetch_sub(1);
      return false;
    }
    return true;
  }

  // The drain's scratch iovecs for the SRB it is parsing (drain only).
  std::vector<iovec>& scratch_iov() { return scratch_iov_; }

  // A pooled SrbIo for an admitted SRB (drain only). At most about
  // max_in_flight exist per channel (twice that across a reopen).
  SrbIo* TakeSrbIo() {
    if (free_ == nullptr) {
      absl::MutexLock lock(&mu_);
      free_ = std::exchange(returned_, nullptr);
    }
    if (free_ == nullptr) {
      srb_ios_.push_back(std::make_unique<SrbIo>());
      srb_ios_.back()->channel = this;
      return srb_ios_.back().get();
    }
    return std::exchange(free_, free_->next);
  }

  // Sends `reply` for `trans_id` if the channel is still the one the
  // request came on (same generation); queues it if the ring is full.
  // `done` (if any) goes back to the pool.
  void Complete(uint64_t generation, uint64_t trans_id,
                const VstorPacket& reply, bool admitted,
                SrbIo* done = nullptr) {
    absl::MutexLock lock(&mu_);
    if (done != nullptr) done->next = std::exchange(returned_, done);
    if (generation != generation_.load() || endpoint_ == nullptr) return;
    if (admitted && in_flight_.load() > 0) in_flight_.fetch_sub(1);
    if (pending_.empty() && TrySend(trans_id, reply)) return;
    if (pending_.size() >= controller_.options_.max_queued_completions) {
      controller_.Count(&StorageStats::dropped_completions);
      controller_.dropped_log_.Note([] {
        spdlog::warn(
            "storvsp: the guest does not read its completions; dropping one");
      });
      return;
    }
    pending_.emplace_back(trans_id, reply);
  }

  void Flush() {
    absl::MutexLock lock(&mu_);
    while (!pending_.empty() &&
           TrySend(pending_.front().first, pending_.front().second)) {
      pending_.pop_front();
    }
  }

 private:
  friend class StorageController;  // storvsp_state.cc
  bool TrySend(uint64_t trans_id, const VstorPacket& reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<vmbus::WriteResult> sent = endpoint_->Send(
        vmbus::kPacketCompletion, 0, trans_id,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&reply),
                                 sizeof(reply)));
    // A broken ring: the channel is dead, drop the completion.
    return !sent.ok() || sent->written;
  }

  StorageController& controller_;
  vmbus::VspOffer offer_;
  std::vector<BlockBackend*> kick_;  // drain thread only
  std::vector<iovec> scratch_iov_;   // drain thread only
  // The pool: every SrbIo ever made (drain thread only; freed with the
  // channel, after the backends stopped), the drain's free list, and the
  // ones completions gave back since it last looked.
  std::vector<std::unique_ptr<SrbIo>> srb_ios_;
  SrbIo* free_ = nullptr;

  absl::Mutex mu_;
  std::shared_ptr<vmbus::ChannelEndpoint> endpoint_ ABSL_GUARDED_BY(mu_);
  // Both written under mu_ (OnOpen/OnClose/Complete), read without it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint32_t> in_flight_{0};
  std::deque<std::pair<uint64_t, VstorPacket>> pending_ ABSL_GUARDED_BY(mu_);
  SrbIo* returned_ ABSL_GUARDED_BY(mu_) = nullptr;
};

absl::StatusOr<std::unique_ptr<StorageController>> StorageController::Create(
    vmbus::GuestPages& memory, Options options, std::vector<Lun> luns) {
  if (options.max_transfer_bytes < 4096 ||
      options.max_transfer_bytes % 4096 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "storvsp: max_transfer_bytes %d is not a multiple of 4096",
        options.max_transfer_bytes));
  }
  std::unique_ptr<StorageController> c(
      new StorageController(memory, std::move(options)));
  for (Lun& l : luns) {
    if (l.backend == nullptr) {
      return absl::InvalidArgumentError("storvsp: a LUN without a backend");
    }
    const std::string& name = l.backend->name();
    if (l.target >= 2 || l.lun >= 255) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "disk %s: SCSI target %d lun %d is outside what Linux's storvsc "
          "scans (targets 0-1, LUNs 0-254)",
          name, l.target, l.lun));
    }
    if (c->FindLun(l.target, l.lun) != nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "disk %s: SCSI target %d lun %d is used by another disk", name,
          l.target, l.lun));
    }
    DiskProperties p = l.properties;
    if (p.block_size != 512 && p.block_size != 4096) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "disk %s: logical block size %d (512 or 4096)", name, p.block_size));
    }
    if (l.backend->size_bytes() % p.block_size != 0 ||
        l.backend->size_bytes() == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "disk %s: size %d is not a positive multiple of the block size %d",
          name, l.backend->size_bytes(), p.block_size));
    }
    p.block_count = l.backend->size_bytes() / p.block_size;
    p.read_only = p.read_only || l.backend->read_only();
    p.can_unmap = l.backend->can_unmap() && !p.read_only;
    p.unmap_zeroes = l.backend->unmap_zeroes();
    p.max_transfer_bytes = c->options_.max_transfer_bytes;
    c->luns_.push_back(std::make_unique<LunState>(
        LunState{l.target, l.lun, std::move(l.backend), ScsiDisk(p)}));
  }
  // Room for every sub-channel up front: the vector never reallocates while
  // drains look at the primary.
  c->channels_.reserve(1 + c->SubChannelLimit());
  c->channels_.push_back(std::make_unique<Channel>(*c, 0));
  c->primary_ = c->channels_[0].get();
  return c;
}

StorageController::StorageController(vmbus::GuestPages& memory, Options options)
    : memory_(memory), options_(std::move(options)) {}

StorageController::~StorageController() { Stop(); }

vmbus::Vsp* StorageController::primary() { return primary_; }

absl::Status StorageController::Start(
    const std::function<absl::Status()>& on_thread_start) {
  for (auto& l : luns_) {
    if (absl::Status s = l->backend->Start(on_thread_start); !s.ok()) return s;
  }
  if (options_.add_channel && !control_.joinable()) {
    control_ = std::thread([this, on_thread_start] {
      if (on_thread_start) {
        if (absl::Status s = on_thread_start(); !s.ok()) {
          spdlog::error("storvsp: control thread not started: {}",
                        s.ToString());
          return;
        }
      }
      ControlLoop();
    });
  }
  return absl::OkStatus();
}

void StorageController::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (control_.joinable()) control_.join();
  for (auto& l : luns_) l->backend->Stop();
}

void StorageController::ControlLoop() {
  for (;;) {
    uint32_t index;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](StorageController* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
            return c->stopped_ ||
                   c->offered_sub_channels_ < c->wanted_sub_channels_;
          },
          this));
      if (stopped_) return;
      index = offered_sub_channels_ + 1;
      if (channels_.size() == channels_.capacity()) return;  // at the limit
      channels_.push_back(
          std::make_unique<Channel>(*this, static_cast<uint16_t>(index)));
    }
    absl::StatusOr<uint32_t> relid =
        options_.add_channel(channels_[index].get());
    absl::MutexLock lock(&mu_);
    if (!relid.ok()) {
      spdlog::warn("storvsp: cannot offer sub-channel {}: {}", index,
                   relid.status().ToString());
      wanted_sub_channels_ = offered_sub_channels_;
      channels_.pop_back();  // never offered: no one refers to it
      continue;
    }
    offered_sub_channels_ = index;
  }
}

uint32_t StorageController::SubChannelLimit() const {
  if (!options_.add_channel) return 0;
  return std::min(options_.max_sub_channels,
                  options_.vp_count > 0 ? options_.vp_count - 1 : 0);
}

namespace {
constexpr uint64_t StorageStats::*kStatFields[] = {
    &StorageStats::packets,
    &StorageStats::srbs,
    &StorageStats::bytes_read,
    &StorageStats::bytes_written,
    &StorageStats::flushes,
    &StorageStats::unmaps,
    &StorageStats::check_conditions,
    &StorageStats::invalid_requests,
    &StorageStats::io_errors,
    &StorageStats::bad_packets,
    &StorageStats::busy,
    &StorageStats::dropped_completions};
static_assert(sizeof(kStatFields) / sizeof(kStatFields[0]) * 8 ==
                  sizeof(StorageStats),
              "every StorageStats field is listed");
}  // namespace

StorageStats StorageController::stats() const {
  StorageStats out;
  for (uint64_t StorageStats::*field : kStatFields) {
    out.*field = std::atomic_ref<uint64_t>(stats_.*field)
                     .load(std::memory_order_relaxed);
  }
  return out;
}
bool StorageController::ready() const { return ready_.load(); }

void StorageController::SetState(InitState state) {
  state_ = state;
  ready_.store(state == InitState::kReady);
}
uint16_t StorageController::protocol_version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}
uint32_t StorageController::sub_channels() const {
  absl::MutexLock lock(&mu_);
  return offered_sub_channels_;
}

void StorageController::ResetInitialization() {
  absl::MutexLock lock(&mu_);
  SetState(InitState::kNone);
  version_ = 0;
}

void StorageController::Count(uint64_t StorageStats::*field, uint64_t n) {
  std::atomic_ref<uint64_t>(stats_.*field)
      .fetch_add(n, std::memory_order_relaxed);
}

void StorageController::NoteBadPacket(const absl::Status& why) {
  Count(&StorageStats::bad_packets);
  bad_packets_log_.Note(
      [&] { spdlog::warn("storvsp: {}", std::string(why.message())); },
      [&] { return std::string(why.message()); });
}

StorageController::LunState* StorageController::FindLun(uint8_t target,
                                                        uint8_t lun) {
  for (auto& l : luns_) {
    if (l->target == target && l->lun == lun) return l.get();
  }
  return nullptr;
}

bool StorageController::HasTarget(uint8_t target) const {
  for (const auto& l : luns_) {
    if (l->target == target) return true;
  }
  return false;
}

std::vector<uint8_t> StorageController::LunsOfTarget(uint8_t target) const {
  std::vector<uint8_t> out;
  for (const auto& l : luns_) {
    if (l->target == target) out.push_back(l->lun);
  }
  return out;
}

namespace {

VstorPacket ReplyTo(const VstorPacket& request, uint32_t status) {
  VstorPacket r = request;
  r.operation = kOpCompleteIo;
  r.flags = 0;
  r.status = status;
  return r;
}

}  // namespace

void StorageController::OnPacket(Channel& channel,
                                 const vmbus::Packet& packet) {
  Count(&StorageStats::packets);
  if (packet.type == vmbus::kPacketCompletion) return;  // nothing we asked
  if (packet.type != vmbus::kPacketDataInband &&
      packet.type != vmbus::kPacketDataUsingGpaDirect) {
    NoteBadPacket(absl::InvalidArgumentError(
        absl::StrFormat("packet of VMBus type %d ignored", packet.type)));
    return;
  }
  std::span<const uint8_t> data = packet.data();
  VstorPacket p{};
  std::memcpy(&p, data.data(), std::min(data.size(), sizeof(p)));
  if (data.size() < sizeof(p)) {
    // Not a vstor_packet (Linux always sends the whole 64 bytes).
    NoteBadPacket(absl::InvalidArgumentError(absl::StrFormat(
        "%d-byte packet (a vstor_packet has %d)", data.size(), sizeof(p))));
    channel.Complete(channel.generation(), packet.trans_id,
                     ReplyTo(p, kStatusInvalidParameter), false);
    return;
  }
  if (p.operation == kOpExecuteSrb) {
    HandleSrb(channel, packet, p);
  } else {
    HandleControl(channel, packet.trans_id, p);
  }
}

void StorageController::HandleControl(Channel& channel, uint64_t trans_id,
                                      VstorPacket& p) {
  const bool primary = &channel == primary_;
  uint32_t status = kStatusSuccess;
  VstorPacket reply = ReplyTo(p, kStatusSuccess);
  {
    absl::MutexLock lock(&mu_);
    switch (p.operation) {
      case kOpBeginInitialization:
        if (!primary) {
          status = kStatusInvalidDeviceState;
          break;
        }
        SetState(InitState::kBegun);
        version_ = 0;
        break;
      case kOpQueryProtocolVersion: {
        if (!primary || state_ == InitState::kNone) {
          status = kStatusInvalidDeviceState;
          break;
        }
        const uint16_t v = p.version.major_minor;
        if (v != kVersionWin10 && v != kVersionWin8_1 && v != kVersionWin8) {
          status = kStatusRevisionMismatch;  // the guest tries an older one
          break;
        }
        version_ = v;
        if (state_ == InitState::kBegun) SetState(InitState::kVersioned);
        break;
      }
      case kOpQueryProperties: {
        if (!primary || state_ < InitState::kVersioned) {
          status = kStatusInvalidDeviceState;
          break;
        }
        std::memset(reply.buffer, 0, sizeof(reply.buffer));
        const uint32_t subs = SubChannelLimit();
        reply.properties.max_channel_cnt = static_cast<uint16_t>(subs);
        reply.properties.flags = subs > 0 ? kChannelSupportsMultiChannel : 0;
        reply.properties.max_transfer_bytes = options_.max_transfer_bytes;
        break;
      }
      case kOpEndInitialization:
        if (!primary || state_ < InitState::kVersioned) {
          status = kStatusInvalidDeviceState;
          break;
        }
        SetState(InitState::kReady);
        break;
      case kOpCreateSubChannels:
        if (!primary || state_ != InitState::kReady) {
          status = kStatusInvalidDeviceState;
        }
        break;
      case kOpResetLun:
      case kOpResetAdapter:
      case kOpResetBus:
        // Every SRB is completed by its I/O; there is nothing to abort.
        if (state_ != InitState::kReady) status = kStatusInvalidDeviceState;
        break;
      default:
        status = kStatusNotSupported;
        break;
    }
  }
  if (status == kStatusSuccess && p.operation == kOpCreateSubChannels) {
    CreateSubChannels(channel, trans_id, p);
    return;
  }
  if (status != kStatusSuccess) {
    NoteBadPacket(absl::FailedPreconditionError(
        absl::StrFormat("%s (%d) refused with status 0x%x on %s channel",
                        VstorOperationName(p.operation), p.operation, status,
                        primary ? "the primary" : "a sub-")));
  }
  reply.status = status;
  channel.Complete(channel.generation(), trans_id, reply, false);
}

void StorageController::CreateSubChannels(Channel& channel, uint64_t trans_id,
                                          VstorPacket& p) {
  const uint32_t limit = SubChannelLimit();
  const uint32_t want = p.sub_channel_count;
  if (want == 0 || want > limit) {
    NoteBadPacket(absl::InvalidArgumentError(absl::StrFormat(
        "CREATE_SUB_CHANNELS for %d channels; at most %d", want, limit)));
    channel.Complete(channel.generation(), trans_id,
                     ReplyTo(p, kStatusInvalidParameter), false);
    return;
  }
  // Answer first (Linux waits for it, then opens each offer as it comes);
  // the control thread makes the offers. Sub-channels offered before (a
  // guest that set the controller up again) stay; only missing ones are
  // added.
  channel.Complete(channel.generation(), trans_id, ReplyTo(p, kStatusSuccess),
                   false);
  absl::MutexLock lock(&mu_);
  wanted_sub_channels_ = std::max(wanted_sub_channels_, want);
}

void StorageController::FailSrb(Channel& channel, uint64_t trans_id,
                                VstorPacket& p, uint8_t srb_status,
                                uint8_t scsi_status) {
  VstorPacket reply = ReplyTo(p, kStatusSuccess);
  reply.vm_srb.srb_status = srb_status;
  reply.vm_srb.scsi_status = scsi_status;
  reply.vm_srb.sense_info_length = 0;
  reply.vm_srb.data_transfer_length = 0;
  channel.Complete(channel.generation(), trans_id, reply, false);
}

namespace {

// Fills the completion of an SRB from the disk's answer.
void FillSrbReply(VstorPacket& reply, const ScsiReply& r, uint32_t moved) {
  VmscsiRequest& srb = reply.vm_srb;
  srb.scsi_status = r.status;
  if (r.status == kScsiCheckCondition) {
    srb.srb_status = kSrbStatusError | kSrbStatusAutosenseValid;
    std::array<uint8_t, kFixedSenseSize> sense = BuildFixedSense(r.sense);
    std::memset(srb.sense_data, 0, sizeof(srb.sense_data));
    std::memcpy(srb.sense_data, sense.data(), sense.size());
    srb.sense_info_length = static_cast<uint8_t>(sense.size());
    srb.data_transfer_length = 0;
  } else {
    srb.srb_status = kSrbStatusSuccess;
    srb.sense_info_length = 0;
    srb.data_transfer_length = moved;
  }
}

}  // namespace

void StorageController::ReplySrb(Channel& channel, uint64_t trans_id,
                                 VstorPacket& p, const ScsiReply& reply,
                                 std::span<const iovec> buffer) {
  const size_t moved = CopyToIovecs(reply.data, buffer);
  if (reply.status != kScsiGood) Count(&StorageStats::check_conditions);
  VstorPacket out = ReplyTo(p, kStatusSuccess);
  FillSrbReply(out, reply, static_cast<uint32_t>(moved));
  channel.Complete(channel.generation(), trans_id, out, false);
}

void StorageController::FinishSrb(SrbIo* io, int64_t result) {
  VstorPacket out = ReplyTo(io->request, kStatusSuccess);
  if (result == -EAGAIN || result == -EBUSY) {
    // The backend could not take the I/O now (the kernel refused the
    // submission): BUSY, as for too many SRBs in flight; the guest retries.
    Count(&StorageStats::busy);
    out.vm_srb.srb_status = kSrbStatusBusy;
    out.vm_srb.scsi_status = kScsiBusy;
    out.vm_srb.sense_info_length = 0;
    out.vm_srb.data_transfer_length = 0;
    io->channel->Complete(io->generation, io->trans_id, out, true, io);
    return;
  }
  ScsiReply r;
  if (result < 0) {
    r = CheckCondition(io->error);
    Count(&StorageStats::io_errors);
    io_errors_log_.Note([&] {
      spdlog::warn("storvsp: disk {}: I/O error: {}", *io->name,
                   strerror(static_cast<int>(-result)));
    });
  } else if (io->kind == DiskIo::Kind::kRead) {
    Count(&StorageStats::bytes_read, io->transfer);
  } else if (io->kind == DiskIo::Kind::kWrite) {
    Count(&StorageStats::bytes_written, io->transfer);
  }
  if (r.status != kScsiGood) Count(&StorageStats::check_conditions);
  FillSrbReply(out, r, result < 0 ? 0 : io->transfer);
  // Last use of io: Complete gives it back to the pool.
  io->channel->Complete(io->generation, io->trans_id, out, true, io);
}

void StorageController::HandleSrb(Channel& channel, const vmbus::Packet& packet,
                                  VstorPacket& p) {
  const uint64_t trans_id = packet.trans_id;
  Count(&StorageStats::srbs);
  if (!ready()) {
    {
      NoteBadPacket(absl::FailedPreconditionError(
          "EXECUTE_SRB before the guest finished initialization"));
      channel.Complete(channel.generation(), trans_id,
                       ReplyTo(p, kStatusInvalidDeviceState), false);
      return;
    }
  }
  VmscsiRequest& srb = p.vm_srb;
  auto invalid = [&](const std::string& why) {
    Count(&StorageStats::invalid_requests);
    NoteBadPacket(absl::InvalidArgumentError(why));
    FailSrb(channel, trans_id, p, kSrbStatusInvalidRequest);
  };
  if (srb.cdb_length == 0 || srb.cdb_length > kMaxCdbLength) {
    invalid(absl::StrFormat("SRB with a %d-byte CDB", srb.cdb_length));
    return;
  }
  if (srb.data_transfer_length > options_.max_transfer_bytes) {
    invalid(absl::StrFormat("SRB moving %d bytes; the maximum is %d",
                            srb.data_transfer_length,
                            options_.max_transfer_bytes));
    return;
  }
  // The data buffer, as iovecs in the drain's scratch vector (an SRB with
  // backend I/O takes them along).
  std::vector<iovec>& buffer = channel.scratch_iov();
  buffer.clear();
  if (packet.type == vmbus::kPacketDataUsingGpaDirect) {
    // Every page is checked against guest RAM here, once; the ranges may
    // name more than the SRB moves (never more than the largest transfer).
    absl::StatusOr<uint64_t> named = vmbus::GpaDirectIovecs(
        packet.header_extension(), memory_, options_.max_transfer_bytes,
        srb.data_transfer_length, buffer);
    if (!named.ok()) {
      invalid(std::string(named.status().message()));
      return;
    }
    if (*named < srb.data_transfer_length) {
      invalid(absl::StrFormat("SRB moving %d bytes with a %d-byte buffer",
                              srb.data_transfer_length, *named));
      return;
    }
  } else if (srb.data_transfer_length != 0) {
    invalid(
        absl::StrFormat("SRB moving %d bytes without a buffer (in-band packet)",
                        srb.data_transfer_length));
    return;
  }
  const uint32_t buffer_bytes = srb.data_transfer_length;
  const std::span<const uint8_t> cdb(srb.cdb, srb.cdb_length);

  // Addressing: path 0, a configured target; REPORT LUNS and INQUIRY of an
  // absent LUN are answered for the target. Linux's storvsc turns every
  // INQUIRY and MODE SENSE completion into success and believes the data
  // (storvsc_on_io_completion: a Hyper-V quirk), and it scans channels 0-7
  // and targets 0-1: an absent channel or target must still answer INQUIRY
  // with "no device here" (peripheral qualifier 3) and REPORT LUNS with an
  // empty list, or sd attaches a zero-sized disk at every address.
  if (srb.path_id != 0 || !HasTarget(srb.target_id)) {
    if (cdb[0] == kInquiry) {
      ReplySrb(channel, trans_id, p, NoLunInquiry(cdb, buffer_bytes), buffer);
    } else if (cdb[0] == kReportLuns) {
      ReplySrb(channel, trans_id, p, ReportLuns(cdb, buffer_bytes, {}), buffer);
    } else {
      FailSrb(channel, trans_id, p, kSrbStatusInvalidLun);
    }
    return;
  }
  if (cdb[0] == kReportLuns) {
    ReplySrb(channel, trans_id, p,
             ReportLuns(cdb, buffer_bytes, LunsOfTarget(srb.target_id)),
             buffer);
    return;
  }
  LunState* lun = FindLun(srb.target_id, srb.lun);
  if (lun == nullptr) {
    if (cdb[0] == kInquiry) {
      ReplySrb(channel, trans_id, p, NoLunInquiry(cdb, buffer_bytes), buffer);
    } else {
      FailSrb(channel, trans_id, p, kSrbStatusInvalidLun);
    }
    return;
  }

  // Parameter data (UNMAP's descriptors): copied out of guest memory once.
  std::vector<uint8_t> parameters(
      std::min<uint32_t>(ScsiDisk::ParameterBytes(cdb), buffer_bytes));
  CopyFromIovecs(buffer, parameters);
  ScsiAction action = lun->disk.Execute(cdb, buffer_bytes, parameters);
  if (ScsiReply* reply = std::get_if<ScsiReply>(&action)) {
    ReplySrb(channel, trans_id, p, *reply, buffer);
    return;
  }
  DiskIo& io = std::get<DiskIo>(action);
  if (!channel.Admit()) {
    Count(&StorageStats::busy);
    FailSrb(channel, trans_id, p, kSrbStatusBusy, kScsiBusy);
    return;
  }
  BlockBackend* backend = lun->backend.get();
  SrbIo* srb_io = channel.TakeSrbIo();
  srb_io->generation = channel.generation();
  srb_io->trans_id = trans_id;
  srb_io->request = p;
  srb_io->kind = io.kind;
  srb_io->transfer = io.transfer;
  srb_io->error = io.error_sense;
  srb_io->name = &backend->name();
  // The buffer goes with the SRB (the scratch vector gets the pooled one's
  // capacity back). It is cut at the SRB's length already; a command moving
  // less (a READ shorter than its SRB) gets a shorter list.
  std::swap(srb_io->iov, buffer);
  if (io.transfer < buffer_bytes) TruncateIovecs(srb_io->iov, io.transfer);
  const std::span<const iovec> data = srb_io->iov;
  IoDone done = [this, srb_io](int64_t result) { FinishSrb(srb_io, result); };
  switch (io.kind) {
    case DiskIo::Kind::kRead:
      backend->Read(data, io.offset, std::move(done));
      break;
    case DiskIo::Kind::kWrite:
      backend->Write(data, io.offset, io.fua, std::move(done));
      break;
    case DiskIo::Kind::kFlush:
      Count(&StorageStats::flushes);
      backend->Flush(std::move(done));
      break;
    case DiskIo::Kind::kUnmap: {
      Count(&StorageStats::unmaps);
      // One completion for all ranges: the last one to finish sends it.
      struct Join {
        size_t left;
        int64_t result = 0;
        absl::Mutex mu;
        IoDone finish;
      };
      auto join = std::make_shared<Join>();
      join->left = io.unmap.size();
      join->finish = std::move(done);
      for (const ByteRange& r : io.unmap) {
        backend->Unmap(r.offset, r.length, [join](int64_t result) {
          bool last;
          {
            absl::MutexLock lock(&join->mu);
            if (result < 0) join->result = result;
            last = --join->left == 0;
          }
          if (last) join->finish(join->result);
        });
      }
      break;
    }
  }
  channel.NeedsKick(backend);
}

// ---- Save and restore (issue 14) ----------------------------------------

namespace {
constexpr uint32_t kStorvspStateVersion = 1;

absl::Status BadState(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("saved storvsp state: ", why));
}
}  // namespace

absl::Status StorageController::QuiesceChannel(Channel& channel,
                                               absl::Time deadline) {
  // The VPs are held: no drain runs, so nothing new is admitted; what is in
  // a backend completes from its thread (sent, or queued if the ring is
  // full). Sub-channel offers in progress finish too.
  {
    absl::MutexLock lock(&channel.mu_);
    auto idle = [](Channel* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
      return c->in_flight_ == 0;
    };
    if (!channel.mu_.AwaitWithDeadline(absl::Condition(+idle, &channel),
                                       deadline)) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "storvsp: %d SRB(s) still in flight on channel %d",
          channel.in_flight_, channel.offer_.sub_channel_index));
    }
  }
  if (&channel != primary_) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto settled =
      [](StorageController* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
        return c->stopped_ || !c->control_.joinable() ||
               c->offered_sub_channels_ >= c->wanted_sub_channels_;
      };
  if (!mu_.AwaitWithDeadline(absl::Condition(+settled, this), deadline)) {
    return absl::DeadlineExceededError(
        "storvsp: sub-channel offers still in progress");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StorageController::SaveChannel(Channel& channel) {
  hvstack::saved::StorvspChannelState state;
  state.set_version(kStorvspStateVersion);
  {
    absl::MutexLock lock(&channel.mu_);
    if (channel.in_flight_ != 0) {
      return absl::FailedPreconditionError(
          "storvsp: SRBs in flight (not quiesced)");
    }
    for (const auto& [trans_id, packet] : channel.pending_) {
      auto* c = state.add_pending();
      c->set_trans_id(trans_id);
      c->set_packet(
          std::string(reinterpret_cast<const char*>(&packet), sizeof(packet)));
    }
  }
  if (&channel == primary_) {
    absl::MutexLock lock(&mu_);
    state.set_init_state(static_cast<uint32_t>(state_));
    state.set_protocol_version(version_);
    state.set_offered_sub_channels(offered_sub_channels_);
    state.set_wanted_sub_channels(wanted_sub_channels_);
  }
  return state.SerializeAsString();
}

absl::Status StorageController::RestoreChannel(
    Channel& channel, std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
    std::string_view bytes) {
  hvstack::saved::StorvspChannelState state;
  if (bytes.empty() && endpoint == nullptr) return absl::OkStatus();
  if (!state.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return BadState("not a serialized StorvspChannelState");
  if (state.version() == 0 || state.version() > kStorvspStateVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved storvsp state format version %d; this worker reads 1 to %d",
        state.version(), kStorvspStateVersion));
  }
  if (static_cast<uint32_t>(state.pending_size()) >
      options_.max_queued_completions) {
    return BadState(absl::StrFormat("%d queued completions (at most %d)",
                                    state.pending_size(),
                                    options_.max_queued_completions));
  }
  std::deque<std::pair<uint64_t, VstorPacket>> pending;
  for (const auto& c : state.pending()) {
    if (c.packet().size() != sizeof(VstorPacket))
      return BadState(
          absl::StrFormat("a completion of %d bytes", c.packet().size()));
    VstorPacket p;
    std::memcpy(&p, c.packet().data(), sizeof(p));
    pending.emplace_back(c.trans_id(), p);
  }
  const bool primary = &channel == primary_;
  if (!primary &&
      (state.init_state() != 0 || state.protocol_version() != 0 ||
       state.offered_sub_channels() != 0 || state.wanted_sub_channels() != 0)) {
    return BadState("controller state on a sub-channel");
  }
  if (primary) {
    if (state.init_state() > static_cast<uint32_t>(InitState::kReady))
      return BadState(absl::StrFormat("init state %d", state.init_state()));
    const uint32_t v = state.protocol_version();
    const bool versioned =
        state.init_state() >= static_cast<uint32_t>(InitState::kVersioned);
    if (versioned
            ? (v != kVersionWin10 && v != kVersionWin8_1 && v != kVersionWin8)
            : v != 0) {
      return BadState(absl::StrFormat("protocol version 0x%x at init state %d",
                                      v, state.init_state()));
    }
    const uint32_t limit = SubChannelLimit();
    if (state.offered_sub_channels() > limit ||
        state.wanted_sub_channels() > limit) {
      return BadState(absl::StrFormat(
          "%d sub-channels offered, %d asked for (this controller offers at "
          "most %d)",
          state.offered_sub_channels(), state.wanted_sub_channels(), limit));
    }
    {
      absl::MutexLock lock(&mu_);
      if (offered_sub_channels_ != 0)
        return absl::FailedPreconditionError("storvsp: restored twice");
      SetState(static_cast<InitState>(state.init_state()));
      version_ = static_cast<uint16_t>(v);
    }
    // The sub-channels, registered again (the server restores each in its
    // next round); offered before, so no new offer goes to the guest.
    for (uint32_t index = 1; index <= state.offered_sub_channels(); ++index) {
      {
        absl::MutexLock lock(&mu_);
        channels_.push_back(
            std::make_unique<Channel>(*this, static_cast<uint16_t>(index)));
      }
      absl::StatusOr<uint32_t> relid =
          options_.add_channel(channels_[index].get());
      if (!relid.ok()) {
        return absl::Status(relid.status().code(),
                            absl::StrFormat("storvsp: sub-channel %d: %s",
                                            index, relid.status().message()));
      }
      absl::MutexLock lock(&mu_);
      offered_sub_channels_ = index;
    }
    absl::MutexLock lock(&mu_);
    wanted_sub_channels_ =
        std::max(state.wanted_sub_channels(), state.offered_sub_channels());
  }
  absl::MutexLock lock(&channel.mu_);
  channel.endpoint_ = std::move(endpoint);
  ++channel.generation_;
  channel.in_flight_ = 0;
  channel.pending_ = std::move(pending);
  return absl::OkStatus();
}

}  // namespace vsp::storage
