#include "config/quantity.hpp"

#include <gtest/gtest.h>

namespace thecal::config {
namespace {

ParsedQuantity q(std::string_view text, Dim d, Sign s = Sign::positive, bool ms = false) {
  return parse_quantity(text, QuantitySpec{d, s, ms});
}

TEST(Quantity, Units) {
  EXPECT_DOUBLE_EQ(q("1.5 mg", Dim::mass).canonical, 1500.0);
  EXPECT_DOUBLE_EQ(q("1.5 mcg", Dim::mass).canonical, 1.5);
  EXPECT_DOUBLE_EQ(q("2 ug", Dim::mass).canonical, 2.0);
  EXPECT_DOUBLE_EQ(q("2 \u00b5g", Dim::mass).canonical, 2.0);
  EXPECT_DOUBLE_EQ(q("2 \u03bcg", Dim::mass).canonical, 2.0);
  EXPECT_DOUBLE_EQ(q("0.22 mL", Dim::volume).canonical, 220.0);
  EXPECT_DOUBLE_EQ(q("5 uL", Dim::volume).canonical, 5.0);
  EXPECT_DOUBLE_EQ(q("5 \u00b5L", Dim::volume).canonical, 5.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(Concentration::canonical(q("10 mg/mL", Dim::concentration).canonical)), 10000.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(Concentration::canonical(q("25 mcg/mL", Dim::concentration).canonical)), 25.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_day(MassRate::canonical(q("1.5 mg/day", Dim::mass_rate).canonical)), 1500.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_day(MassRate::canonical(q("2.4 mcg/day", Dim::mass_rate).canonical)), 2.4);
  EXPECT_DOUBLE_EQ(to_mcg_per_h(MassRate::canonical(q("0.1 mcg/h", Dim::mass_rate).canonical)), 0.1);
  EXPECT_DOUBLE_EQ(to_uL_per_h(VolumeRate::canonical(q("1 mL/h", Dim::volume_rate).canonical)), 1000.0);
  EXPECT_DOUBLE_EQ(to_uL_per_h(VolumeRate::canonical(q("30 uL/h", Dim::volume_rate).canonical)), 30.0);
}

TEST(Quantity, DurationsAreExact) {
  EXPECT_EQ(q("30 min", Dim::duration).duration, minutes(30));
  EXPECT_EQ(q("1.5 h", Dim::duration).duration, minutes(90));
  EXPECT_EQ(q("2 d", Dim::duration).duration, days(2));
  EXPECT_EQ(q("0.000001 s", Dim::duration).duration, usec(1));
  EXPECT_EQ(q("0.1 ms", Dim::duration, Sign::positive, true).duration, usec(100));
  EXPECT_EQ(q("0.000000001 d", Dim::duration).error, "\"0.000000001 d\" is not a whole number of microseconds");
  EXPECT_EQ(q("0.0000001 s", Dim::duration).error, "\"0.0000001 s\" is not a whole number of microseconds");
  EXPECT_EQ(q("99999999999999999999 d", Dim::duration).error, "\"99999999999999999999 d\" is too large");
  EXPECT_EQ(q("1 ms", Dim::duration).error, "unit \"ms\" is not accepted here: expected a duration in s, min, h or d");
}

TEST(Quantity, NamedErrors) {
  EXPECT_EQ(q("10", Dim::concentration).error,
            "bare number \"10\" has no unit: expected a concentration in mg/mL or mcg/mL");
  EXPECT_EQ(q("10 mg/dL", Dim::concentration).error,
            "unknown unit \"mg/dL\": expected a concentration in mg/mL or mcg/mL");
  EXPECT_EQ(q("2 ml", Dim::volume).error, "unknown unit \"ml\" (units are case-sensitive: did you mean \"mL\"?)");
  EXPECT_EQ(q("2 mL", Dim::mass).error,
            "wrong dimension: \"2 mL\" is a volume, expected a mass in mg or mcg");
  EXPECT_EQ(q("nan mg", Dim::mass).error, "\"nan mg\" is not a number");
  EXPECT_EQ(q(".nan", Dim::mass).error, "\".nan\" is not a number");
  EXPECT_EQ(q("inf mg", Dim::mass).error, "\"inf mg\" is infinite");
  EXPECT_EQ(q("-.inf mg", Dim::mass).error, "\"-.inf mg\" is infinite");
  EXPECT_EQ(q("-1 mg", Dim::mass).error, "negative value \"-1 mg\": must be greater than zero");
  EXPECT_EQ(q("-1 s", Dim::duration, Sign::non_negative).error, "negative value \"-1 s\": must be zero or more");
  EXPECT_EQ(q("0 mg", Dim::mass).error, "zero value \"0 mg\": must be greater than zero");
  EXPECT_EQ(q("0.000 mg", Dim::mass).error, "zero value \"0.000 mg\": must be greater than zero");
  EXPECT_TRUE(q("0 s", Dim::duration, Sign::non_negative).ok);
  EXPECT_EQ(q("10mg", Dim::mass).error, "no space between number and unit in \"10mg\"");
  EXPECT_EQ(q(".5 mg", Dim::mass).error, "malformed number in \".5 mg\": write a leading zero (0.5, not .5)");
  EXPECT_EQ(q("5. mg", Dim::mass).error, "malformed quantity \"5. mg\": expected a number and a unit, like \"1.5 mg\"");
  EXPECT_EQ(q("1e3 mg", Dim::mass).error, "malformed quantity \"1e3 mg\": expected a number and a unit, like \"1.5 mg\"");
  EXPECT_EQ(q("+1 mg", Dim::mass).error, "malformed quantity \"+1 mg\": expected a number and a unit, like \"1.5 mg\"");
  EXPECT_EQ(q("", Dim::mass).error, "empty value: expected a mass in mg or mcg");
  EXPECT_EQ(q("1 mg ", Dim::mass).error, "unknown unit \"mg \": expected a mass in mg or mcg");
  EXPECT_EQ(q("123456789012345678901234567890123 mg", Dim::mass).error,
            "number in \"123456789012345678901234567890123 mg\" has too many digits");
}

TEST(Quantity, QuotedEscapesAndShortens) {
  EXPECT_EQ(in_quotes("a\"b\n"), "\"a\\\"b\\x0a\"");
  EXPECT_EQ(in_quotes(std::string(100, 'x')), "\"" + std::string(48, 'x') + "...\"");
}

}  // namespace
}  // namespace thecal::config
