#include "vmwp/vsp/net/net_adapter.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmwp/vsp/net/nvsp_protocol.h"

namespace vsp::net {
namespace {

constexpr uint64_t kTapToken = 1;
constexpr uint64_t kWakeToken = 2;

}  // namespace

absl::StatusOr<std::unique_ptr<NetAdapter>> NetAdapter::Create(
    Config config, Options options) {
  if (config.mtu == 0) config.mtu = 1500;
  if (config.mtu < kMinMtu || config.mtu > kMaxMtu) {
    return absl::InvalidArgumentError(
        absl::StrFormat("network adapter %s: MTU %d is outside [%d, %d]",
                        config.name, config.mtu, kMinMtu, kMaxMtu));
  }
  if (!config.tap.valid() || ::fcntl(config.tap.get(), F_GETFD) < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("network adapter %s: TAP descriptor %d is not open",
                        config.name, config.tap.get()));
  }
  // The device thread never blocks on the TAP device.
  const int flags = ::fcntl(config.tap.get(), F_GETFL);
  if (flags < 0 ||
      ((flags & O_NONBLOCK) == 0 &&
       ::fcntl(config.tap.get(), F_SETFL, flags | O_NONBLOCK) < 0)) {
    return absl::ErrnoToStatus(
        errno, absl::StrFormat("network adapter %s: TAP descriptor %d",
                               config.name, config.tap.get()));
  }
  base::ScopedFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  base::ScopedFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) < 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl(eventfd)");
  }
  ev.data.u64 = kTapToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, config.tap.get(), &ev) < 0) {
    return absl::ErrnoToStatus(
        errno,
        absl::StrFormat("network adapter %s: epoll_ctl(TAP)", config.name));
  }
  return std::unique_ptr<NetAdapter>(
      new NetAdapter(std::move(config), std::move(options), std::move(epoll),
                     std::move(wake)));
}

NetAdapter::NetAdapter(Config config, Options options, base::ScopedFd epoll,
                       base::ScopedFd wake)
    : config_(std::move(config)),
      options_(std::move(options)),
      device_({.mac = config_.mac, .mtu = config_.mtu}),
      tap_(std::move(config_.tap), config_.vnet_header),
      epoll_(std::move(epoll)),
      wake_(std::move(wake)) {
  offer_.interface_type = NetworkClassId();
  offer_.interface_instance = config_.instance;
  // NVSP messages with up to MAX_PAGE_BUFFER_COUNT GPA-direct ranges are a
  // few hundred bytes; anything near this is hostile.
  offer_.max_packet_size = 16 * 1024;
  offer_.min_ring_data_bytes = 4096;
  offer_.max_ring_data_bytes = 16u << 20;  // Linux: 512 KiB each way
  offer_.drain_on_vp_thread = false;
  // The largest frame plus room: a full buffer means a frame too large.
  frame_.resize(NetvspSession::ReceiveSectionSize(config_.mtu) + 64 * 1024);
}

NetAdapter::~NetAdapter() { Stop(); }

