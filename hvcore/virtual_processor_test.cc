#include "hvcore/virtual_processor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hvcore/boot_layout.h"
#include "hvcore/kvm_system.h"
#include "hvcore/partition.h"

namespace hvcore {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 2 << 20;
constexpr uint64_t kCodeAddress = 0x100000;

// One partition with 2 MiB of RAM at GPA 0 and VP 0 in long mode at
// kCodeAddress, running hand-assembled bytes.
class VpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd < 0) {
      GTEST_SKIP() << "needs /dev/kvm (open read-write failed: "
                   << strerror(errno) << ")";
    } else {
      ::close(fd);
    }
    absl::StatusOr<std::unique_ptr<KvmSystem>> kvm = KvmSystem::Open();
    ASSERT_TRUE(kvm.ok()) << kvm.status();
    absl::StatusOr<std::unique_ptr<Partition>> partition =
        Partition::Create(**kvm, {.irqchip = false});
    ASSERT_TRUE(partition.ok()) << partition.status();
    partition_ = std::move(*partition);
    void* p = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    ram_ = static_cast<uint8_t*>(p);
    ASSERT_TRUE(partition_->MapUserMemory(0, kRamSize, ram_).ok());
    absl::StatusOr<std::unique_ptr<VirtualProcessor>> vp =
        partition_->CreateVp(0);
    ASSERT_TRUE(vp.ok()) << vp.status();
    vp_ = std::move(*vp);
  }

  void TearDown() override {
    vp_.reset();
    partition_.reset();
    if (ram_ != nullptr) ::munmap(ram_, kRamSize);
  }

  void Load(std::vector<uint8_t> code) {
    std::memcpy(ram_ + kCodeAddress, code.data(), code.size());
    ASSERT_TRUE(vp_->SetupLongMode(std::span<uint8_t>(ram_, kRamSize),
                                   kCodeAddress, kBootZeroPageAddress)
                    .ok());
  }

  Intercept RunOk() {
    absl::StatusOr<Intercept> i = vp_->Run();
    EXPECT_TRUE(i.ok()) << i.status();
    return i.ok() ? *i : Intercept(Unknown{0});
  }

  std::unique_ptr<Partition> partition_;
  std::unique_ptr<VirtualProcessor> vp_;
  uint8_t* ram_ = nullptr;
};

TEST_F(VpTest, LongModeStateFollowsTheBootProtocol) {
  Load({0xF4});  // hlt
  absl::StatusOr<kvm_sregs> sregs = vp_->GetSregs();
  ASSERT_TRUE(sregs.ok());
  EXPECT_EQ(sregs->cs.selector, kBootCodeSelector);
  EXPECT_EQ(sregs->ds.selector, kBootDataSelector);
  EXPECT_EQ(sregs->cs.l, 1);
  EXPECT_NE(sregs->efer & (1u << 10), 0u) << "EFER.LMA";
  EXPECT_EQ(sregs->cr3, kBootPml4Address);
  absl::StatusOr<kvm_regs> regs = vp_->GetRegs();
  ASSERT_TRUE(regs.ok());
  EXPECT_EQ(regs->rip, kCodeAddress);
  EXPECT_EQ(regs->rsi, kBootZeroPageAddress);
  EXPECT_EQ(regs->rflags, 0x2u);
  // GDT entry for __BOOT_CS is a 64-bit code segment.
  uint64_t cs_desc;
  std::memcpy(&cs_desc, ram_ + kBootGdtAddress + kBootCodeSelector, 8);
  EXPECT_EQ(cs_desc, 0x00AF9B000000FFFFull);
  EXPECT_TRUE(std::holds_alternative<Halt>(RunOk()));
}

