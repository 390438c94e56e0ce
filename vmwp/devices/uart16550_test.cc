#include "vmwp/devices/uart16550.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vmwp {
namespace {

constexpr uint16_t kBase = Uart16550::kCom1Base;

class Uart16550Test : public ::testing::Test {
 protected:
  Uart16550Test() : uart_([this](std::string_view b) { out_.append(b); }) {
    uart_.SetInterruptLine([this](bool level) { irq_.push_back(level); });
  }
  uint8_t In(uint8_t reg) {
    return static_cast<uint8_t>(uart_.PortRead(kBase + reg, 1));
  }
  void Out(uint8_t reg, uint8_t v) { uart_.PortWrite(kBase + reg, 1, v); }

  std::string out_;
  std::vector<bool> irq_;
  Uart16550 uart_;
};

TEST_F(Uart16550Test, ThrWritesGoToSink) {
  for (char c : std::string("hello\n")) Out(Uart16550::kRbrThrDll, c);
  EXPECT_EQ(out_, "hello\n");
}

TEST_F(Uart16550Test, LsrReportsTransmitterAlwaysEmpty) {
  EXPECT_EQ(In(Uart16550::kLsr), Uart16550::kLsrThre | Uart16550::kLsrTemt);
  Out(Uart16550::kRbrThrDll, 'x');
  EXPECT_EQ(In(Uart16550::kLsr), Uart16550::kLsrThre | Uart16550::kLsrTemt);
}

TEST_F(Uart16550Test, InputSetsDataReadyAndIsReadFromRbr) {
  EXPECT_EQ(uart_.PushInput("ab"), 2u);
  EXPECT_TRUE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  EXPECT_EQ(In(Uart16550::kRbrThrDll), 'a');
  EXPECT_TRUE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  EXPECT_EQ(In(Uart16550::kRbrThrDll), 'b');
  EXPECT_FALSE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
}

TEST_F(Uart16550Test, InputQueueIsBoundedAndReportsOverrun) {
  std::string big(Uart16550::kInputQueueCapacity + 10, 'z');
  EXPECT_EQ(uart_.PushInput(big), Uart16550::kInputQueueCapacity);
  const uint8_t lsr = In(Uart16550::kLsr);
  EXPECT_TRUE(lsr & Uart16550::kLsrOverrun);
  EXPECT_FALSE(In(Uart16550::kLsr) & Uart16550::kLsrOverrun)
      << "OE clears on read";
}

TEST_F(Uart16550Test, DlabSwitchesDivisorLatch) {
  Out(Uart16550::kIerDlm, 0x05);  // IER
  Out(Uart16550::kLcr, 0x83);     // DLAB | 8N1
  Out(Uart16550::kRbrThrDll, 0x01);
  Out(Uart16550::kIerDlm, 0x02);
  EXPECT_EQ(In(Uart16550::kRbrThrDll), 0x01);
  EXPECT_EQ(In(Uart16550::kIerDlm), 0x02);
  EXPECT_EQ(out_, "") << "a DLL write must not transmit";
  Out(Uart16550::kLcr, 0x03);
  EXPECT_EQ(In(Uart16550::kLcr), 0x03);
  EXPECT_EQ(In(Uart16550::kIerDlm), 0x05) << "IER is back once DLAB clears";
  Out(Uart16550::kRbrThrDll, 'k');
  EXPECT_EQ(out_, "k");
}

TEST_F(Uart16550Test, IerKeepsLowNibbleOnly) {
  Out(Uart16550::kIerDlm, 0xFF);
  EXPECT_EQ(In(Uart16550::kIerDlm), 0x0F);
}

TEST_F(Uart16550Test, ScratchReadsBack) {
  Out(Uart16550::kScr, 0x5A);
  EXPECT_EQ(In(Uart16550::kScr), 0x5A);
  Out(Uart16550::kScr, 0xA5);
  EXPECT_EQ(In(Uart16550::kScr), 0xA5);
}

TEST_F(Uart16550Test, IirWithoutInterrupts) {
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirNoInterrupt);
}

TEST_F(Uart16550Test, FcrEnablesFifoBitsInIir) {
  Out(Uart16550::kIirFcr,
      Uart16550::kFcrEnable | Uart16550::kFcrClearRx | 0xC0);
  EXPECT_EQ(In(Uart16550::kIirFcr),
            Uart16550::kIirFifoEnabled | Uart16550::kIirNoInterrupt);
  Out(Uart16550::kIirFcr, 0);
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirNoInterrupt);
}

