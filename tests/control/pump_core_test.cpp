#include "control/pump_core.hpp"

#include <gtest/gtest.h>

namespace thecal {
namespace {

TherapyPlan continuous_plan(MassRate rate, Concentration conc) {
  TherapyPlan p;
  p.id = "test";
  p.drug = "morphine";
  p.phase = Phase::maintenance;
  p.concentration = conc;
  p.reservoir_capacity = mL(20);
  p.low_alarm = mL(2);
  p.catheter_volume = uL(220);
  p.basal_mode = BasalMode::continuous;
  p.continuous_rate = rate;
  p.max_daily_dose = mg(3);
  return p;
}

class CoreFixture : public ::testing::Test {
 protected:
  Now now{mono_us(1'000'000), wall_us(1'790'000'000'000'000)};
  PumpCore core{BoardParams{}, now};
  SensorInputs in;
  Actuation out;
  std::uint64_t id = 0;
  std::uint64_t steps_out = 0;

  Reply send(Command c) {
    c.id = ++id;
    c.caller = {1000, true};
    return core.apply(c, now);
  }
  void run(Duration d, Duration cycle = msec(10)) {
    const MonoTime end = now.mono + d;
    while (now.mono < end) {
      now.mono += cycle;
      now.wall += cycle;
      core.tick(now, in, out);
      steps_out += out.steps;
    }
  }
  void ready(const TherapyPlan& plan) {
    Command load{.kind = CommandKind::load_prescription, .plan = &plan};
    ASSERT_TRUE(send(load).ok());
    Command refill{.kind = CommandKind::refill, .volume = mL(20)};
    ASSERT_TRUE(send(refill).ok());
    Command budget{.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}};
    ASSERT_TRUE(send(budget).ok());
    Command prime{.kind = CommandKind::prime, .volume = uL(220)};
    ASSERT_TRUE(send(prime).ok());
    run(minutes(20));
    ASSERT_EQ(core.state(), PumpState::idle);
    ASSERT_TRUE(core.status().catheter_primed);
    ASSERT_EQ(core.status().total_delivered_mass, mcg(0));
  }
};

TEST_F(CoreFixture, ContinuousBasalDeliversTheProgrammedMass) {
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  ready(plan);
  const std::uint64_t primed_steps = steps_out;
  EXPECT_EQ(primed_steps, 880u);  // 220 uL / 0.25 uL
  ASSERT_TRUE(send({.kind = CommandKind::start}).ok());
  run(hours(24));
  // 1.5 mg/day at 10 mg/mL = 150 uL = 600 steps; within one step.
  EXPECT_NEAR(static_cast<double>(steps_out - primed_steps), 600.0, 1.0);
  EXPECT_NEAR(to_mcg(core.status().total_delivered_mass), 1500.0, 2.5);
  EXPECT_NEAR(to_uL(core.status().reservoir), 20000.0 - 220.0 - 150.0, 0.25);
}

TEST_F(CoreFixture, StartNeedsPrimedCatheter) {
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  ASSERT_TRUE(send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  const Reply r = send({.kind = CommandKind::start});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_EQ(core.state(), PumpState::idle);
}

TEST_F(CoreFixture, OcclusionStopsTheMotorAndLatches) {
  const auto plan = continuous_plan(mg_per_day(3), mg_per_mL(10));
  ready(plan);
  ASSERT_TRUE(send({.kind = CommandKind::start}).ok());
  run(minutes(5));
  in.occlusion = true;
  run(msec(10));
  EXPECT_EQ(core.state(), PumpState::stopped);
  EXPECT_FALSE(out.motor_enable);
  EXPECT_EQ(out.steps, 0u);
  in.occlusion = false;
  run(seconds(1));
  EXPECT_TRUE(core.status().alarms[static_cast<std::size_t>(AlarmCode::occlusion)].active);
  EXPECT_EQ(send({.kind = CommandKind::resume}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion}).ok());
  EXPECT_FALSE(core.status().alarms[static_cast<std::size_t>(AlarmCode::occlusion)].active);
  ASSERT_TRUE(send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(core.state(), PumpState::infusing);
}

TEST_F(CoreFixture, NoStepBeyondTheJournalBudget) {
  // A core whose journal granted 900 steps: priming takes 880, a day of basal would take
  // 600 more, but exactly 20 are issued and then it waits for the next grant (S7).
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  ASSERT_TRUE(send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(send({.kind = CommandKind::grant_budget, .steps = Steps{900}}).ok());
  ASSERT_TRUE(send({.kind = CommandKind::prime, .volume = uL(220)}).ok());
  run(minutes(20));
  ASSERT_TRUE(send({.kind = CommandKind::start}).ok());
  run(hours(24));
  EXPECT_EQ(steps_out, 900u);
  EXPECT_EQ(core.budget().count, 0);
  EXPECT_EQ(send({.kind = CommandKind::grant_budget, .steps = Steps{-1}}).refusal, Refusal::out_of_range);
}

}  // namespace
}  // namespace thecal