TEST_F(VpTest, PortIoOutAndInRoundTrip) {
  Load({
      0x66, 0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
      0xB0, 0x41,              // mov al, 'A'
      0xEE,                    // out dx, al
      0xEC,                    // in al, dx
      0x66, 0xBA, 0x81, 0x00,  // mov dx, 0x81
      0xEE,                    // out dx, al   (echo what IN returned)
      0xF4,                    // hlt
  });
  Intercept i = RunOk();
  auto* out = std::get_if<PortIo>(&i);
  ASSERT_NE(out, nullptr) << DescribeIntercept(i);
  EXPECT_TRUE(out->is_write);
  EXPECT_EQ(out->port, 0x3F8);
  EXPECT_EQ(out->size, 1);
  EXPECT_EQ(out->value, 0x41u);

  i = RunOk();
  auto* in = std::get_if<PortIo>(&i);
  ASSERT_NE(in, nullptr) << DescribeIntercept(i);
  EXPECT_FALSE(in->is_write);
  EXPECT_EQ(in->port, 0x3F8);
  ASSERT_EQ(in->data.size(), 1u);
  in->data[0] = 0x5A;  // completes the IN

  i = RunOk();
  auto* echo = std::get_if<PortIo>(&i);
  ASSERT_NE(echo, nullptr) << DescribeIntercept(i);
  EXPECT_EQ(echo->port, 0x81);
  EXPECT_EQ(echo->value, 0x5Au);
  EXPECT_TRUE(std::holds_alternative<Halt>(RunOk()));
}

TEST_F(VpTest, MmioReadAndWrite) {
  Load({
      0x48, 0xA1, 0x00, 0x00, 0x00,
      0xD0, 0x00, 0x00, 0x00, 0x00,  // mov rax, [0xd0000000]
      0x48, 0xA3, 0x08, 0x00, 0x00,
      0xD0, 0x00, 0x00, 0x00, 0x00,  // mov [0xd0000008], rax
      0xF4,                          // hlt
  });
  Intercept i = RunOk();
  auto* rd = std::get_if<Mmio>(&i);
  ASSERT_NE(rd, nullptr) << DescribeIntercept(i);
  EXPECT_FALSE(rd->is_write);
  EXPECT_EQ(rd->gpa, 0xD0000000u);
  ASSERT_EQ(rd->len, 8);
  for (int b = 0; b < 8; ++b) rd->data[b] = static_cast<uint8_t>(0x10 + b);

  i = RunOk();
  auto* wr = std::get_if<Mmio>(&i);
  ASSERT_NE(wr, nullptr) << DescribeIntercept(i);
  EXPECT_TRUE(wr->is_write);
  EXPECT_EQ(wr->gpa, 0xD0000008u);
  ASSERT_EQ(wr->len, 8);
  for (int b = 0; b < 8; ++b) EXPECT_EQ(wr->data[b], 0x10 + b);
  EXPECT_TRUE(std::holds_alternative<Halt>(RunOk()));
}

TEST_F(VpTest, ExceptionWithEmptyIdtIsATripleFault) {
  Load({0x0F, 0x0B});  // ud2 -> #UD -> no IDT -> #GP -> #DF -> shutdown
  Intercept i = RunOk();
  // On a host whose emulator cannot even decode ud2 this is an emulation
  // failure; either way the VP must come back with a terminal intercept, never
  // hang.
  if (auto* s = std::get_if<Shutdown>(&i)) {
    EXPECT_THAT(DescribeIntercept(i),
                HasSubstr("triple fault (shutdown) at rip=0x"));
    (void)s;
  } else {
    ASSERT_TRUE(std::holds_alternative<EmulationFailure>(i))
        << DescribeIntercept(i);
  }
  std::cout << "ud2 with empty IDT: " << DescribeIntercept(i) << "\n";
}