TEST_F(Uart16550Test, FcrClearRxDropsInput) {
  uart_.PushInput("abc");
  Out(Uart16550::kIirFcr,
      Uart16550::kFcrEnable);  // Enabling also resets the FIFOs.
  EXPECT_FALSE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  uart_.PushInput("abc");
  Out(Uart16550::kIirFcr, Uart16550::kFcrEnable | Uart16550::kFcrClearRx);
  EXPECT_FALSE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
}

TEST_F(Uart16550Test, ThreInterruptRaisedOnEnableAndClearedByIirRead) {
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  Out(Uart16550::kIerDlm, Uart16550::kIerThre);
  EXPECT_EQ(irq_, std::vector<bool>({true}));
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirThre);
  EXPECT_EQ(irq_, std::vector<bool>({true, false}));
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirNoInterrupt);
  // Each transmitted byte empties THR again and re-raises the interrupt.
  Out(Uart16550::kRbrThrDll, 'q');
  EXPECT_EQ(irq_, std::vector<bool>({true, false, true}));
}

TEST_F(Uart16550Test, RxInterruptHasPriorityOverThre) {
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  Out(Uart16550::kIerDlm, Uart16550::kIerThre | Uart16550::kIerRxData);
  uart_.PushInput("x");
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirRxData);
  EXPECT_EQ(In(Uart16550::kRbrThrDll), 'x');
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirThre);
  EXPECT_EQ(In(Uart16550::kIirFcr), Uart16550::kIirNoInterrupt);
  EXPECT_FALSE(irq_.back());
}

TEST_F(Uart16550Test, InterruptLineNeedsOut2) {
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData);
  uart_.PushInput("x");
  EXPECT_TRUE(irq_.empty());
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  EXPECT_EQ(irq_, std::vector<bool>({true}));
  In(Uart16550::kRbrThrDll);
  EXPECT_EQ(irq_, std::vector<bool>({true, false}));
}

TEST_F(Uart16550Test, LoopbackEchoesToReceiverAndMirrorsModemLines) {
  Out(Uart16550::kMcr,
      Uart16550::kMcrLoop | Uart16550::kMcrRts | Uart16550::kMcrOut2);
  Out(Uart16550::kRbrThrDll, 0x55);
  EXPECT_EQ(out_, "") << "loopback output must not reach the sink";
  EXPECT_TRUE(In(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  EXPECT_EQ(In(Uart16550::kRbrThrDll), 0x55);
  const uint8_t msr = In(Uart16550::kMsr);
  EXPECT_EQ(msr & 0xF0, Uart16550::kMsrCts | Uart16550::kMsrDcd);
  Out(Uart16550::kMcr,
      Uart16550::kMcrLoop | Uart16550::kMcrDtr | Uart16550::kMcrOut1);
  EXPECT_EQ(In(Uart16550::kMsr) & 0xF0, Uart16550::kMsrDsr | Uart16550::kMsrRi);
  EXPECT_EQ(In(Uart16550::kMcr),
            Uart16550::kMcrLoop | Uart16550::kMcrDtr | Uart16550::kMcrOut1);
}

TEST_F(Uart16550Test, MsrDeltaBitsClearOnRead) {
  Out(Uart16550::kMcr,
      Uart16550::kMcrLoop);  // CTS/DSR/DCD drop: deltas latched.
  const uint8_t msr = In(Uart16550::kMsr);
  EXPECT_EQ(msr,
            Uart16550::kMsrDcts | Uart16550::kMsrDdsr | Uart16550::kMsrDdcd);
  EXPECT_EQ(In(Uart16550::kMsr), 0);
}

TEST_F(Uart16550Test, MsrOutsideLoopbackShowsConnectedPeer) {
  EXPECT_EQ(In(Uart16550::kMsr),
            Uart16550::kMsrCts | Uart16550::kMsrDsr | Uart16550::kMsrDcd);
}

TEST_F(Uart16550Test, McrKeepsFiveBits) {
  Out(Uart16550::kMcr, 0xFF);
  EXPECT_EQ(In(Uart16550::kMcr), 0x1F);
}

TEST_F(Uart16550Test, PortsOutsideTheRangeReadAsOpenBus) {
  EXPECT_EQ(uart_.PortRead(kBase + 8, 1), 0xFFu);
  EXPECT_EQ(uart_.PortRead(kBase - 1, 2), 0xFFFFu);
  uart_.PortWrite(kBase + 8, 1, 'x');
  EXPECT_EQ(out_, "");
}

TEST_F(Uart16550Test, DroppedInputIsCounted) {
  std::string big(Uart16550::kInputQueueCapacity + 10, 'z');
  EXPECT_EQ(uart_.PushInput(big), Uart16550::kInputQueueCapacity);
  EXPECT_EQ(uart_.input_dropped(), 10u);
  EXPECT_EQ(uart_.PushInput("abc"), 0u);
  EXPECT_EQ(uart_.input_dropped(), 13u);
  EXPECT_EQ(uart_.input_queued(), Uart16550::kInputQueueCapacity);
  In(Uart16550::kRbrThrDll);
  EXPECT_EQ(uart_.PushInput("abc"), 1u);
  EXPECT_EQ(uart_.input_dropped(), 15u);
}

// Linux's serial8250_do_startup checks that THRE is re-asserted when ETBEI is
// toggled (UART_BUG_THRE); a real 16550 does, and so must we.
TEST_F(Uart16550Test, ThreReassertedWhenEtbeiToggled) {
  Out(Uart16550::kIerDlm, Uart16550::kIerThre);
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirThre);
  Out(Uart16550::kIerDlm, 0);
  Out(Uart16550::kIerDlm, Uart16550::kIerThre);
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirThre);
  Out(Uart16550::kIerDlm, 0);
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirNoInterrupt);
}

