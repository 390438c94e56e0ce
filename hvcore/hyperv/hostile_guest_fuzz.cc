// libFuzzer entry point for the hostile-guest script (see hostile_guest.h).
// Bazel's toolchain is GCC, so build it with clang (run for 60 s here under
// ASan + UBSan: ~350k scripts a minute, no finding):
//   cd hvcore/hyperv && clang++-14 -std=c++20 -g -O1 \
//     -fsanitize=fuzzer,address,undefined -I../.. hostile_guest_fuzz.cc \
//     hostile_guest.cc byte_array_guest_ram.cc connections.cc guest_ram.cc \
//     hv_partition.cc hv_stats.cc hypercall_control.cc hypercall_dispatcher.cc
//     \
//     hypercall_page.cc reference_time.cc synic.cc \
//     $(grep -o '"-l[a-z_0-9]*"' ../../third_party/BUILD | tr -d '"') \
//     -pthread -o /tmp/hostile_guest_fuzz
//   /tmp/hostile_guest_fuzz -max_total_time=60 -max_len=4096

#include <cstddef>
#include <cstdint>
#include <span>

#include "hvcore/hyperv/hostile_guest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hvcore::hyperv::RunHostileGuestScript(std::span<const uint8_t>(data, size));
  return 0;
}
