#include "vmwp/devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

namespace vmwp {
namespace {

class I8042Test : public ::testing::Test {
 protected:
  I8042Test() : kbc_([this] { ++resets_; }) {
    kbc_.SetInterruptLines([this](bool l) { irq1_.push_back(l); },
                           [this](bool l) { irq12_.push_back(l); });
  }
  uint8_t Status() {
    return static_cast<uint8_t>(kbc_.PortRead(I8042::kCommandPort, 1));
  }
  uint8_t Data() {
    return static_cast<uint8_t>(kbc_.PortRead(I8042::kDataPort, 1));
  }
  void Command(uint8_t c) { kbc_.PortWrite(I8042::kCommandPort, 1, c); }
  void WriteData(uint8_t v) { kbc_.PortWrite(I8042::kDataPort, 1, v); }
  // What Linux's i8042_wait_read + i8042_read_data do.
  std::vector<uint8_t> Drain() {
    std::vector<uint8_t> out;
    while (Status() & I8042::kStatusOutputFull) out.push_back(Data());
    return out;
  }
  using Bytes = std::vector<uint8_t>;

  int resets_ = 0;
  std::vector<bool> irq1_, irq12_;
  I8042 kbc_;
};

TEST_F(I8042Test, IdleStatus) {
  const uint8_t s = Status();
  EXPECT_FALSE(s & I8042::kStatusOutputFull);
  EXPECT_FALSE(s & I8042::kStatusInputFull);
  EXPECT_TRUE(s & I8042::kStatusSystemFlag);
  EXPECT_TRUE(s & I8042::kStatusKeylockOff);
  EXPECT_TRUE(Drain().empty()) << "i8042_flush finds nothing";
}

TEST_F(I8042Test, SelfTestAnswers55) {
  Command(0xAA);
  EXPECT_TRUE(Status() & I8042::kStatusLastWasCommand);
  EXPECT_EQ(Drain(), Bytes({0x55}));
}

TEST_F(I8042Test, CommandByteReadWrite) {
  Command(0x20);
  EXPECT_EQ(Drain(), Bytes({I8042::kDefaultCtr}));
  Command(0x60);
  WriteData(0x65);
  EXPECT_FALSE(Status() & I8042::kStatusLastWasCommand);
  EXPECT_EQ(kbc_.command_byte(), 0x65);
  Command(0x20);
  EXPECT_EQ(Drain(), Bytes({0x65}));
  // Other controller RAM bytes are plain storage.
  Command(0x61);
  WriteData(0x5A);
  Command(0x21);
  EXPECT_EQ(Drain(), Bytes({0x5A}));
  EXPECT_EQ(kbc_.command_byte(), 0x65);
}

TEST_F(I8042Test, SystemFlagFollowsCommandByte) {
  Command(0x60);
  WriteData(0x00);
  EXPECT_FALSE(Status() & I8042::kStatusSystemFlag);
  Command(0x60);
  WriteData(I8042::kCtrSystemFlag);
  EXPECT_TRUE(Status() & I8042::kStatusSystemFlag);
}

TEST_F(I8042Test, InterfaceTestsPass) {
  Command(0xAB);
  EXPECT_EQ(Drain(), Bytes({0x00}));
  Command(0xA9);
  EXPECT_EQ(Drain(), Bytes({0x00}));
}

TEST_F(I8042Test, EnableDisableBitsInCommandByte) {
  Command(0xAD);
  EXPECT_TRUE(kbc_.command_byte() & I8042::kCtrKbdDisable);
  Command(0xAE);
  EXPECT_FALSE(kbc_.command_byte() & I8042::kCtrKbdDisable);
  Command(0xA8);
  EXPECT_FALSE(kbc_.command_byte() & I8042::kCtrAuxDisable);
  Command(0xA7);
  EXPECT_TRUE(kbc_.command_byte() & I8042::kCtrAuxDisable);
}

TEST_F(I8042Test, OutputPortReadAndWrite) {
  Command(0xD0);
  EXPECT_EQ(Drain(), Bytes({I8042::kOutResetLine | I8042::kOutA20}));
  Command(0xD1);
  WriteData(0xDF);  // reset line high: no reset
  EXPECT_EQ(resets_, 0);
  Command(0xD0);
  EXPECT_EQ(Drain(), Bytes({0xDF}));
}

TEST_F(I8042Test, PulseResetCallsReset) {
  Command(0xFF);  // no line pulsed
  EXPECT_EQ(resets_, 0);
  Command(0xFE);
  EXPECT_EQ(resets_, 1);
  EXPECT_EQ(kbc_.resets(), 1u);
}

TEST_F(I8042Test, OutputPortResetLineLowCallsReset) {
  Command(0xD1);
  WriteData(0xFE);
  EXPECT_EQ(resets_, 1);
}

TEST_F(I8042Test, AuxLoopbackReturnsByteAsAuxData) {
  Command(0xD3);
  WriteData(0x5A);
  const uint8_t s = Status();
  EXPECT_TRUE(s & I8042::kStatusOutputFull);
  EXPECT_TRUE(s & I8042::kStatusAuxData);
  EXPECT_EQ(Data(), 0x5A);
  EXPECT_FALSE(Status() & I8042::kStatusOutputFull);
}

// Linux's i8042_check_mux: an echo that returns 0xA4/0xA5 unchanged means
// "no active multiplexer".
TEST_F(I8042Test, MuxProbeSeesPlainEcho) {
  for (uint8_t v : {0xF0, 0x56, 0xA4}) {
    Command(0xD3);
    WriteData(v);
    EXPECT_TRUE(Status() & I8042::kStatusAuxData);
    EXPECT_EQ(Data(), v);
  }
}

TEST_F(I8042Test, AuxDeviceIsAbsent) {
  Command(0xD4);
  WriteData(0xF2);
  const uint8_t s = Status();
  EXPECT_TRUE(s & I8042::kStatusAuxData);
  EXPECT_TRUE(s & I8042::kStatusTimeout);
  EXPECT_EQ(Data(), 0xFE);
}

TEST_F(I8042Test, WriteKeyboardBuffer) {
  Command(0xD2);
  WriteData(0x1C);
  EXPECT_FALSE(Status() & I8042::kStatusAuxData);
  EXPECT_EQ(Drain(), Bytes({0x1C}));
}

TEST_F(I8042Test, KeyboardResetAndIdentify) {
  WriteData(0xFF);
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xAA}));
  WriteData(0xF2);
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xAB, 0x41})) << "translated";
  Command(0x60);
  WriteData(I8042::kDefaultCtr & ~I8042::kCtrTranslate);
  WriteData(0xF2);
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xAB, 0x83}));
}

