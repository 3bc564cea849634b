// SHA-256 (FIPS 180-4), for the prescription id (SPEC 4: PrescriptionId is the hex SHA-256
// of the prescription text).  Small and self-contained; checked against the NIST vectors
// in tests/config/sha256_test.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace thecal::config {

class Sha256 {
 public:
  Sha256();
  void update(std::string_view data);
  /// The digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> finish();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_{};
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

/// Lowercase hex SHA-256 of `data` (64 characters).
std::string sha256_hex(std::string_view data);

}  // namespace thecal::config
