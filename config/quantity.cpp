#include "config/quantity.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>

namespace thecal::config {
namespace {

struct UnitDef {
  std::string_view symbol;
  Dim dim;
  double factor;        // canonical units per one of this unit (not durations)
  std::int64_t us;      // durations: microseconds per one of this unit
  bool only_if_ms;      // "ms": accepted only where QuantitySpec::allow_ms
};

// The canonical factors come from control/units.hpp, so there is one source of truth.
constexpr std::array kUnits{
    UnitDef{"mg", Dim::mass, to_mcg(mg(1)), 0, false},
    UnitDef{"mcg", Dim::mass, to_mcg(mcg(1)), 0, false},
    UnitDef{"ug", Dim::mass, to_mcg(mcg(1)), 0, false},
    UnitDef{"\u00b5g", Dim::mass, to_mcg(mcg(1)), 0, false},  // micro sign
    UnitDef{"\u03bcg", Dim::mass, to_mcg(mcg(1)), 0, false},  // Greek mu
    UnitDef{"mL", Dim::volume, to_uL(mL(1)), 0, false},
    UnitDef{"uL", Dim::volume, to_uL(uL(1)), 0, false},
    UnitDef{"\u00b5L", Dim::volume, to_uL(uL(1)), 0, false},
    UnitDef{"\u03bcL", Dim::volume, to_uL(uL(1)), 0, false},
    UnitDef{"mg/mL", Dim::concentration, mg_per_mL(1).canonical_value(), 0, false},
    UnitDef{"mcg/mL", Dim::concentration, mcg_per_mL(1).canonical_value(), 0, false},
    UnitDef{"ug/mL", Dim::concentration, mcg_per_mL(1).canonical_value(), 0, false},
    UnitDef{"\u00b5g/mL", Dim::concentration, mcg_per_mL(1).canonical_value(), 0, false},
    UnitDef{"\u03bcg/mL", Dim::concentration, mcg_per_mL(1).canonical_value(), 0, false},
    UnitDef{"mg/day", Dim::mass_rate, mg_per_day(1).canonical_value(), 0, false},
    UnitDef{"mcg/day", Dim::mass_rate, mcg_per_day(1).canonical_value(), 0, false},
    UnitDef{"ug/day", Dim::mass_rate, mcg_per_day(1).canonical_value(), 0, false},
    UnitDef{"\u00b5g/day", Dim::mass_rate, mcg_per_day(1).canonical_value(), 0, false},
    UnitDef{"\u03bcg/day", Dim::mass_rate, mcg_per_day(1).canonical_value(), 0, false},
    UnitDef{"mcg/h", Dim::mass_rate, mcg_per_h(1).canonical_value(), 0, false},
    UnitDef{"ug/h", Dim::mass_rate, mcg_per_h(1).canonical_value(), 0, false},
    UnitDef{"\u00b5g/h", Dim::mass_rate, mcg_per_h(1).canonical_value(), 0, false},
    UnitDef{"\u03bcg/h", Dim::mass_rate, mcg_per_h(1).canonical_value(), 0, false},
    UnitDef{"uL/h", Dim::volume_rate, uL_per_h(1).canonical_value(), 0, false},
    UnitDef{"\u00b5L/h", Dim::volume_rate, uL_per_h(1).canonical_value(), 0, false},
    UnitDef{"\u03bcL/h", Dim::volume_rate, uL_per_h(1).canonical_value(), 0, false},
    UnitDef{"mL/h", Dim::volume_rate, mL_per_h(1).canonical_value(), 0, false},
    UnitDef{"s", Dim::duration, 0, to_usec(seconds(1)), false},
    UnitDef{"min", Dim::duration, 0, to_usec(minutes(1)), false},
    UnitDef{"h", Dim::duration, 0, to_usec(hours(1)), false},
    UnitDef{"d", Dim::duration, 0, to_usec(days(1)), false},
    UnitDef{"ms", Dim::duration, 0, to_usec(msec(1)), true},
    UnitDef{"mAs", Dim::charge, 1.0, 0, false},
    UnitDef{"mAh", Dim::charge, 3600.0, 0, false},
    UnitDef{"Ah", Dim::charge, 3.6e6, 0, false},
    UnitDef{"%", Dim::percent, 1.0, 0, false},
};

// The spellings listed in messages (the others are accepted aliases).
bool listed(const UnitDef& u) {
  const std::string_view s = u.symbol;
  return s.find("\u00b5") == std::string_view::npos && s.find("\u03bc") == std::string_view::npos &&
         s.substr(0, 2) != "ug";
}

const UnitDef* find_unit(std::string_view symbol) {
  for (const UnitDef& u : kUnits) {
    if (u.symbol == symbol) return &u;
  }
  return nullptr;
}

bool accepted(const UnitDef& u, const QuantitySpec& spec) {
  return u.dim == spec.dim && (!u.only_if_ms || spec.allow_ms);
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

ParsedQuantity fail(std::string msg) {
  ParsedQuantity q;
  q.error = std::move(msg);
  return q;
}

// NaN and infinity spellings (YAML's .nan/.inf, C's nan/inf, "Infinity"), any case, signed.
std::optional<std::string_view> special_value(std::string_view number_word) {
  std::string_view w = number_word;
  if (!w.empty() && (w[0] == '-' || w[0] == '+')) w.remove_prefix(1);
  if (!w.empty() && w[0] == '.') w.remove_prefix(1);
  if (iequals(w, "nan")) return "is not a number";
  if (iequals(w, "inf") || iequals(w, "infinity")) return "is infinite";
  return std::nullopt;
}

// Exact decimal -> integer microseconds.  int_digits/frac_digits are digit strings.
bool exact_us(std::string_view int_digits, std::string_view frac_digits, std::int64_t unit_us,
              std::int64_t& out, bool& too_large) {
  too_large = false;
  std::int64_t whole = 0;
  for (char c : int_digits) {
    if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, c - '0', &whole)) {
      too_large = true;
      return false;
    }
  }
  while (!frac_digits.empty() && frac_digits.back() == '0') frac_digits.remove_suffix(1);
  std::int64_t result = 0;
  if (__builtin_mul_overflow(whole, unit_us, &result)) {
    too_large = true;
    return false;
  }
  if (frac_digits.empty()) {
    out = result;
    return true;
  }
  // unit_us <= 8.64e10 has at most 13 factors of 2 and 10 of 5: more than 13 significant
  // fraction digits can never give whole microseconds.
  if (frac_digits.size() > 13) return false;
  std::int64_t frac = 0;
  std::int64_t denom = 1;
  for (char c : frac_digits) {
    frac = frac * 10 + (c - '0');
    denom *= 10;
  }
  const std::int64_t g = std::gcd(unit_us, denom);
  const std::int64_t d = denom / g;
  if (frac % d != 0) return false;
  const std::int64_t part = (frac / d) * (unit_us / g);  // < unit_us: cannot overflow
  if (__builtin_add_overflow(result, part, &result)) {
    too_large = true;
    return false;
  }
  out = result;
  return true;
}

ParsedQuantity malformed(std::string_view text, Dim d) {
  std::string_view first;
  for (const UnitDef& u : kUnits) {
    if (u.dim == d && !u.only_if_ms) {
      first = u.symbol;
      break;
    }
  }
  return fail("malformed quantity " + in_quotes(text) + ": expected a number and a unit, like \"1.5 " +
              std::string(first) + "\"");
}

}  // namespace

