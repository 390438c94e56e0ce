#include "vid/test_guest.h"

#include <elf.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hvcore/boot_layout.h"

namespace vid::testing {

absl::StatusOr<uint64_t> LoadElf(const std::string& path, GuestMemory& memory) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
  if (file.size() < sizeof(Elf64_Ehdr))
    return absl::InvalidArgumentError("short ELF");
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
      eh.e_type != ET_EXEC || eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an ELF64 x86-64 executable"));
  }
  for (int i = 0; i < eh.e_phnum; ++i) {
    uint64_t off = eh.e_phoff + static_cast<uint64_t>(i) * sizeof(Elf64_Phdr);
    if (off + sizeof(Elf64_Phdr) > file.size())
      return absl::InvalidArgumentError("bad phdr");
    Elf64_Phdr ph;
    std::memcpy(&ph, file.data() + off, sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz || ph.p_offset > file.size() ||
        ph.p_filesz > file.size() - ph.p_offset) {
      return absl::InvalidArgumentError("bad PT_LOAD");
    }
    if (absl::Status s = memory.Fill(ph.p_paddr, ph.p_memsz, 0); !s.ok())
      return s;
    if (absl::Status s = memory.Write(
            ph.p_paddr,
            std::span<const uint8_t>(file.data() + ph.p_offset, ph.p_filesz));
        !s.ok()) {
      return s;
    }
  }
  return eh.e_entry;
}

absl::Status WriteZeroPage(GuestMemory& memory, const std::string& cmdline) {
  uint64_t zp = hvcore::kBootZeroPageAddress;
  if (absl::Status s = memory.Fill(zp, hvcore::kBootZeroPageSize, 0); !s.ok())
    return s;
  std::string line = cmdline + '\0';
  if (absl::Status s = memory.Write(
          kTestCmdlineAddress,
          std::span<const uint8_t>(
              reinterpret_cast<const uint8_t*>(line.data()), line.size()));
      !s.ok()) {
    return s;
  }
  // Offsets from Linux's boot protocol: hdr.cmd_line_ptr (0x228),
  // ext_cmd_line_ptr (0x0C8), hdr.cmdline_size (0x238).
  if (absl::Status s =
          memory.WriteObject<uint32_t>(zp + 0x228, kTestCmdlineAddress);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = memory.WriteObject<uint32_t>(zp + 0x0C8, 0); !s.ok())
    return s;
  return memory.WriteObject<uint32_t>(zp + 0x238, 2048);
}

std::string RunfilePath(const std::string& relative) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    std::string p = absl::StrCat(srcdir, "/hvstack/", relative);
    if (std::ifstream(p).good()) return p;
  }
  return relative;  // bazel test's cwd is the workspace's runfiles directory
}

uint32_t CaptureUart::PortRead(uint16_t port, uint8_t size) {
  absl::MutexLock lock(&mu_);
  switch (port & 7) {
    case 3:
      return lcr_;
    case 5:
      return 0x60;  // THR empty, transmitter idle
    default:
      return 0;
  }
}

void CaptureUart::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  absl::MutexLock lock(&mu_);
  switch (port & 7) {
    case 0:
      if (!(lcr_ & 0x80)) out_.push_back(static_cast<char>(value));
      break;
    case 3:
      lcr_ = static_cast<uint8_t>(value);
      break;
    default:
      break;
  }
}

std::string CaptureUart::output() const {
  absl::MutexLock lock(&mu_);
  return out_;
}

bool CaptureUart::WaitFor(const std::string& text,
                          absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto found = [this, &text]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return out_.find(text) != std::string::npos;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
}

void PowerOffPort::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  if (size == 2 && value == 0x3400) {
    partition_->RequestPowerOff("guest wrote S5 to PM1a control (0x604)");
  }
}

absl::StatusOr<TestVm> MakeTestVm(
    const std::string& elf, const std::string& cmdline, uint64_t memory_bytes,
    uint32_t vcpus, std::function<absl::Status(uint32_t)> on_vp_thread_start) {
  absl::StatusOr<std::unique_ptr<hvcore::KvmSystem>> kvm =
      hvcore::KvmSystem::Open();
  if (!kvm.ok()) return kvm.status();
  TestVm vm;
  absl::StatusOr<std::unique_ptr<Partition>> p =
      Partition::Create({.vcpus = vcpus,
                         .memory_bytes = memory_bytes,
                         .on_vp_thread_start = std::move(on_vp_thread_start)},
                        **kvm);
  if (!p.ok()) return p.status();
  vm.partition = std::move(*p);
  vm.power = std::make_unique<PowerOffPort>(vm.partition.get());
  Partition& part = *vm.partition;
  if (absl::Status s =
          part.io().RegisterPortIo("com1", 0x3F8, 8, vm.uart.get());
      !s.ok())
    return s;
  if (absl::Status s =
          part.io().RegisterPortIo("pm1a_cnt", 0x604, 2, vm.power.get());
      !s.ok()) {
    return s;
  }
  absl::StatusOr<uint64_t> entry = LoadElf(RunfilePath(elf), part.memory());
  if (!entry.ok()) return entry.status();
  if (absl::Status s = WriteZeroPage(part.memory(), cmdline); !s.ok()) return s;
  if (absl::Status s = part.PrepareBootVp(*entry, hvcore::kBootZeroPageAddress);
      !s.ok())
    return s;
  return vm;
}

}  // namespace vid::testing
