#ifndef HVSTACK_VID_IO_HANDLER_H_
#define HVSTACK_VID_IO_HANDLER_H_

#include <cstdint>
#include <span>

namespace vid {

// A device's side of port I/O. vid calls it from VP threads, possibly several
// at once; the device does its own locking. `port` is absolute; `size` is 1, 2
// or 4 bytes.
class PortIoHandler {
 public:
  virtual ~PortIoHandler() = default;
  virtual uint32_t PortRead(uint16_t port, uint8_t size) = 0;
  virtual void PortWrite(uint16_t port, uint8_t size, uint32_t value) = 0;
};

// A device's side of MMIO. `data.size()` is 1, 2, 4 or 8 bytes.
class MmioHandler {
 public:
  virtual ~MmioHandler() = default;
  virtual void MmioRead(uint64_t gpa, std::span<uint8_t> data) = 0;
  virtual void MmioWrite(uint64_t gpa, std::span<const uint8_t> data) = 0;
};

}  // namespace vid

#endif  // HVSTACK_VID_IO_HANDLER_H_
