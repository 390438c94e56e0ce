#ifndef HVSTACK_VID_TEST_GUEST_H_
#define HVSTACK_VID_TEST_GUEST_H_

// Test-only helpers for running guest/ programs on a vid::Partition without
// vmwp: a minimal ELF loader, a hand-built zero page, a COM1 capture device and
// the ACPI power-off port.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vid/guest_memory.h"
#include "vid/io_handler.h"
#include "vid/partition.h"

namespace vid::testing {

// Where the test zero page points for the command line.
inline constexpr uint64_t kTestCmdlineAddress = 0x20000;

// Loads an ELF64 x86-64 executable's PT_LOAD segments at their physical
// addresses (bss zeroed). Returns the entry point.
absl::StatusOr<uint64_t> LoadElf(const std::string& path, GuestMemory& memory);

// Writes a zero page at hvcore::kBootZeroPageAddress holding `cmdline` (stored
// at kTestCmdlineAddress).
absl::Status WriteZeroPage(GuestMemory& memory, const std::string& cmdline);

// Finds a data dependency (e.g. "guest/hello.elf") in the test's runfiles.
std::string RunfilePath(const std::string& relative);

// A 16550 stand-in: THR writes (DLAB=0) are collected, LSR always reads
// "transmitter empty".
class CaptureUart : public PortIoHandler {
 public:
  uint32_t PortRead(uint16_t port, uint8_t size) override;
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;
  std::string output() const;
  // Blocks until `text` has appeared or `timeout` passed; returns whether it
  // appeared.
  bool WaitFor(const std::string& text, absl::Duration timeout) const;

 private:
  mutable absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0;
};

// ACPI PM1a control at 0x604: a 16-bit write of 0x3400 (S5 | SLP_EN) powers the
// partition off.
class PowerOffPort : public PortIoHandler {
 public:
  explicit PowerOffPort(Partition* partition) : partition_(partition) {}
  uint32_t PortRead(uint16_t port, uint8_t size) override { return 0; }
  void PortWrite(uint16_t port, uint8_t size, uint32_t value) override;

 private:
  Partition* partition_;
};

// Creates a partition with COM1 capture and the power-off port, loads `elf`
// (runfiles-relative), writes a zero page with `cmdline` and prepares VP 0. The
// devices must outlive the partition.
struct TestVm {
  std::unique_ptr<CaptureUart> uart = std::make_unique<CaptureUart>();
  std::unique_ptr<PowerOffPort> power;
  std::unique_ptr<Partition> partition;
};
absl::StatusOr<TestVm> MakeTestVm(
    const std::string& elf, const std::string& cmdline,
    uint64_t memory_bytes = 16 << 20, uint32_t vcpus = 1,
    std::function<absl::Status(uint32_t)> on_vp_thread_start = nullptr);

}  // namespace vid::testing

#endif  // HVSTACK_VID_TEST_GUEST_H_