void NetAdapter::Start() {
  if (options_.manual || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void NetAdapter::Stop() {
  if (stop_requested_.exchange(true)) return;
  if (!thread_.joinable()) {
    session_.reset();
    return;
  }
  Post({Event::Kind::kLink, nullptr, 0});
  Post({Event::Kind::kStop, nullptr, 0});
  thread_.join();
}

void NetAdapter::SetLink(bool up) {
  Post({Event::Kind::kLink, nullptr, up ? 1u : 0u});
}

void NetAdapter::Poll() {
  for (int i = 0; i < 64 && RunOnce(); ++i) {
  }
}

void NetAdapter::Post(Event event) {
  {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

// ------------------------------------------------------------------ Vsp

absl::Status NetAdapter::OnOpen(
    std::shared_ptr<vmbus::ChannelEndpoint> endpoint,
    std::span<const uint8_t> user_data) {
  Post({Event::Kind::kOpen, std::move(endpoint), 0});
  return absl::OkStatus();
}

void NetAdapter::OnPacket(vmbus::ChannelEndpoint& endpoint,
                          const vmbus::Packet& packet) {
  // Inside the device thread's own Drain: copied and handled after it
  // returns, outside the channel's locks.
  if (drained_count_ == drained_.size()) drained_.emplace_back();
  drained_[drained_count_++] = packet;
}

void NetAdapter::OnGuestSignal(vmbus::ChannelEndpoint& endpoint) {
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

void NetAdapter::OnClose(uint32_t relid) {
  Post({Event::Kind::kClose, nullptr, relid});
}

void NetAdapter::OnGpadlTeardown(uint32_t relid, uint32_t handle) {
  // Now, before the guest hears the pages are free; the session forgets
  // the buffer when it gets to the event.
  if (buffers_.Revoke(handle)) {
    Post({Event::Kind::kGpadlRevoked, nullptr, handle});
  }
}

// ---------------------------------------------------------- device thread

absl::Status NetAdapter::WriteFrame(
    std::span<const std::span<const uint8_t>> pieces) {
  return tap_.Write(pieces);
}

void NetAdapter::Loop() {
  if (options_.on_thread_start) {
    if (absl::Status s = options_.on_thread_start(); !s.ok()) {
      spdlog::error("netvsp {}: device thread not started: {}", config_.name,
                    s.ToString());
      return;
    }
  }
  spdlog::info("netvsp {}: device thread running (MTU {}, vnet header {})",
               config_.name, config_.mtu, config_.vnet_header);
  while (!stopped_) {
    if (RunOnce()) continue;
    if (stopped_) break;
    epoll_event events[4];
    const int n = ::epoll_wait(epoll_.get(), events, 4, -1);
    if (n < 0 && errno != EINTR) {
      spdlog::error("netvsp {}: epoll_wait: {}", config_.name, strerror(errno));
      break;
    }
  }
  session_.reset();
  endpoint_.reset();
}

bool NetAdapter::ProcessEvents() {
  uint64_t count;
  (void)!::read(wake_.get(), &count, sizeof(count));
  std::deque<Event> events;
  {
    absl::MutexLock lock(&mu_);
    events.swap(events_);
  }
  for (Event& e : events) {
    switch (e.kind) {
      case Event::Kind::kOpen:
        session_.reset();
        endpoint_ = std::move(e.endpoint);
        session_ = std::make_unique<NetvspSession>(
            endpoint_, device_, static_cast<FrameSink&>(*this), counters_,
            buffers_, config_.name, options_.limits);
        break;
      case Event::Kind::kClose:
        session_.reset();
        endpoint_.reset();
        counters_.guest_ready.store(false, std::memory_order_relaxed);
        break;
      case Event::Kind::kGpadlRevoked:
        if (session_) session_->OnGpadlRevoked(e.value);
        break;
      case Event::Kind::kLink:
        if (session_) {
          session_->SetLink(e.value != 0);
        } else {
          device_.set_link_up(e.value != 0);
          counters_.link_up.store(e.value != 0, std::memory_order_relaxed);
        }
        spdlog::info("netvsp {}: link {}", config_.name,
                     e.value ? "up" : "down");
        break;
      case Event::Kind::kStop:
        stopped_ = true;
        return false;
    }
  }
  return true;
}

bool NetAdapter::DrainGuest() {
  if (!session_ || session_->dead()) return false;
  session_->Flush();
  if (!session_->CanDrain()) return false;
  drained_count_ = 0;
  absl::StatusOr<bool> more = endpoint_->Drain(*this, kDrainBudget);
  for (size_t i = 0; i < drained_count_; ++i) {
    session_->HandlePacket(drained_[i]);
  }
  drained_count_ = 0;
  if (!more.ok()) {
    spdlog::warn("netvsp {}: the guest's ring is broken: {}", config_.name,
                 more.status().ToString());
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    session_.reset();  // nothing more can be read or sent on this channel
    return false;
  }
  session_->Flush();
  return *more && session_->CanDrain();
}

bool NetAdapter::ReadTap() {
  const bool deliver = session_ && session_->Ready();
  if (deliver && !session_->CanReceive()) return false;
  bool more = false;
  for (uint32_t i = 0; i < kReadBudget; ++i) {
    if (deliver && !session_->CanReceive()) break;
    absl::StatusOr<size_t> n = tap_.Read(frame_);
    if (!n.ok()) {
      counters_.Count(Drop::kToGuestTapRead);
      continue;
    }
    if (*n == 0) break;
    const std::span<const uint8_t> frame(frame_.data(), *n);
    if (deliver) {
      session_->DeliverFrame(frame);
    } else {
      // Nobody listens (no channel, RNDIS not up, filter 0): a NIC that is
      // down drops what arrives.
      counters_.Count(Drop::kToGuestNotReady);
    }
    if (i + 1 == kReadBudget) more = true;
  }
  if (deliver) session_->FlushReceive();
  return more;
}

void NetAdapter::UpdateTapInterest() {
  const bool want = !session_ || !session_->Ready() || session_->CanReceive();
  if (want == tap_interest_ || options_.manual) return;
  epoll_event ev{};
  ev.events = want ? uint32_t{EPOLLIN} : 0u;
  ev.data.u64 = kTapToken;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, tap_.fd(), &ev) == 0) {
    tap_interest_ = want;
  }
}

bool NetAdapter::RunOnce() {
  if (!ProcessEvents()) return false;
  bool again = DrainGuest();
  again |= ReadTap();
  if (session_) session_->Flush();
  UpdateTapInterest();
  return again;
}

}  // namespace vsp::net
