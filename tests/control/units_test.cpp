#include "control/units.hpp"

#include <type_traits>

#include <gtest/gtest.h>

namespace thecal {
namespace {

// mg/mcg and mL/uL mix-ups must not compile: no conversion between dimensions, and no way
// in from a bare double but a function that names the unit.
static_assert(!std::is_convertible_v<Mass, Volume>);
static_assert(!std::is_convertible_v<Volume, Mass>);
static_assert(!std::is_convertible_v<double, Mass>);
static_assert(!std::is_constructible_v<Mass, double>);
static_assert(!std::is_convertible_v<MassRate, Mass>);
static_assert(!std::is_convertible_v<Concentration, MassRate>);
static_assert(std::is_same_v<decltype(Mass{} / Concentration{}), Volume>);
static_assert(std::is_same_v<decltype(Concentration{} * Volume{}), Mass>);
static_assert(std::is_same_v<decltype(MassRate{} * Duration{}), Mass>);
static_assert(std::is_same_v<decltype(MassRate{} / Concentration{}), VolumeRate>);
static_assert(std::is_same_v<decltype(mg(1) / mcg(1)), double>);

TEST(Units, MassConversions) {
  EXPECT_DOUBLE_EQ(to_mcg(mg(1.5)), 1500.0);
  EXPECT_DOUBLE_EQ(to_mg(mcg(250)), 0.25);
  EXPECT_EQ(mg(1), mcg(1000));
}

TEST(Units, VolumeAndConcentration) {
  EXPECT_DOUBLE_EQ(to_uL(mL(0.22)), 220.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(mg_per_mL(10)), 10000.0);
  // 10 mg/mL x 0.25 uL = 2.5 mcg
  EXPECT_DOUBLE_EQ(to_mcg(mg_per_mL(10) * uL(0.25)), 2.5);
  // 1 mg / (10 mg/mL) = 0.1 mL = 100 uL
  EXPECT_DOUBLE_EQ(to_uL(mg(1) / mg_per_mL(10)), 100.0);
  // ziconotide scale: 25 mcg/mL, 2.4 mcg -> 96 uL
  EXPECT_NEAR(to_uL(mcg(2.4) / mcg_per_mL(25)), 96.0, 1e-9);
}

TEST(Units, RatesTimesDurations) {
  EXPECT_NEAR(to_mcg(mg_per_day(1.5) * days(1)), 1500.0, 1e-9);
  EXPECT_NEAR(to_mcg(mcg_per_h(0.8) * hours(24)), 19.2, 1e-9);
  EXPECT_NEAR(to_uL(mL_per_h(1) * minutes(30)), 500.0, 1e-9);
  EXPECT_NEAR(to_mcg_per_day(mcg_per_h(1)), 24.0, 1e-12);
  // 1.5 mg/day at 10 mg/mL = 150 uL/day
  EXPECT_NEAR(to_uL_per_day(mg_per_day(1.5) / mg_per_mL(10)), 150.0, 1e-9);
}

TEST(Units, DurationHelpers) {
  EXPECT_EQ(to_usec(minutes(10)), 600'000'000);
  EXPECT_EQ(days(1), hours(24));
  EXPECT_DOUBLE_EQ(to_seconds(msec(1500)), 1.5);
}

TEST(Units, NonFiniteIsDetectable) {
  EXPECT_FALSE(mcg(std::numeric_limits<double>::quiet_NaN()).is_finite());
  EXPECT_FALSE(uL(std::numeric_limits<double>::infinity()).is_finite());
  EXPECT_TRUE(uL(1).is_finite());
}

}  // namespace
}  // namespace thecal
