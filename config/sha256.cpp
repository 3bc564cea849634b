#include "config/sha256.hpp"

#include <gcrypt.h>

#include <array>
#include <stdexcept>

namespace thecal::config {

namespace {

// libgcrypt wants gcry_check_version() before its first use.  libsystemd (linked into thecald)
// initialises it the same way when it needs it; whoever comes first finishes the
// initialisation, the other sees it finished.
bool gcrypt_ready() {
  static const bool ready = [] {
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P) != 0) return true;
    if (gcry_check_version(nullptr) == nullptr) return false;
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);  // nothing secret is hashed: no locked secure heap
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    return true;
  }();
  return ready;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  constexpr std::size_t kLen = 32;
  if (!gcrypt_ready() || gcry_md_get_algo_dlen(GCRY_MD_SHA256) != kLen) {
    throw std::runtime_error("libgcrypt could not compute a SHA-256 digest");
  }
  std::array<unsigned char, kLen> digest{};
  gcry_md_hash_buffer(GCRY_MD_SHA256, digest.data(), data.data(), data.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * kLen);
  for (const unsigned char b : digest) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

}  // namespace thecal::config
