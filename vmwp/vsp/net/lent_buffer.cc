#include "vmwp/vsp/net/lent_buffer.h"

#include <algorithm>
#include <cstring>

namespace vsp::net {

LentBuffer::LentBuffer(vmbus::MappedGpadl mapped, uint16_t id)
    : handle_(mapped.handle),
      id_(id),
      // The pages are all that is reachable, whatever the range claimed.
      size_(static_cast<uint32_t>(std::min<uint64_t>(
          mapped.size, uint64_t{mapped.pages.size()} * vmbus::kPageSize))),
      pages_(std::move(mapped.pages)) {}

template <typename Fn>
void LentBuffer::ForEachPage(uint32_t offset, uint32_t len, Fn fn) {
  uint32_t done = 0;
  while (done < len) {
    const uint32_t page = offset / vmbus::kPageSize;
    const uint32_t in_page = offset % vmbus::kPageSize;
    const uint32_t n =
        std::min<uint32_t>(len - done, vmbus::kPageSize - in_page);
    fn(pages_[page] + in_page, done, n);
    done += n;
    offset += n;
  }
}

bool LentBuffer::Write(uint32_t offset,
                       std::initializer_list<std::span<const uint8_t>> pieces) {
  uint64_t total = 0;
  for (const auto& p : pieces) total += p.size();
  if (offset > size_ || total > size_ - offset) return false;
  absl::MutexLock lock(&mu_);
  if (revoked_) return false;
  for (const auto& p : pieces) {
    const uint8_t* src = p.data();
    ForEachPage(offset, static_cast<uint32_t>(p.size()),
                [src](uint8_t* dst, uint32_t at, uint32_t n) {
                  std::memcpy(dst, src + at, n);
                });
    offset += static_cast<uint32_t>(p.size());
  }
  return true;
}

bool LentBuffer::Read(uint32_t offset, uint8_t* dst, uint32_t len) {
  if (offset > size_ || len > size_ - offset) return false;
  absl::MutexLock lock(&mu_);
  if (revoked_) return false;
  ForEachPage(offset, len, [dst](uint8_t* src, uint32_t at, uint32_t n) {
    std::memcpy(dst + at, src, n);
  });
  return true;
}

void LentBuffer::Revoke() {
  absl::MutexLock lock(&mu_);
  revoked_ = true;
}

bool LentBuffer::revoked() const {
  absl::MutexLock lock(&mu_);
  return revoked_;
}

void LentBuffers::Add(std::shared_ptr<LentBuffer> buffer) {
  absl::MutexLock lock(&mu_);
  buffers_.push_back(std::move(buffer));
}

void LentBuffers::Remove(uint32_t handle) {
  absl::MutexLock lock(&mu_);
  std::erase_if(buffers_, [handle](const std::shared_ptr<LentBuffer>& b) {
    return b->handle() == handle;
  });
}

bool LentBuffers::Revoke(uint32_t handle) {
  std::vector<std::shared_ptr<LentBuffer>> found;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = buffers_.begin(); it != buffers_.end();) {
      if ((*it)->handle() == handle) {
        found.push_back(std::move(*it));
        it = buffers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& b : found) b->Revoke();
  return !found.empty();
}

}  // namespace vsp::net