// An edge-triggered controller (ISA IRQ 4 on the PIC/IOAPIC) sees one rising
// edge per interrupt: the handler drains IIR until "no interrupt", the line
// drops, and input arriving later raises it again.
TEST_F(Uart16550Test, EveryNewInputAfterServiceGivesARisingEdge) {
  Out(Uart16550::kMcr,
      Uart16550::kMcrOut2 | Uart16550::kMcrDtr | Uart16550::kMcrRts);
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData | Uart16550::kIerLineStatus);
  EXPECT_TRUE(irq_.empty());
  for (int round = 0; round < 3; ++round) {
    uart_.PushInput("hi");
    ASSERT_FALSE(irq_.empty());
    EXPECT_TRUE(irq_.back());
    // The ISR: read IIR, drain RBR while LSR.DR, until IIR says none.
    EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirRxData);
    std::string got;
    while (In(Uart16550::kLsr) & Uart16550::kLsrDataReady)
      got.push_back(static_cast<char>(In(Uart16550::kRbrThrDll)));
    EXPECT_EQ(got, "hi");
    EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirNoInterrupt);
    EXPECT_FALSE(irq_.back());
  }
  // Only level changes are reported: up, down per round.
  EXPECT_EQ(irq_, std::vector<bool>({true, false, true, false, true, false}));
}

TEST_F(Uart16550Test, MoreInputWhileLineHighKeepsItHighUntilDrained) {
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData);
  uart_.PushInput("a");
  uart_.PushInput("b");
  EXPECT_EQ(irq_, std::vector<bool>({true}));
  In(Uart16550::kRbrThrDll);
  EXPECT_EQ(irq_, std::vector<bool>({true}));
  In(Uart16550::kRbrThrDll);
  EXPECT_EQ(irq_, std::vector<bool>({true, false}));
}

TEST_F(Uart16550Test, OverrunRaisesLineStatusInterruptFirst) {
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData | Uart16550::kIerLineStatus);
  uart_.PushInput(std::string(Uart16550::kInputQueueCapacity + 1, 'x'));
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirLineStatus);
  EXPECT_TRUE(In(Uart16550::kLsr) & Uart16550::kLsrOverrun);
  EXPECT_EQ(In(Uart16550::kIirFcr) & 0x0F, Uart16550::kIirRxData);
}

TEST_F(Uart16550Test, DisablingTheSourceOrOut2LowersTheLine) {
  Out(Uart16550::kMcr, Uart16550::kMcrOut2);
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData);
  uart_.PushInput("a");
  EXPECT_TRUE(irq_.back());
  Out(Uart16550::kIerDlm, 0);
  EXPECT_FALSE(irq_.back());
  Out(Uart16550::kIerDlm, Uart16550::kIerRxData);
  EXPECT_TRUE(irq_.back());
  Out(Uart16550::kMcr, 0);
  EXPECT_FALSE(irq_.back());
  Out(Uart16550::kMcr, Uart16550::kMcrOut2 | Uart16550::kMcrLoop);
  EXPECT_FALSE(irq_.back()) << "loopback disconnects INTR";
}

TEST_F(Uart16550Test, InterruptLineIsLoweredWhenConnected) {
  Uart16550 uart([](std::string_view) {});
  std::vector<bool> levels;
  uart.SetInterruptLine([&](bool level) { levels.push_back(level); });
  EXPECT_TRUE(levels.empty()) << "starts low; nothing to report";
  uart.PortWrite(kBase + Uart16550::kMcr, 1, Uart16550::kMcrOut2);
  uart.PortWrite(kBase + Uart16550::kIerDlm, 1, Uart16550::kIerRxData);
  uart.PushInput("z");
  EXPECT_EQ(levels, std::vector<bool>({true}));
}

}  // namespace
}  // namespace vmwp