std::string_view dim_article_name(Dim d) {
  switch (d) {
    case Dim::mass: return "a mass";
    case Dim::volume: return "a volume";
    case Dim::concentration: return "a concentration";
    case Dim::mass_rate: return "a mass rate";
    case Dim::volume_rate: return "a volume rate";
    case Dim::duration: return "a duration";
    case Dim::charge: return "a charge";
    case Dim::percent: return "a percentage";
  }
  return "a quantity";
}

std::string unit_list(Dim d, bool allow_ms) {
  std::string out;
  std::size_t n = 0;
  for (const UnitDef& u : kUnits) {
    if (u.dim == d && listed(u) && (!u.only_if_ms || allow_ms)) ++n;
  }
  std::size_t i = 0;
  for (const UnitDef& u : kUnits) {
    if (u.dim != d || !listed(u) || (u.only_if_ms && !allow_ms)) continue;
    if (i > 0) out += (i + 1 == n) ? " or " : ", ";
    out += u.symbol;
    ++i;
  }
  return out;
}

std::string in_quotes(std::string_view text) {
  constexpr std::size_t kMax = 48;
  std::string out = "\"";
  std::size_t shown = 0;
  for (char c : text) {
    if (shown == kMax) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\x%02x", u);
      out += buf.data();
    } else {
      out += c;
    }
    ++shown;
  }
  out += '"';
  return out;
}

