// SHA-256 for the prescription id (SPEC 4: PrescriptionId is the hex SHA-256 of the
// prescription text) and the therapy document's checksums: OpenSSL's EVP interface
// (libssl-dev), not a hand-written digest.  Checked against the NIST vectors in
// tests/config/sha256_test.cpp.
#pragma once

#include <string>
#include <string_view>

namespace thecal::config {

/// Lowercase hex SHA-256 of `data` (64 characters).  Throws std::runtime_error only if
/// OpenSSL cannot compute a digest at all (no SHA-256 provider: a broken installation).
std::string sha256_hex(std::string_view data);

}  // namespace thecal::config
