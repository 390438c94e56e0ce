// libFuzzer target: a hostile guest's packets on a storvsp channel
// (vmwp/vsp/storage/storvsp.cc + vmwp/vmbus/gpa_direct.cc): initialization in
// any order, SRBs with arbitrary GPA-direct page lists, CDBs and lengths, over
// 64 pages of guest RAM and a 1 MiB in-memory disk.
//
// Input: a sequence of packets, each: [0] VMBus type selector (in-band or
// GPA-direct), [1] extension length / 8, then the extension bytes, then a
// 64-byte vstor_packet. A prefix may be a valid initialization (seeds).
// Checks: every reply is one 64-byte vstor_packet with COMPLETE_IO, sent
// as a completion with the request's transaction id; at most one reply per
// request; I/O stays inside the disk; nothing crashes or leaks.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "vmwp/vmbus/guest_pages.h"
#include "vmwp/vsp/storage/storvsp.h"

#define CHECK(cond) \
  if (!(cond)) __builtin_trap()

namespace {

using namespace vsp::storage;

constexpr uint64_t kDisk = 1 << 20;

// An in-memory disk that completes everything when kicked.
class MemoryBackend final : public BlockBackend {
 public:
  MemoryBackend() : bytes_(kDisk) {}
  uint64_t size_bytes() const override { return kDisk; }
  bool read_only() const override { return false; }
  bool can_unmap() const override { return true; }
  bool unmap_zeroes() const override { return true; }
  const std::string& name() const override { return name_; }
  void Read(std::span<const iovec> iov, uint64_t offset, IoDone done) override {
    uint64_t n = 0;
    for (const iovec& v : iov) {
      CHECK(offset + n + v.iov_len <= kDisk);
      std::memcpy(v.iov_base, bytes_.data() + offset + n, v.iov_len);
      n += v.iov_len;
    }
    queued_.push_back([d = std::move(done), n]() mutable { d(n); });
  }
  void Write(std::span<const iovec> iov, uint64_t offset, bool,
             IoDone done) override {
    uint64_t n = 0;
    for (const iovec& v : iov) {
      CHECK(offset + n + v.iov_len <= kDisk);
      std::memcpy(bytes_.data() + offset + n, v.iov_base, v.iov_len);
      n += v.iov_len;
    }
    queued_.push_back([d = std::move(done), n]() mutable { d(n); });
  }
  void Flush(IoDone done) override {
    queued_.push_back([d = std::move(done)]() mutable { d(0); });
  }
  void Unmap(uint64_t offset, uint64_t length, IoDone done) override {
    CHECK(offset + length <= kDisk);
    std::memset(bytes_.data() + offset, 0, length);
    queued_.push_back([d = std::move(done)]() mutable { d(0); });
  }
  void Kick() override {
    auto q = std::move(queued_);
    queued_.clear();
    for (auto& f : q) f();
  }
  absl::Status Start(std::function<absl::Status()>) override {
    return absl::OkStatus();
  }
  void Stop() override { Kick(); }

 private:
  std::string name_ = "memory";
  std::vector<uint8_t> bytes_;
  std::vector<absl::AnyInvocable<void()>> queued_;
};

class Endpoint final : public vmbus::ChannelEndpoint {
 public:
  explicit Endpoint(vmbus::GuestPages& memory) : memory_(memory) {}
  uint32_t relid() const override { return 1; }
  using vmbus::ChannelEndpoint::Send;
  absl::StatusOr<vmbus::WriteResult> Send(
      uint16_t type, uint16_t flags, uint64_t trans_id,
      std::span<const uint8_t> extension,
      std::span<const uint8_t> payload) override {
    CHECK(type == vmbus::kPacketCompletion);
    CHECK(extension.empty());
    CHECK(payload.size() == sizeof(VstorPacket));
    VstorPacket p;
    std::memcpy(&p, payload.data(), sizeof(p));
    CHECK(p.operation == kOpCompleteIo);
    // Now and then the guest's ring is full.
    const bool written = (++calls % 7) != 0;
    if (written) ++replies;
    last_trans_id = trans_id;
    return vmbus::WriteResult{.written = written};
  }
  // storvsp drains on the VP thread: the fuzzer hands it each packet.
  absl::StatusOr<bool> Drain(vmbus::Vsp&, uint32_t) override { return false; }
  vmbus::GuestPages& memory() override { return memory_; }
  absl::StatusOr<vmbus::MappedGpadl> MapGpadl(uint32_t handle) override {
    return absl::NotFoundError(absl::StrCat("no GPADL ", handle));
  }
  uint64_t calls = 0;
  uint64_t replies = 0;
  uint64_t last_trans_id = 0;

 private:
  vmbus::GuestPages& memory_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Every bad packet is logged (rate-limited per controller, and there is a
  // fresh controller per input): not what is being fuzzed.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmbus::FlatGuestPages memory(16);  // small transfers: more inputs per second
  std::vector<StorageController::Lun> luns(1);
  luns[0].backend = std::make_unique<MemoryBackend>();
  auto c = StorageController::Create(memory, {.max_queued_completions = 8},
                                     std::move(luns));
  CHECK(c.ok());
  auto endpoint = std::make_shared<Endpoint>(memory);
  vmbus::Vsp* vsp = (*c)->primary();
  CHECK(vsp->OnOpen(endpoint, {}).ok());
  size_t at = 0;
  uint64_t packets = 0;
  while (at + 2 <= size) {
    const uint8_t kind = data[at];
    const size_t ext = (data[at + 1] % 64) * 8;
    at += 2;
    if (size - at < ext) break;
    vmbus::Packet p;
    p.type = (kind & 1) ? vmbus::kPacketDataUsingGpaDirect
                        : vmbus::kPacketDataInband;
    if (kind & 0x80) p.type = kind & 0x0F;  // any type now and then
    p.trans_id = ++packets;
    p.data_offset = static_cast<uint32_t>(16 + ext);
    // Mostly whole vstor_packets; short ones now and then.
    const size_t want =
        (kind & 0x40) ? ((kind >> 1) & 0x1F) * 2 : sizeof(VstorPacket);
    const size_t body = std::min(want, size - at - ext);
    p.bytes.assign(16 + ext + body, 0);
    std::memcpy(p.bytes.data() + 16, data + at, ext + body);
    at += ext + body;
    vsp->OnPacket(*endpoint, p);
    if (packets % 4 == 0) vsp->OnSignal(*endpoint);
  }
  vsp->OnSignal(*endpoint);
  vsp->OnSignal(*endpoint);
  CHECK(endpoint->replies <= packets);  // at most one reply per request
  vsp->OnClose(1);
  (*c)->Stop();
  return 0;
}
