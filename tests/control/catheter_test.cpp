#include "control/catheter.hpp"

#include <gtest/gtest.h>

namespace thecal {
namespace {

TEST(Catheter, PrimingDeliversNoDrugUntilFull) {
  Catheter c(uL(220));
  EXPECT_FALSE(c.full());
  EXPECT_EQ(c.push(uL(200), mg_per_mL(10)), mcg(0));
  EXPECT_FALSE(c.full());
  // 20 uL more fills it exactly; 5 more push 5 uL of 10 mg/mL out: 50 mcg.
  EXPECT_EQ(c.push(uL(20), mg_per_mL(10)), mcg(0));
  EXPECT_TRUE(c.full());
  EXPECT_NEAR(to_mcg(c.push(uL(5), mg_per_mL(10))), 50.0, 1e-9);
}

TEST(Catheter, OldSolutionLeavesFirstAfterConcentrationChange) {
  Catheter c(uL(100));
  (void)c.push(uL(100), mg_per_mL(10));
  EXPECT_EQ(c.tip_concentration(mg_per_mL(20)), mg_per_mL(10));
  // New 20 mg/mL enters; the first 100 uL out are still 10 mg/mL.
  EXPECT_NEAR(to_mcg(c.push(uL(60), mg_per_mL(20))), 600.0, 1e-9);
  EXPECT_EQ(c.tip_concentration(mg_per_mL(20)), mg_per_mL(10));
  EXPECT_NEAR(to_mcg(c.push(uL(60), mg_per_mL(20))), 40 * 10 + 20 * 20.0, 1e-9);
  EXPECT_EQ(c.tip_concentration(mg_per_mL(20)), mg_per_mL(20));
}

TEST(Catheter, DryRunMatchesPush) {
  Catheter c(uL(50));
  (void)c.push(uL(50), mcg_per_mL(25));
  const Mass predicted = c.mass_out_if_pushed(uL(70), mcg_per_mL(100));
  EXPECT_NEAR(to_mcg(c.push(uL(70), mcg_per_mL(100))), to_mcg(predicted), 1e-12);
}

TEST(Catheter, VolumeForMassWalksSegments) {
  Catheter c(uL(100));
  (void)c.push(uL(100), mg_per_mL(1));  // 1 mcg/uL in the line
  // 150 mcg: 100 uL of the old (100 mcg) then 50 mcg of 2 mg/mL = 25 uL.
  EXPECT_NEAR(to_uL(c.volume_for_mass(mcg(150), mg_per_mL(2))), 125.0, 1e-9);
  Catheter empty(uL(100));
  EXPECT_NEAR(to_uL(empty.volume_for_mass(mcg(10), mg_per_mL(1))), 110.0, 1e-9);
}

TEST(Catheter, ManyConcentrationsKeepMass) {
  Catheter c(uL(1000));
  Mass in = mcg(0);
  for (int i = 1; i <= 40; ++i) {
    (void)c.push(uL(10), mcg_per_mL(i * 10.0));
    in += mcg_per_mL(i * 10.0) * uL(10);
  }
  EXPECT_LE(c.segments().size(), Catheter::kMaxSegments);
  Mass inside = mcg(0);
  for (const auto& s : c.segments()) inside += s.concentration * s.volume;
  EXPECT_NEAR(to_mcg(inside), to_mcg(in), 1e-9);
}

}  // namespace
}  // namespace thecal
