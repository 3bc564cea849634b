// SHA-256 for the prescription id (SPEC 4: PrescriptionId is the hex SHA-256 of the
// prescription text) and the therapy document's checksums: libgcrypt (libgcrypt20-dev), not a
// hand-written digest.  libgcrypt is already in thecald through libsystemd, so it costs no
// memory; OpenSSL's libcrypto, used before, added 4.6 MB that mlockall keeps resident (README).
// Checked against the NIST vectors in tests/config/sha256_test.cpp.
#pragma once

#include <string>
#include <string_view>

namespace thecal::config {

/// Lowercase hex SHA-256 of `data` (64 characters).  Throws std::runtime_error only if
/// libgcrypt cannot be initialised (a broken installation).
std::string sha256_hex(std::string_view data);

}  // namespace thecal::config
