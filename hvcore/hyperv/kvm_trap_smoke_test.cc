// Checks, on the machine's real KVM, the mechanisms this package's design
// rests on, before vid wires it in (that integration brings the real tests):
//  1. the hypercall page's OUT exits to userspace; writing RAX/RDX back with
//     KVM_SET_REGS and leaving RIP alone resumes the guest after the OUT, with
//     our values, and the page returns to its caller;
//  2. KVM_X86_SET_MSR_FILTER over kMsrRangeBase..+kMsrRangeCount sends RDMSR
//     and WRMSR of synthetic MSRs to userspace, and msr.error = 1 is a #GP;
//  3. end to end through kvm_glue: a guest sets its OS id and hypercall page
//     by WRMSR, calls HvPostMessage through the page the library wrote, and
//     reads TIME_REF_COUNT.
// The library itself makes no KVM calls; only this test does, with raw
// ioctls, so it depends on nothing that hvcore/ or vid/ may change. Skipped
// without /dev/kvm.

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "hvcore/hyperv/fakes.h"
#include "hvcore/hyperv/hv_partition.h"
#include "hvcore/hyperv/hypercall_page.h"
#include "hvcore/hyperv/kvm_glue.h"
#include "hvcore/hyperv/tlfs.h"

namespace hvcore::hyperv {
namespace {

constexpr uint64_t kRamSize = 2 << 20;
constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000;
constexpr uint64_t kCode = 0x10000;
constexpr uint64_t kMsrCode = 0x11000;
constexpr uint64_t kPage = 0x20000;
constexpr uint64_t kStack = 0x80000;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class KvmTrapTest : public testing::Test {
 protected:
  void SetUp() override {
    kvm_ = Fd(open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (kvm_.get() < 0) GTEST_SKIP() << "no usable /dev/kvm";
    vm_ = Fd(ioctl(kvm_.get(), KVM_CREATE_VM, 0));
    ASSERT_GE(vm_.get(), 0);
    ASSERT_EQ(ioctl(vm_.get(), KVM_SET_TSS_ADDR, 0xFFFBD000ul), 0);
    ram_ = static_cast<uint8_t*>(mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(ram_, MAP_FAILED);
    kvm_userspace_memory_region region{
        .slot = 0,
        .flags = 0,
        .guest_phys_addr = 0,
        .memory_size = kRamSize,
        .userspace_addr = reinterpret_cast<uint64_t>(ram_)};
    ASSERT_EQ(ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &region), 0);
    vcpu_ = Fd(ioctl(vm_.get(), KVM_CREATE_VCPU, 0));
    ASSERT_GE(vcpu_.get(), 0);
    run_size_ = ioctl(kvm_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    run_ =
        static_cast<kvm_run*>(mmap(nullptr, run_size_, PROT_READ | PROT_WRITE,
                                   MAP_SHARED, vcpu_.get(), 0));
    ASSERT_NE(run_, MAP_FAILED);
    EnterLongMode();
  }
  void TearDown() override {
    // The VM goes before the memory it maps.
    if (run_ != nullptr && run_ != MAP_FAILED) munmap(run_, run_size_);
    vcpu_ = Fd();
    vm_ = Fd();
    if (ram_ != nullptr && ram_ != MAP_FAILED) munmap(ram_, kRamSize);
  }

  void Put64(uint64_t gpa, uint64_t v) { std::memcpy(ram_ + gpa, &v, 8); }

  // Identity-mapped first 2 MiB, flat 64-bit code and data, empty IDT (so a
  // #GP ends in a triple fault: KVM_EXIT_SHUTDOWN).
  void EnterLongMode() {
    Put64(kPml4, kPdpt | 3);
    Put64(kPdpt, kPd | 3);
    Put64(kPd, 0x83);  // 2 MiB page at 0
    kvm_sregs sregs;
    ASSERT_EQ(ioctl(vcpu_.get(), KVM_GET_SREGS, &sregs), 0);
    kvm_segment code{.base = 0,
                     .limit = 0xFFFFFFFF,
                     .selector = 0x10,
                     .type = 11,
                     .present = 1,
                     .dpl = 0,
                     .db = 0,
                     .s = 1,
                     .l = 1,
                     .g = 1};
    kvm_segment data = code;
    data.selector = 0x18;
    data.type = 3;
    data.l = 0;
    data.db = 1;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = kPml4;
    sregs.cr4 = 0x20;        // PAE
    sregs.cr0 = 0x80000033;  // PG NE ET MP PE
    sregs.efer = 0x500;      // LMA LME
    ASSERT_EQ(ioctl(vcpu_.get(), KVM_SET_SREGS, &sregs), 0);
  }

  void StartAt(uint64_t rip) {
    kvm_regs regs{};
    regs.rip = rip;
    regs.rsp = kStack;
    regs.rflags = 2;
    ASSERT_EQ(ioctl(vcpu_.get(), KVM_SET_REGS, &regs), 0);
  }
  uint32_t Run() {
    EXPECT_EQ(ioctl(vcpu_.get(), KVM_RUN, 0), 0);
    return run_->exit_reason;
  }
  kvm_regs Regs() {
    kvm_regs regs{};
    EXPECT_EQ(ioctl(vcpu_.get(), KVM_GET_REGS, &regs), 0);
    return regs;
  }

  Fd kvm_, vm_, vcpu_;
  uint8_t* ram_ = nullptr;
  kvm_run* run_ = nullptr;
  int run_size_ = 0;
};

TEST_F(KvmTrapTest, HypercallPageTrapsAndResumesAfterTheOut) {
  const auto page = BuildHypercallPage(kDefaultHypercallPort);
  std::memcpy(ram_ + kPage, page.data(), page.size());
  std::vector<uint8_t> code;
  auto mov_imm64 = [&](uint8_t rex, uint8_t op, uint64_t v) {
    code.push_back(rex);
    code.push_back(op);
    for (int i = 0; i < 8; ++i)
      code.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  mov_imm64(0x48, 0xB9, 0x0000'0000'0001'005Cull);  // rcx = control
  mov_imm64(0x48, 0xBA, 0x0000'0000'0003'0000ull);  // rdx = input GPA
  mov_imm64(0x49, 0xB8, 0x0000'0000'0003'1000ull);  // r8 = output GPA
  mov_imm64(0x48, 0xBB, 0xB0B0B0B0ull);             // rbx: must survive
  const uint64_t call_end = kCode + code.size() + 5;
  const int32_t rel = static_cast<int32_t>(kPage - call_end);
  code.push_back(0xE8);  // call kPage
  for (int i = 0; i < 4; ++i)
    code.push_back(static_cast<uint8_t>(rel >> (8 * i)));
  code.push_back(0xF4);  // hlt
  std::memcpy(ram_ + kCode, code.data(), code.size());
  StartAt(kCode);

  ASSERT_EQ(Run(), KVM_EXIT_IO);
  EXPECT_EQ(run_->io.direction, KVM_EXIT_IO_OUT);
  EXPECT_EQ(run_->io.port, kDefaultHypercallPort);
  EXPECT_EQ(run_->io.size, 4);
  kvm_regs regs = Regs();
  const HypercallTrapRegs at_exit{regs.rax, regs.rcx, regs.rdx, regs.r8};
  const HypercallArgs args = ArgsFromTrap(at_exit);
  EXPECT_EQ(args.control, 0x1005Cu);
  EXPECT_EQ(args.input, 0x30000u);
  EXPECT_EQ(args.output, 0x31000u);
  const uint64_t rip_at_exit = regs.rip;

  constexpr uint64_t kResult = 0x0000'0000'0000'0013;  // INSUFFICIENT_BUFFERS
  const HypercallTrapRegs done = CompleteTrap(at_exit, kResult);
  regs.rax = done.rax;
  regs.rdx = done.rdx;
  ASSERT_EQ(ioctl(vcpu_.get(), KVM_SET_REGS, &regs), 0);

  ASSERT_EQ(Run(), KVM_EXIT_HLT)
      << "rip at the OUT exit: " << std::hex << rip_at_exit;
  regs = Regs();
  EXPECT_EQ(regs.rip, call_end + 1);  // returned from the page, past hlt
  EXPECT_EQ(regs.rax, kResult);
  EXPECT_EQ(regs.rdx, 0x30000u);
  EXPECT_EQ(regs.rcx, 0x1005Cu);
  EXPECT_EQ(regs.r8, 0x31000u);
  EXPECT_EQ(regs.rbx, 0xB0B0B0B0u);
  EXPECT_EQ(regs.rsp, kStack);
}

TEST_F(KvmTrapTest, MsrFilterSendsSyntheticMsrsToUserspace) {
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
  if (ioctl(vm_.get(), KVM_ENABLE_CAP, &cap) != 0) {
    GTEST_SKIP() << "KVM_CAP_X86_USER_SPACE_MSR unavailable";
  }
  std::vector<uint8_t> deny(kMsrRangeCount / 8, 0);  // 0 = deny = exit
  kvm_msr_filter filter{};
  filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  filter.ranges[0] = {.flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
                      .nmsrs = kMsrRangeCount,
                      .base = kMsrRangeBase,
                      .bitmap = deny.data()};
  ASSERT_EQ(ioctl(vm_.get(), KVM_X86_SET_MSR_FILTER, &filter), 0);

  const uint8_t code[] = {
      0xB9, 0x02, 0x00, 0x00, 0x40,  // mov ecx, HV_X64_MSR_VP_INDEX
      0x0F, 0x32,                    // rdmsr
      0xF4,                          // hlt
      0xB9, 0x00, 0x00, 0x00, 0x40,  // mov ecx, HV_X64_MSR_GUEST_OS_ID
      0xB8, 0x44, 0x33, 0x22, 0x11,  // mov eax, 0x11223344
      0xBA, 0x00, 0x00, 0x00, 0x81,  // mov edx, 0x81000000
      0x0F, 0x30,                    // wrmsr
      0xF4,                          // hlt
      0xB9, 0xB0, 0x00, 0x00, 0x40,  // mov ecx, HV_X64_MSR_STIMER0_CONFIG
      0x0F, 0x32,                    // rdmsr -> we answer #GP
      0xF4,
  };
  std::memcpy(ram_ + kMsrCode, code, sizeof(code));
  StartAt(kMsrCode);

  ASSERT_EQ(Run(), KVM_EXIT_X86_RDMSR);
  EXPECT_EQ(run_->msr.index, kMsrVpIndex);
  EXPECT_EQ(run_->msr.reason, KVM_MSR_EXIT_REASON_FILTER);
  run_->msr.data = 0x0000'0007'0000'0005;
  run_->msr.error = 0;
  ASSERT_EQ(Run(), KVM_EXIT_HLT);
  kvm_regs regs = Regs();
  EXPECT_EQ(regs.rax, 5u);
  EXPECT_EQ(regs.rdx, 7u);

  ASSERT_EQ(Run(), KVM_EXIT_X86_WRMSR);
  EXPECT_EQ(run_->msr.index, kMsrGuestOsId);
  EXPECT_EQ(run_->msr.data, 0x8100'0000'1122'3344ull);
  run_->msr.error = 0;
  ASSERT_EQ(Run(), KVM_EXIT_HLT);

  ASSERT_EQ(Run(), KVM_EXIT_X86_RDMSR);
  EXPECT_EQ(run_->msr.index, 0x400000B0u);
  run_->msr.error = 1;  // #GP; the empty IDT makes it a triple fault
  EXPECT_EQ(Run(), KVM_EXIT_SHUTDOWN);
}

// GuestRam over the test VM's single RAM mapping.
class MappedRam final : public GuestRam {
 public:
  MappedRam(uint8_t* base, uint64_t size) : base_(base), size_(size) {}
  uint8_t* HostPointer(uint64_t gpa, uint64_t len) override {
    if (gpa > size_ || len > size_ - gpa) return nullptr;
    return base_ + gpa;
  }

 private:
  uint8_t* base_;
  uint64_t size_;
};

class CapturePort final : public MessagePortHandler {
 public:
  HvStatus OnMessage(uint32_t vp, uint32_t type,
                     std::span<const uint8_t> payload) override {
    ++calls;
    last_type = type;
    last_payload.assign(payload.begin(), payload.end());
    return kHvStatusSuccess;
  }
  int calls = 0;
  uint32_t last_type = 0;
  std::vector<uint8_t> last_payload;
};

TEST_F(KvmTrapTest, EndToEndThroughTheGlue) {
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = kvm::kUserSpaceMsrReasons;
  if (ioctl(vm_.get(), KVM_ENABLE_CAP, &cap) != 0) {
    GTEST_SKIP() << "KVM_CAP_X86_USER_SPACE_MSR unavailable";
  }
  std::unique_ptr<kvm::MsrFilter> filter = kvm::MakeMsrFilter();
  ASSERT_EQ(ioctl(vm_.get(), KVM_X86_SET_MSR_FILTER, &filter->filter), 0);

  MappedRam ram(ram_, kRamSize);
  FakeTsc tsc;
  RecordingInjector injector;
  HvPartitionConfig config;
  config.tsc_hz = 2'000'000'000;
  auto partition = HvPartition::Create(config, ram, tsc, injector);
  ASSERT_TRUE(partition.ok());
  HvPartition& p = **partition;
  auto port = std::make_shared<CapturePort>();
  ASSERT_TRUE(p.connections().RegisterMessagePort(4, port).ok());

  constexpr uint64_t kInput = 0x30000;
  HvPostMessageInput in{};
  in.connection_id = 4;
  in.message_type = 1;
  in.payload_size = 5;
  std::memcpy(in.payload, "hello", 5);
  std::memcpy(ram_ + kInput, &in, sizeof(in));

  std::vector<uint8_t> code = {
      0xB9, 0x00, 0x00, 0x00, 0x40,  // mov ecx, GUEST_OS_ID
      0xB8, 0x00, 0x00, 0x00, 0x00,  // mov eax, 0
      0xBA, 0x00, 0x00, 0x00, 0x81,  // mov edx, 0x81000000 (Linux)
      0x0F, 0x30,                    // wrmsr
      0xB9, 0x01, 0x00, 0x00, 0x40,  // mov ecx, HYPERCALL
      0xB8, 0x01, 0x00, 0x02, 0x00,  // mov eax, kPage | 1
      0x31, 0xD2,                    // xor edx, edx
      0x0F, 0x30,                    // wrmsr
      0xB9, 0x5C, 0x00, 0x00, 0x00,  // mov ecx, HvPostMessage
      0xBA, 0x00, 0x00, 0x03, 0x00,  // mov edx, kInput
      0x45, 0x31, 0xC0,              // xor r8d, r8d
  };
  const uint64_t call_end = kCode + code.size() + 5;
  const int32_t rel = static_cast<int32_t>(kPage - call_end);
  code.push_back(0xE8);  // call kPage
  for (int i = 0; i < 4; ++i) {
    code.push_back(static_cast<uint8_t>(rel >> (8 * i)));
  }
  const uint8_t rest[] = {
      0x48, 0x89, 0xC3,              // mov rbx, rax (the status)
      0xB9, 0x20, 0x00, 0x00, 0x40,  // mov ecx, TIME_REF_COUNT
      0x0F, 0x32,                    // rdmsr
      0xF4,                          // hlt
  };
  code.insert(code.end(), std::begin(rest), std::end(rest));
  std::memcpy(ram_ + kCode, code.data(), code.size());
  std::memset(ram_ + kPage, 0, kPageSize);  // no page until the guest asks
  tsc.tsc = 2'000'000'000ull * 5;           // 5 s into the partition
  StartAt(kCode);

  int msr_exits = 0, hypercalls = 0;
  for (int i = 0; i < 16; ++i) {
    const uint32_t reason = Run();
    if (reason == KVM_EXIT_HLT) break;
    if (kvm::CompleteMsrExit(p, 0, *run_)) {
      ++msr_exits;
      continue;
    }
    ASSERT_TRUE(kvm::IsHypercallTrap(p, *run_)) << "exit " << reason;
    kvm_regs regs = Regs();
    kvm_sregs sregs;
    ASSERT_EQ(ioctl(vcpu_.get(), KVM_GET_SREGS, &sregs), 0);
    const kvm::TrapCompletion done =
        kvm::CompleteHypercallTrap(p, 0, regs, sregs);
    ASSERT_FALSE(done.inject_ud);
    ASSERT_EQ(ioctl(vcpu_.get(), KVM_SET_REGS, &done.regs), 0);
    ++hypercalls;
  }
  ASSERT_EQ(run_->exit_reason, uint32_t{KVM_EXIT_HLT});
  EXPECT_EQ(msr_exits, 3);
  EXPECT_EQ(hypercalls, 1);
  EXPECT_EQ(port->calls, 1);
  EXPECT_EQ(port->last_type, 1u);
  EXPECT_EQ(std::string(port->last_payload.begin(), port->last_payload.end()),
            "hello");
  const kvm_regs regs = Regs();
  EXPECT_EQ(regs.rbx, 0u);  // HV_STATUS_SUCCESS
  // 5 s in 100 ns units, within the one tick the floored scale may lose.
  const uint64_t ref = (regs.rdx << 32) | (regs.rax & 0xFFFFFFFF);
  EXPECT_GE(ref + 1, 50'000'000u);
  EXPECT_LE(ref, 50'000'000u);
  EXPECT_EQ(p.ReadMsr(0, kMsrHypercall).value, kPage | 1);
}

}  // namespace
}  // namespace hvcore::hyperv
