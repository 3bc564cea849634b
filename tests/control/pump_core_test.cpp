#include "control/pump_core.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using test::continuous_plan;
using test::Harness;

TEST(PumpCore, ContinuousBasalDeliversTheProgrammedMass) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  h.ready(plan, false);
  const std::uint64_t primed_steps = h.steps_out;
  EXPECT_EQ(primed_steps, 880u);  // 220 uL / 0.25 uL
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  h.run(hours(24), msec(10));
  // 1.5 mg/day at 10 mg/mL = 150 uL = 600 steps; within one step.
  EXPECT_NEAR(static_cast<double>(h.steps_out - primed_steps), 600.0, 1.0);
  EXPECT_NEAR(to_mcg(h.st().total_delivered_mass), 1500.0, 2.5);
  EXPECT_NEAR(h.tip_mass_total, 1500.0, 2.5);
  EXPECT_NEAR(to_uL(h.st().reservoir), 20000.0 - 220.0 - 150.0, 0.25);
}

TEST(PumpCore, StartNeedsPrimedCatheter) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  const Reply r = h.send({.kind = CommandKind::start});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_EQ(h.core->state(), PumpState::idle);
}

TEST(PumpCore, OcclusionStopsTheMotorAndLatches) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(3), mg_per_mL(10));
  h.ready(plan);
  h.run(minutes(5));
  h.in.occlusion = true;
  h.cycle(msec(10));
  EXPECT_EQ(h.core->state(), PumpState::stopped);
  EXPECT_FALSE(h.out.motor_enable);
  EXPECT_EQ(h.out.steps, 0u);
  h.in.occlusion = false;
  h.run(seconds(1));
  EXPECT_TRUE(h.alarm(AlarmCode::occlusion));
  EXPECT_EQ(h.send({.kind = CommandKind::resume}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion}).ok());
  EXPECT_FALSE(h.alarm(AlarmCode::occlusion));
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

TEST(PumpCore, NoStepBeyondTheJournalBudget) {
  // A core whose journal granted 900 steps: priming takes 880, a day of basal would take
  // 600 more, but exactly 20 are issued and then it waits for the next grant (S7).
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{900}}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(220)}).ok());
  h.run(minutes(20));
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  h.run(hours(24), msec(10));
  EXPECT_EQ(h.steps_out, 900u);
  EXPECT_EQ(h.core->budget().count, 0);
  EXPECT_EQ(h.count(EventType::budget_exhausted), 1u);
  EXPECT_EQ(h.send({.kind = CommandKind::grant_budget, .steps = Steps{-1}}).refusal, Refusal::out_of_range);
}

}  // namespace
}  // namespace thecal

namespace thecal {
namespace {

TEST(PumpCore, CycleCostIsSmallAndFlat) {
  // Not a timed test (the bench label does that): records the cost of one tick at 1 ms
  // over 30 simulated minutes with a flex plan, a bolus and a full day in the ledger.
  test::Harness h;
  auto plan = test::flex_plan(mg(4));
  plan.periodic.push_back({hours(12), mcg(100), minutes(30)});
  h.ready(plan);
  h.run(days(1), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(300), .duration = minutes(20)}).ok());
  std::vector<std::int64_t> ns;
  ns.reserve(30 * 60 * 1000);
  for (int i = 0; i < 30 * 60 * 1000; ++i) {
    h.now.mono += msec(1);
    h.now.wall += msec(1);
    const auto t0 = std::chrono::steady_clock::now();
    h.core->tick(h.now, h.in, h.out);
    const auto t1 = std::chrono::steady_clock::now();
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    h.plant_pulse_acc += h.out.steps;
    h.in.encoder_pulses = static_cast<std::uint64_t>(h.plant_pulse_acc / 8);
    h.core->drain_events([](const Event&) {});
  }
  std::sort(ns.begin(), ns.end());
  const auto p999 = ns[ns.size() * 999 / 1000];
  std::cout << "tick ns: p50 " << ns[ns.size() / 2] << " p99.9 " << p999 << " max " << ns.back() << "\n";
  RecordProperty("tick_p999_ns", std::to_string(p999));
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

}  // namespace
}  // namespace thecal
