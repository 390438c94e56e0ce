#include "base/display_text.h"

#include <string>

#include "gtest/gtest.h"

namespace base {
namespace {

TEST(DisplayTextTest, KeepsPrintableUtf8NewlinesAndTabs) {
  EXPECT_EQ(
      DisplayText("Kernel panic - not syncing: \xc3\xa9t\xc3\xa9\n\tx", 100),
      "Kernel panic - not syncing: \xc3\xa9t\xc3\xa9\n\tx");
}

TEST(DisplayTextTest, EscapesControlCharactersAndInvalidUtf8) {
  EXPECT_EQ(DisplayText(std::string("a\x1b[2Jb\r\0c\x7f", 10), 100),
            "a\\x1b[2Jb\\x0d\\x00c\\x7f");
  // A lone continuation byte, a truncated sequence, an overlong slash, a
  // surrogate, a code point above U+10FFFF.
  EXPECT_EQ(
      DisplayText("\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80", 100),
      "\\x80|\\xe2\\x82|\\xc0\\xaf|\\xed\\xa0\\x80|\\xf4\\x90\\x80\\x80");
}

TEST(DisplayTextTest, NeverCutsAnEscapeOrACharacter) {
  // "ab" + 3-byte euro sign + ESC (4 bytes escaped).
  const std::string text = "ab\xe2\x82\xac\x1b";
  EXPECT_EQ(DisplayText(text, 4), "ab");
  EXPECT_EQ(DisplayText(text, 5), "ab\xe2\x82\xac");
  EXPECT_EQ(DisplayText(text, 8), "ab\xe2\x82\xac");
  EXPECT_EQ(DisplayText(text, 9), "ab\xe2\x82\xac\\x1b");
  EXPECT_EQ(DisplayText(text, 0), "");
}

TEST(DisplayTextTest, TailKeepsTheEnd) {
  EXPECT_EQ(DisplayTextTail("first line\nlast line", 9), "last line");
  EXPECT_EQ(DisplayTextTail("x\x1b", 4), "\\x1b");
  EXPECT_EQ(DisplayTextTail("x\x1b", 3), "");
  // The window starts inside a UTF-8 sequence: its bytes are not shown as a
  // character, and nothing invalid leaks through.
  EXPECT_EQ(DisplayTextTail("\xe2\x82\xac"
                            "abc",
                            4),
            "abc");
  EXPECT_EQ(DisplayTextTail("\xe2\x82\xac"
                            "abc",
                            6),
            "\xe2\x82\xac"
            "abc");
}

TEST(DisplayTextTest, BoundedForHugeInput) {
  const std::string huge(1 << 20, '\x01');
  EXPECT_EQ(DisplayText(huge, 4096).size(), 4096u);
  EXPECT_EQ(DisplayTextTail(huge, 4096).size(), 4096u);
}

}  // namespace
}  // namespace base
