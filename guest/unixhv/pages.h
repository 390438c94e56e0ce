#ifndef HVSTACK_GUEST_UNIXHV_PAGES_H_
#define HVSTACK_GUEST_UNIXHV_PAGES_H_

#include <stddef.h>
#include <stdint.h>

// Page-aligned memory for what the hypervisor and the host share with the
// guest (hypercall page, SynIC pages, ring buffers): a bump allocator over a
// static pool in its own NOLOAD section, so start.S need not clear it (at
// ~0.6 us per emulated instruction, clearing 256 KiB would cost seconds).
namespace unixhv {

inline constexpr size_t kPageSize = 4096;
// Two netvsc adapters as hv_netvsc sets them up (rings, 128 KiB receive and
// 64 KiB send buffers each) take ~130 pages.
inline constexpr size_t kPoolPages = 256;

// `count` contiguous pages, or nullptr when the pool is used up. Pages are
// NOT cleared; ZeroPage clears one (the VMM hands out zeroed RAM, but a
// guest must not count on it).
void* AllocPages(size_t count);

// A second pool for data buffers (storage guests' transfers), linked only
// into guests that add data_pages.cc to their sources: growing the first
// pool to 512 pages made //guest:enlightened miss heartbeats on the VMBus
// 2.4 path (tests/interop OlderProtocol/2), cause not yet understood.
inline constexpr size_t kDataPoolPages = 32;
void* AllocDataPages(size_t count);
void ZeroPage(void* page);

}  // namespace unixhv

#endif  // HVSTACK_GUEST_UNIXHV_PAGES_H_