TEST_F(VpTest, RequestExitInterruptsASpinningVp) {
  Load({0xF3, 0x90, 0xEB, 0xFC});  // 1: pause; jmp 1b
  std::thread kicker([this] {
    absl::SleepFor(absl::Milliseconds(100));
    vp_->RequestExit();
  });
  absl::Time start = absl::Now();
  Intercept i = RunOk();
  kicker.join();
  EXPECT_TRUE(std::holds_alternative<Interrupted>(i)) << DescribeIntercept(i);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The flag was consumed: the next Run enters the guest again (and is kicked
  // again).
  std::thread kicker2([this] {
    absl::SleepFor(absl::Milliseconds(50));
    vp_->RequestExit();
  });
  i = RunOk();
  kicker2.join();
  EXPECT_TRUE(std::holds_alternative<Interrupted>(i)) << DescribeIntercept(i);
}

TEST_F(VpTest, RequestExitBeforeRunReturnsImmediately) {
  Load({0xEB, 0xFE});  // jmp $
  vp_->RequestExit();
  EXPECT_TRUE(std::holds_alternative<Interrupted>(RunOk()));
}

TEST_F(VpTest, ReadPhysicalIsBoundsChecked) {
  std::vector<uint8_t> buf(16);
  EXPECT_TRUE(partition_->ReadPhysical(kRamSize - 16, buf).ok());
  EXPECT_EQ(partition_->ReadPhysical(kRamSize - 8, buf).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(partition_->ReadPhysical(~0ull - 4, buf).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(partition_->MapUserMemory(0x1000, 0x1000, ram_).ok())
      << "overlap";
  EXPECT_FALSE(partition_->MapUserMemory(0x400001, 0x1000, ram_).ok())
      << "unaligned";
}

TEST_F(VpTest, ReadLinearGoesThroughGuestPageTables) {
  Load({0x90, 0x90, 0xF4});
  std::vector<uint8_t> buf(3);
  ASSERT_TRUE(vp_->ReadLinear(kCodeAddress, buf).ok());
  EXPECT_EQ(buf, std::vector<uint8_t>({0x90, 0x90, 0xF4}));
  // Across a page boundary.
  ram_[0x100FFF] = 0xAA;
  ram_[0x101000] = 0xBB;
  std::vector<uint8_t> two(2);
  ASSERT_TRUE(vp_->ReadLinear(0x100FFF, two).ok());
  EXPECT_EQ(two, std::vector<uint8_t>({0xAA, 0xBB}));
  // Mapped by the identity map but not RAM: partial read reported.
  size_t got = 99;
  std::vector<uint8_t> tail(8);
  EXPECT_FALSE(vp_->ReadLinear(kRamSize - 4, tail, &got).ok());
  EXPECT_EQ(got, 4u);
  // Above 4 GiB: not mapped by the boot page tables.
  EXPECT_EQ(vp_->ReadLinear(5ull << 30, tail).code(),
            absl::StatusCode::kNotFound);
}

// popcnt is advertised by this host's KVM (it rewrites CPUID leaf 1 ECX) but
// rejected by its emulator; CompleteRejectedInstruction computes it exactly.
// On a host that runs it, no emulation failure happens and the results are
// the same.
TEST_F(VpTest, PopcntIsCompletedExactly) {
  Load({
      0x48, 0xBF, 0xFF, 0x00, 0xF0, 0x0F, 0x00, 0x00, 0x00, 0x80,  // mov rdi
      0xF3, 0x48, 0x0F, 0xB8, 0xC7,  // popcnt rax, rdi
      0xE7, 0x80,                    // out 0x80, eax
      0x0F, 0x94, 0xC0,              // setz al
      0xE6, 0x80,                    // out 0x80, al
      0x31, 0xFF,                    // xor edi, edi
      0xF3, 0x0F, 0xB8, 0xCF,        // popcnt ecx, edi
      0x0F, 0x94, 0xC0,              // setz al
      0xE6, 0x80,                    // out 0x80, al
      0x89, 0xC8,                    // mov eax, ecx
      0xE7, 0x80,                    // out 0x80, eax
      0xF4,                          // hlt
  });
  std::vector<uint32_t> outs;
  int completed = 0;
  for (int i = 0; i < 20; ++i) {
    Intercept in = RunOk();
    if (auto* ef = std::get_if<EmulationFailure>(&in)) {
      absl::StatusOr<bool> done = vp_->CompleteRejectedInstruction(*ef);
      ASSERT_TRUE(done.ok()) << done.status();
      ASSERT_TRUE(*done) << DescribeIntercept(in);
      ++completed;
      continue;
    }
    if (auto* io = std::get_if<PortIo>(&in)) {
      outs.push_back(io->value);
      continue;
    }
    EXPECT_TRUE(std::holds_alternative<Halt>(in)) << DescribeIntercept(in);
    break;
  }
  std::cout << "popcnt completions: " << completed << "\n";
  ASSERT_EQ(outs.size(), 4u);
  EXPECT_EQ(outs[0], 8u + 8u + 1u) << "popcount of 0x800000000FF000FF... ";
  EXPECT_EQ(outs[1] & 0xFF, 0u) << "ZF clear for a non-zero source";
  EXPECT_EQ(outs[2] & 0xFF, 1u) << "ZF set for a zero source";
  EXPECT_EQ(outs[3], 0u);
}

TEST_F(VpTest, ClacAndStacAreCompletedExactly) {
  Load({
      0x0F, 0x01, 0xCB,  // stac
      0x9C,              // pushfq  (RSP set below)
      0x58,              // pop rax
      0xE7, 0x80,        // out 0x80, eax
      0x0F, 0x01, 0xCA,  // clac
      0x9C, 0x58,        // pushfq; pop rax
      0xE7, 0x80,        // out 0x80, eax
      0xF4,              // hlt
  });
  absl::StatusOr<kvm_regs> regs = vp_->GetRegs();
  ASSERT_TRUE(regs.ok());
  regs->rsp = 0x80000;
  ASSERT_TRUE(vp_->SetRegs(*regs).ok());
  std::vector<uint32_t> outs;
  for (int i = 0; i < 20; ++i) {
    Intercept in = RunOk();
    if (auto* ef = std::get_if<EmulationFailure>(&in)) {
      absl::StatusOr<bool> done = vp_->CompleteRejectedInstruction(*ef);
      ASSERT_TRUE(done.ok()) << done.status();
      ASSERT_TRUE(*done) << DescribeIntercept(in);
      continue;
    }
    if (auto* io = std::get_if<PortIo>(&in)) {
      outs.push_back(io->value);
      continue;
    }
    EXPECT_TRUE(std::holds_alternative<Halt>(in)) << DescribeIntercept(in);
    break;
  }
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_NE(outs[0] & (1u << 18), 0u) << "AC set by stac";
  EXPECT_EQ(outs[1] & (1u << 18), 0u) << "AC cleared by clac";
}

TEST_F(VpTest, FwaitWithoutPendingExceptionsIsCompleted) {
  Load({
      0xDB, 0xE3,  // fninit
      0x9B,        // fwait
      0xB0, 0x5A,  // mov al, 0x5a
      0xE6, 0x80,  // out 0x80, al
      0xF4,        // hlt
  });
  std::vector<uint32_t> outs;
  for (int i = 0; i < 20; ++i) {
    Intercept in = RunOk();
    if (auto* ef = std::get_if<EmulationFailure>(&in)) {
      absl::StatusOr<bool> done = vp_->CompleteRejectedInstruction(*ef);
      ASSERT_TRUE(done.ok()) << done.status();
      ASSERT_TRUE(*done) << DescribeIntercept(in);
      continue;
    }
    if (auto* io = std::get_if<PortIo>(&in)) {
      outs.push_back(io->value);
      continue;
    }
    EXPECT_TRUE(std::holds_alternative<Halt>(in)) << DescribeIntercept(in);
    break;
  }
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0], 0x5Au);
}

TEST(DescribeInterceptTest, EmulationFailureListsBytes) {
  EXPECT_EQ(
      DescribeIntercept(EmulationFailure{0x100123, {0x0F, 0xC7, 0x0E}, "kvm"}),
      "emulation failure at rip=0x100123: bytes 0f c7 0e (from kvm)");
  EXPECT_EQ(DescribeIntercept(Shutdown{0x1000}),
            "triple fault (shutdown) at rip=0x1000");
}

}  // namespace
}  // namespace hvcore
