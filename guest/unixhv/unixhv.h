#ifndef HVSTACK_GUEST_UNIXHV_UNIXHV_H_
#define HVSTACK_GUEST_UNIXHV_UNIXHV_H_

#include <stdint.h>

#include "guest/unixhv/boot_params.h"
#include "guest/unixhv/io.h"
#include "guest/unixhv/power.h"
#include "guest/unixhv/serial.h"

// Every UnixHv program defines this. `boot_params` is the guest-physical (=
// virtual) address of the zero page. Returning powers the VM off.
extern "C" void unixhv_main(uint64_t boot_params);

#endif  // HVSTACK_GUEST_UNIXHV_UNIXHV_H_