TEST_F(I8042Test, KeyboardParameterCommands) {
  WriteData(0xED);
  EXPECT_EQ(Drain(), Bytes({0xFA}));
  WriteData(0x07);  // LEDs: a parameter, not a command
  EXPECT_EQ(Drain(), Bytes({0xFA}));
  WriteData(0xF3);
  WriteData(0x00);
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xFA}));
  WriteData(0xF0);
  WriteData(0x00);  // read the set
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xFA, 0x41}));
  WriteData(0xEE);
  EXPECT_EQ(Drain(), Bytes({0xEE}));
  WriteData(0xF4);
  WriteData(0xF5);
  EXPECT_EQ(Drain(), Bytes({0xFA, 0xFA}));
  WriteData(0x42);  // unknown
  EXPECT_EQ(Drain(), Bytes({0xFE}));
}

TEST_F(I8042Test, WritingToKeyboardEnablesIt) {
  Command(0xAD);
  WriteData(0xF4);
  EXPECT_FALSE(kbc_.command_byte() & I8042::kCtrKbdDisable);
}

TEST_F(I8042Test, Irq1FollowsKeyboardDataWhenEnabled) {
  // Default CTR has KBDINT.
  Command(0xAA);
  EXPECT_EQ(irq1_, std::vector<bool>({true}));
  Data();
  EXPECT_EQ(irq1_, std::vector<bool>({true, false}));
  // Linux turns KBDINT off while it probes: no interrupt.
  Command(0x60);
  WriteData(I8042::kDefaultCtr & ~I8042::kCtrKbdInt);
  Command(0xAA);
  EXPECT_EQ(irq1_.size(), 2u);
  Data();
  EXPECT_TRUE(irq12_.empty());
}

TEST_F(I8042Test, Irq12ForAuxDataWhenEnabled) {
  Command(0x60);
  WriteData(I8042::kCtrAuxInt);
  Command(0xD3);
  WriteData(0xA5);
  EXPECT_EQ(irq12_, std::vector<bool>({true}));
  EXPECT_TRUE(irq1_.empty());
  EXPECT_EQ(Data(), 0xA5);
  EXPECT_EQ(irq12_, std::vector<bool>({true, false}));
}

TEST_F(I8042Test, EmptyBufferRereadsLastByte) {
  Command(0xAA);
  EXPECT_EQ(Data(), 0x55);
  EXPECT_EQ(Data(), 0x55);
}

TEST_F(I8042Test, NewCommandCancelsPendingParameter) {
  Command(0x60);
  Command(0xAA);
  WriteData(0xF2);  // now goes to the keyboard
  EXPECT_EQ(kbc_.command_byte(), I8042::kDefaultCtr);
  EXPECT_EQ(Drain(), Bytes({0x55, 0xFA, 0xAB, 0x41}));
}

TEST_F(I8042Test, OutputBufferIsBounded) {
  for (int i = 0; i < 1000; ++i) Command(0xAA);
  EXPECT_EQ(Drain().size(), I8042::kMaxOutput);
}

TEST_F(I8042Test, WideAccessesReadOpenBus) {
  EXPECT_EQ(kbc_.PortRead(I8042::kCommandPort, 2), 0xFFFFu);
  kbc_.PortWrite(I8042::kCommandPort, 2, 0xFE);
  EXPECT_EQ(resets_, 0);
}

// The sequence Linux's i8042 driver runs at probe (i8042_controller_check,
// _selftest, _init), as far as it touches the controller.
TEST_F(I8042Test, LinuxProbeSequence) {
  EXPECT_TRUE(Drain().empty());
  Command(0xAA);
  EXPECT_EQ(Drain(), Bytes({0x55}));
  Bytes ctr;
  for (int i = 0; i < 2; ++i) {
    Command(0x20);
    ctr.push_back(Drain().at(0));
  }
  EXPECT_EQ(ctr[0], ctr[1]);
  uint8_t c = ctr[0];
  c |= I8042::kCtrKbdDisable;
  c &= ~I8042::kCtrKbdInt;
  Command(0x60);
  WriteData(c);
  Command(0x20);
  EXPECT_EQ(Drain(), Bytes({c}));
  EXPECT_EQ(resets_, 0);
}

}  // namespace
}  // namespace vmwp
