// The one strict parser for quantities written as text with a unit ("1.5 mg/day").
//
// Grammar: [-]DIGITS[.DIGITS] SPACES UNIT.  No exponent, no leading "+", no naked decimal
// (".5"), no trailing decimal point ("5."), at most 32 characters of number.  Units are
// case-sensitive and come from one table (quantity.cpp); each key asks for one dimension.
// Durations are converted exactly to integer microseconds (a fraction of a microsecond is
// an error, never rounded).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "control/units.hpp"

namespace thecal::config {

enum class Dim : std::uint8_t {
  mass,           // canonical mcg
  volume,         // canonical uL
  concentration,  // canonical mcg/uL
  mass_rate,      // canonical mcg/us
  volume_rate,    // canonical uL/us
  duration,       // canonical us (integer)
  charge,         // canonical mA*s (battery model)
  percent,        // canonical %
};

enum class Sign : std::uint8_t { positive, non_negative };

struct QuantitySpec {
  Dim dim = Dim::mass;
  Sign sign = Sign::positive;
  bool allow_ms = false;  // durations: accept "ms" (thecald.yaml timing keys only)
};

struct ParsedQuantity {
  bool ok = false;
  double canonical = 0.0;  // in the dimension's canonical unit
  Duration duration{0};    // durations only, exact
  std::string error;       // set when !ok: a complete sentence fragment for a Problem
};

/// Parses `text` as a quantity of `spec.dim`.  Never throws.
ParsedQuantity parse_quantity(std::string_view text, const QuantitySpec& spec);

/// "a mass", "a concentration", ... (for messages).
std::string_view dim_article_name(Dim d);

/// The accepted unit symbols of a dimension, for messages: "mg, mcg, ug or µg".
std::string unit_list(Dim d, bool allow_ms = false);

/// `text` quoted for a message: control characters escaped, long text shortened.
std::string in_quotes(std::string_view text);

}  // namespace thecal::config
