// SHA-256 against the NIST FIPS 180-4 / CAVP example vectors.
#include "config/sha256.hpp"

#include <gtest/gtest.h>

namespace thecal::config {
namespace {

TEST(Sha256, NistVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, BlockBoundariesAndIncrementalUpdates) {
  // 55, 56, 63, 64 and 65 bytes straddle the padding cases; the digest must not depend on
  // how the input is split.
  for (std::size_t n : {55U, 56U, 63U, 64U, 65U, 119U, 120U, 128U}) {
    const std::string text(n, 'x');
    Sha256 split;
    split.update(text.substr(0, n / 3));
    split.update(text.substr(n / 3));
    const auto d = split.finish();
    std::string hex;
    for (std::uint8_t b : d) {
      hex += "0123456789abcdef"[b >> 4];
      hex += "0123456789abcdef"[b & 15];
    }
    EXPECT_EQ(hex, sha256_hex(text)) << n;
  }
  // A known 64-byte vector (one full block plus a padding block).
  EXPECT_EQ(sha256_hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

}  // namespace
}  // namespace thecal::config
