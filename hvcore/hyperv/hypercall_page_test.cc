#include "hvcore/hyperv/hypercall_page.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstring>

#include "gtest/gtest.h"

namespace hvcore::hyperv {
namespace {

TEST(HypercallPageTest, CodeThenInt3) {
  const auto page = BuildHypercallPage(0x4856);
  const uint8_t code[] = {0x48, 0x89, 0xD0, 0x66, 0xBA, 0x56, 0x48, 0xEF, 0xC3};
  EXPECT_EQ(std::memcmp(page.data(), code, sizeof(code)), 0);
  for (size_t i = sizeof(code); i < page.size(); ++i) {
    ASSERT_EQ(page[i], 0xCC) << i;
  }
}

TEST(HypercallPageTest, TrapRegisterConvention) {
  const HypercallTrapRegs at_exit{
      .rax = 0x1000, .rcx = 0x5C, .rdx = 0xABCD0000'00004856, .r8 = 0x2000};
  const HypercallArgs args = ArgsFromTrap(at_exit);
  EXPECT_EQ(args.control, 0x5Cu);
  EXPECT_EQ(args.input, 0x1000u);
  EXPECT_EQ(args.output, 0x2000u);
  const HypercallTrapRegs after = CompleteTrap(at_exit, 0x12);
  EXPECT_EQ(after.rax, 0x12u);
  EXPECT_EQ(after.rdx, 0x1000u);
  EXPECT_EQ(after.rcx, 0x5Cu);
  EXPECT_EQ(after.r8, 0x2000u);
}

// Runs the real page bytes on the host CPU. In user mode the OUT faults
// (#GP -> SIGSEGV) exactly where a guest's would exit to the VMM; the handler
// plays the VMM with ArgsFromTrap / CompleteTrap and resumes after the OUT.
// This checks the page's ABI from the caller's side: RCX, RDX, R8 in, RAX
// out, everything else preserved.
struct TrapRecord {
  bool trapped = false;
  uint16_t port = 0;
  HypercallArgs args{};
  uint64_t rbx = 0, rsi = 0, rdi = 0, r9 = 0;
};
TrapRecord g_trap;
constexpr uint64_t kFakeResult = 0x0000'0003'0000'0012;

void OnSegv(int, siginfo_t*, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  greg_t* g = uc->uc_mcontext.gregs;
  const auto* rip = reinterpret_cast<const uint8_t*>(g[REG_RIP]);
  if (*rip != 0xEF) _exit(3);  // not our OUT: let the test die loudly
  HypercallTrapRegs regs{
      static_cast<uint64_t>(g[REG_RAX]), static_cast<uint64_t>(g[REG_RCX]),
      static_cast<uint64_t>(g[REG_RDX]), static_cast<uint64_t>(g[REG_R8])};
  g_trap.trapped = true;
  g_trap.port = static_cast<uint16_t>(regs.rdx);
  g_trap.args = ArgsFromTrap(regs);
  g_trap.rbx = g[REG_RBX];
  g_trap.rsi = g[REG_RSI];
  g_trap.rdi = g[REG_RDI];
  g_trap.r9 = g[REG_R9];
  const HypercallTrapRegs done = CompleteTrap(regs, kFakeResult);
  g[REG_RAX] = static_cast<greg_t>(done.rax);
  g[REG_RDX] = static_cast<greg_t>(done.rdx);
  g[REG_RIP] += 1;  // OUT DX, EAX is one byte
}

TEST(HypercallPageTest, GuestSideAbiOnTheHostCpu) {
  void* mem = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  const auto page = BuildHypercallPage(0x4856);
  std::memcpy(mem, page.data(), page.size());
  ASSERT_EQ(mprotect(mem, kPageSize, PROT_READ | PROT_EXEC), 0);

  struct sigaction sa {
  }, old{};
  sa.sa_sigaction = OnSegv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old), 0);

  uint64_t control = 0x0001'0000'0001'005Cull;
  uint64_t input = 0x0000'1234'5678'9000ull;
  register uint64_t r8 asm("r8") = 0x0000'0000'00AB'C000ull;
  register uint64_t r9 asm("r9") = 0x9999;
  uint64_t rbx = 0xB0B0, rsi = 0x5151, rdi = 0xD1D1;
  uint64_t rax;
  // Skip the red zone: the call pushes a return address below RSP.
  asm volatile(
      "sub $128, %%rsp\n\t"
      "call *%[page]\n\t"
      "add $128, %%rsp"
      : "=&a"(rax), "+c"(control), "+d"(input), "+r"(r8), "+r"(r9), "+b"(rbx),
        "+S"(rsi), "+D"(rdi)
      : [page] "r"(mem)
      : "memory", "cc", "r10", "r11");
  // Register variables are only pinned inside asm operands: copy them now.
  const uint64_t r8_after = r8, r9_after = r9;

  sigaction(SIGSEGV, &old, nullptr);
  munmap(mem, kPageSize);

  ASSERT_TRUE(g_trap.trapped);
  EXPECT_EQ(g_trap.port, 0x4856);
  EXPECT_EQ(g_trap.args.control, 0x0001'0000'0001'005Cull);
  EXPECT_EQ(g_trap.args.input, 0x0000'1234'5678'9000ull);
  EXPECT_EQ(g_trap.args.output, 0x0000'0000'00AB'C000ull);
  EXPECT_EQ(g_trap.rbx, 0xB0B0u);
  EXPECT_EQ(g_trap.rsi, 0x5151u);
  EXPECT_EQ(g_trap.rdi, 0xD1D1u);
  EXPECT_EQ(g_trap.r9, 0x9999u);
  // What the caller sees: RAX = result, the rest as it passed them.
  EXPECT_EQ(rax, kFakeResult);
  EXPECT_EQ(control, 0x0001'0000'0001'005Cull);
  EXPECT_EQ(input, 0x0000'1234'5678'9000ull);
  EXPECT_EQ(r8_after, 0x0000'0000'00AB'C000ull);
  EXPECT_EQ(r9_after, 0x9999u);
  EXPECT_EQ(rbx, 0xB0B0u);
  EXPECT_EQ(rsi, 0x5151u);
  EXPECT_EQ(rdi, 0xD1D1u);
}

}  // namespace
}  // namespace hvcore::hyperv
