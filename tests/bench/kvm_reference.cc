// The reference point for start latency: the least a VMM must do to run a
// guest. It creates a VM with the given RAM and one vCPU, runs a
// three-instruction real-mode guest to its first port write, writes the byte to
// stdout and exits. Deliberately raw: no libraries, no error recovery.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

[[noreturn]] void Fail(const char* what) {
  std::perror(what);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t memory_mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 64;
  const uint64_t memory_bytes = memory_mib << 20;

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) Fail("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) Fail("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) Fail("KVM_SET_TSS_ADDR");

  void* ram = mmap(nullptr, memory_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) Fail("mmap guest RAM");
  kvm_userspace_memory_region region = {};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = memory_bytes;
  region.userspace_addr = reinterpret_cast<uint64_t>(ram);
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
    Fail("KVM_SET_USER_MEMORY_REGION");

  // mov dx, 0x3f8; mov al, 'H'; out dx, al; hlt
  const uint8_t code[] = {0xba, 0xf8, 0x03, 0xb0, 'H', 0xee, 0xf4};
  std::memcpy(static_cast<uint8_t*>(ram) + 0x1000, code, sizeof(code));

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) Fail("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < 0) Fail("KVM_GET_VCPU_MMAP_SIZE");
  auto* run = static_cast<kvm_run*>(
      mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0));
  if (run == MAP_FAILED) Fail("mmap kvm_run");

  kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) Fail("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) Fail("KVM_SET_SREGS");
  kvm_regs regs = {};
  regs.rip = 0x1000;
  regs.rflags = 0x2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) Fail("KVM_SET_REGS");

  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) Fail("KVM_RUN");
    if (run->exit_reason == KVM_EXIT_IO &&
        run->io.direction == KVM_EXIT_IO_OUT) {
      const char byte = *(reinterpret_cast<char*>(run) + run->io.data_offset);
      if (write(1, &byte, 1) != 1) Fail("write");
      return 0;
    }
    std::fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
    return 1;
  }
}
