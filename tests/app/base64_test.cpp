// Base64 against RFC 4648's test vectors (section 10), the 64-column layout, and every refusal.
#include "app/base64.hpp"

#include <gtest/gtest.h>

#include <string>

namespace thecal::app {
namespace {

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==\n");
  EXPECT_EQ(base64_encode("fo"), "Zm8=\n");
  EXPECT_EQ(base64_encode("foo"), "Zm9v\n");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==\n");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=\n");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy\n");
  EXPECT_EQ(base64_decode("Zg=="), "f");
  EXPECT_EQ(base64_decode("Zm8="), "fo");
  EXPECT_EQ(base64_decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(base64_decode("Zm9vYmFy"), "foobar");
  EXPECT_EQ(base64_decode(""), "");
}

TEST(Base64, SixtyFourColumnLinesAndEveryByteValue) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  const std::string text = base64_encode(all);
  // 256 bytes: 344 characters with padding ("==" after 255,0..), lines of 64 and the tail's 24.
  ASSERT_EQ(text.size(), 344U + 6U);
  for (std::size_t line = 0; line < 5; ++line) EXPECT_EQ(text[line * 65 + 64], '\n') << line;
  EXPECT_EQ(text.substr(text.size() - 5), "/w==\n");
  EXPECT_EQ(text.substr(0, 8), "AAECAwQF");
  EXPECT_EQ(base64_decode(text), all);
  for (std::size_t n = 0; n < 200; ++n) {  // every padding case and line boundary
    const std::string part = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(part)), part) << n;
  }
}

TEST(Base64, BlanksAndLineBreaksAreSkipped) {
  EXPECT_EQ(base64_decode("Zm9v\r\nYm Fy\t\n"), "foobar");
}

TEST(Base64, RefusesWhatIsNotBase64) {
  EXPECT_FALSE(base64_decode("Zm9").has_value());        // not whole quanta
  EXPECT_FALSE(base64_decode("Zm9*").has_value());       // a character outside the alphabet
  EXPECT_FALSE(base64_decode("Zg==Zm9v").has_value());   // padding in the middle
  EXPECT_FALSE(base64_decode("Z===").has_value());       // three pad characters
  EXPECT_FALSE(base64_decode("====").has_value());
  EXPECT_FALSE(base64_decode("Zm9v-").has_value());
}

}  // namespace
}  // namespace thecal::app
