// Base64 (RFC 4648, standard alphabet, '=' padding) for the therapy document's payload.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace thecal::app {

/// The base64 of `in` in lines of 64 columns, each ended by '\n' (nothing for empty input).
std::string base64_encode(std::string_view in);

/// The bytes of `in`; line breaks and blanks are skipped.  nullopt for any other character
/// outside the alphabet, a length that is not whole 4-character quanta, or '=' other than as
/// the last one or two characters.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace thecal::app
