#include "control/battery_model.hpp"
#include "control/step_accumulator.hpp"

#include <cmath>
#include <cstdint>
#include <random>

#include <gtest/gtest.h>

#include "control/time.hpp"

namespace thecal {
namespace {

struct Horizon {
  const char* name;
  double rate_uL_per_day;
  Duration cycle;
  Duration horizon;
};

// Steps issued over the horizon against the closed-form integral rate * T: |error| < 1 step
// at every cycle (SPEC S6), and the remainder stays in [0, 1).
class AccumulatorHorizon : public ::testing::TestWithParam<Horizon> {};

TEST_P(AccumulatorHorizon, ThirtyDaysWithinOneStep) {
  const auto p = GetParam();
  const Volume per_step = uL(0.25);
  StepAccumulator acc(per_step);
  const VolumeRate rate = uL_per_day(p.rate_uL_per_day);
  std::int64_t steps = 0;
  double worst = 0.0;
  Duration t{0};
  while (t < p.horizon) {
    steps += acc.add(rate * p.cycle);
    t += p.cycle;
    const double programmed_steps = (rate * t) / per_step;
    const double err = programmed_steps - static_cast<double>(steps);
    worst = std::max(worst, std::fabs(err));
    ASSERT_GE(err, -1e-6) << "issued more than programmed at t=" << to_seconds(t);
    ASSERT_LT(err, 1.0) << "fell a whole step behind at t=" << to_seconds(t);
  }
  const double expected = (rate * p.horizon) / per_step;
  EXPECT_NEAR(static_cast<double>(steps), expected, 1.0);
  EXPECT_GE(acc.remainder_steps(), -1e-9);
  EXPECT_LT(acc.remainder_steps(), 1.0);
  RecordProperty("worst_error_steps", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(
    Rates, AccumulatorHorizon,
    ::testing::Values(
        Horizon{"morphine_1_5mg_day_10mg_mL", 150.0, seconds(1), days(30)},
        Horizon{"ziconotide_2_4mcg_day_25mcg_mL", 96.0, seconds(1), days(30)},
        Horizon{"baclofen_high", 1600.0, seconds(1), days(30)},
        Horizon{"odd_rate_thirds", 1000.0 / 3.0, msec(7), days(30)},
        Horizon{"one_khz_loop_one_day", 150.0, msec(1), days(1)}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(StepAccumulator, JitteredCyclesStayExact) {
  // Real loops wake late: random cycle lengths must not bias the count.
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> jitter(500, 3000);
  const Volume per_step = uL(0.25);
  StepAccumulator acc(per_step);
  const VolumeRate rate = uL_per_h(37.0);
  std::int64_t steps = 0;
  Duration t{0};
  for (int i = 0; i < 5'000'000; ++i) {
    const Duration dt{jitter(rng)};
    steps += acc.add(rate * dt);
    t += dt;
  }
  const double programmed = (rate * t) / per_step;
  EXPECT_LT(programmed - static_cast<double>(steps), 1.0);
  EXPECT_GE(programmed - static_cast<double>(steps), -1e-6);
}

TEST(StepAccumulator, KeepsFractionalRemainder) {
  StepAccumulator acc(uL(0.25));
  EXPECT_EQ(acc.add(uL(0.1)), 0);
  EXPECT_EQ(acc.add(uL(0.1)), 0);
  EXPECT_EQ(acc.add(uL(0.1)), 1);  // 0.3 uL: one step, 0.05 uL kept
  EXPECT_NEAR(acc.remainder_steps(), 0.2, 1e-12);
  EXPECT_EQ(acc.add(uL(1.0)), 4);  // 1.05 uL: four steps
  EXPECT_NEAR(acc.remainder_steps(), 0.2, 1e-12);
}

TEST(StepAccumulator, ClosedFormDoesNotDependOnTheCuts) {
  // set_from(base, V) after any sequence of cuts of V gives the same steps and the same
  // fraction, bit for bit, and whole_in() foretells it without changing anything.
  const Volume per_step = uL(0.25);
  const double base = 0.37;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> piece(0.0, 0.9);
  StepAccumulator one(per_step);
  one.set_from(base, uL(0));
  StepAccumulator cut(per_step);
  cut.set_from(base, uL(0));
  double v = 0;
  std::int64_t whole_cut = 0;
  std::int64_t taken = 0;
  for (int i = 0; i < 1000; ++i) {
    v += piece(rng);
    const std::int64_t foretold = cut.whole_in(base, uL(v));
    const std::int64_t whole = cut.set_from(base, uL(v));
    EXPECT_EQ(whole, foretold);
    whole_cut += whole - taken;
    taken = whole;
  }
  const std::int64_t whole_one = one.set_from(base, uL(v));
  EXPECT_EQ(whole_cut, whole_one);
  EXPECT_EQ(cut.remainder_steps(), one.remainder_steps());
  // A single cut from the current remainder is add().
  StepAccumulator a(per_step);
  StepAccumulator b(per_step);
  EXPECT_EQ(a.add(uL(0.6)), b.set_from(0.0, uL(0.6)));
  EXPECT_EQ(a.add(uL(0.3)), b.set_from(b.remainder_steps(), uL(0.3)));
  EXPECT_EQ(a.remainder_steps(), b.remainder_steps());
}

TEST(BatteryModel, DrainDoesNotDependOnTheCycles) {
  BatteryModel one{BatteryParams{}};
  BatteryModel many{BatteryParams{}};
  one.drain(Duration{86'400'000'000LL}, 400);
  for (int i = 0; i < 86'400; ++i) many.drain(seconds(1), i % 216 == 0 ? 1 : 0);
  EXPECT_EQ(one.used_mAs(), many.used_mAs());
  EXPECT_EQ(many.used_after(seconds(5)), BatteryModel{BatteryParams{}}.used_after(Duration{86'405'000'000LL}) +
                                             BatteryParams{}.use_per_step_mAs * 400);
}

TEST(StepAccumulator, ResetDropsRemainder) {
  StepAccumulator acc(uL(0.25));
  EXPECT_EQ(acc.add(uL(0.2)), 0);
  acc.reset();
  EXPECT_EQ(acc.add(uL(0.2)), 0);
  EXPECT_NEAR(acc.remainder_steps(), 0.8, 1e-12);
}

}  // namespace
}  // namespace thecal