ParsedQuantity parse_quantity(std::string_view text, const QuantitySpec& spec) {
  const std::string example = std::string(dim_article_name(spec.dim)) + " in " + unit_list(spec.dim, spec.allow_ms);
  if (text.empty()) return fail("empty value: expected " + example);

  // Split at the first space: number word, then the unit.
  const std::size_t sp = text.find(' ');
  const std::string_view word = text.substr(0, sp);
  std::string_view unit_text;
  if (sp != std::string_view::npos) {
    std::size_t u = sp;
    while (u < text.size() && text[u] == ' ') ++u;
    unit_text = text.substr(u);
  }

  if (auto special = special_value(word)) return fail(in_quotes(text) + " " + std::string(*special));

  // The number: [-]DIGITS[.DIGITS]
  std::size_t i = 0;
  const bool negative = !word.empty() && word[0] == '-';
  if (negative) ++i;
  const std::size_t int_begin = i;
  while (i < word.size() && is_digit(word[i])) ++i;
  const std::string_view int_digits = word.substr(int_begin, i - int_begin);
  std::string_view frac_digits;
  bool has_point = false;
  if (i < word.size() && word[i] == '.') {
    has_point = true;
    const std::size_t f = ++i;
    while (i < word.size() && is_digit(word[i])) ++i;
    frac_digits = word.substr(f, i - f);
  }
  if (int_digits.empty() && has_point && !frac_digits.empty()) {
    return fail("malformed number in " + in_quotes(text) + ": write a leading zero (0.5, not .5)");
  }
  if (int_digits.empty() || (has_point && frac_digits.empty())) {
    return malformed(text, spec.dim);
  }
  if (i < word.size()) {
    // Something glued to the number: a unit without a space ("10mg") or garbage.
    const std::string_view rest = word.substr(i);
    if (find_unit(rest) != nullptr && unit_text.empty()) {
      return fail("no space between number and unit in " + in_quotes(text));
    }
    return malformed(text, spec.dim);
  }
  if (word.size() > 32) return fail("number in " + in_quotes(text) + " has too many digits");
  if (unit_text.empty()) {
    return fail("bare number " + in_quotes(text) + " has no unit: expected " + example);
  }

  const UnitDef* unit = find_unit(unit_text);
  if (unit == nullptr) {
    for (const UnitDef& u : kUnits) {
      if (iequals(u.symbol, unit_text) && accepted(u, spec)) {
        return fail("unknown unit " + in_quotes(unit_text) + " (units are case-sensitive: did you mean \"" +
                    std::string(u.symbol) + "\"?)");
      }
    }
    return fail("unknown unit " + in_quotes(unit_text) + ": expected " + example);
  }
  if (unit->dim != spec.dim) {
    return fail("wrong dimension: " + in_quotes(text) + " is " + std::string(dim_article_name(unit->dim)) +
                ", expected " + example);
  }
  if (!accepted(*unit, spec)) {
    return fail("unit " + in_quotes(unit_text) + " is not accepted here: expected " + example);
  }

  // Sign: zero and negative are named errors of their own.
  bool all_zero = true;
  for (char c : word) {
    if (is_digit(c) && c != '0') all_zero = false;
  }
  if (negative && !all_zero) {
    return fail("negative value " + in_quotes(text) + ": must be " +
                (spec.sign == Sign::positive ? "greater than zero" : "zero or more"));
  }
  if (all_zero && spec.sign == Sign::positive) {
    return fail("zero value " + in_quotes(text) + ": must be greater than zero");
  }

  ParsedQuantity q;
  if (spec.dim == Dim::duration) {
    std::int64_t us = 0;
    bool too_large = false;
    if (!exact_us(int_digits, frac_digits, unit->us, us, too_large)) {
      return fail(in_quotes(text) + (too_large ? " is too large" : " is not a whole number of microseconds"));
    }
    q.duration = Duration{us};
    q.canonical = static_cast<double>(us);
  } else {
    const std::string_view digits = word.substr(negative ? 1 : 0);
    double v = 0.0;
    const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (res.ec != std::errc{} || res.ptr != digits.data() + digits.size() || !std::isfinite(v)) {
      return fail(in_quotes(text) + " is out of range");
    }
    q.canonical = v * unit->factor;
    if (!std::isfinite(q.canonical)) return fail(in_quotes(text) + " is out of range");
    if (q.canonical == 0.0 && spec.sign == Sign::positive) {
      return fail("zero value " + in_quotes(text) + ": must be greater than zero");
    }
  }
  q.ok = true;
  return q;
}

}  // namespace thecal::config
