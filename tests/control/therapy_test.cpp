// Therapy rules (SPEC section 2, issue 4 item 1-4): one test per rule.
#include <cmath>

#include <gtest/gtest.h>

#include "control/local_time.hpp"
#include "control/pump_core.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using namespace thecal::test;  // NOLINT(google-build-using-namespace)

constexpr double kStepMass10 = 2.5;  // mcg in one 0.25 uL step at 10 mg/mL

TEST(Therapy, FlexBasalFollowsLocalTimeOfDay) {
  Harness h;
  const auto plan = flex_plan();
  h.ready(plan);
  run_until_wall(h, kMidnight0922, seconds(10));
  const double m0 = h.tip_mass_total;
  run_until_wall(h, kMidnight0922 + to_usec(hours(8)), seconds(1));
  const double m1 = h.tip_mass_total;
  run_until_wall(h, kMidnight0922 + to_usec(hours(20)), seconds(1));
  const double m2 = h.tip_mass_total;
  run_until_wall(h, kMidnight0922 + to_usec(hours(24)), seconds(1));
  const double m3 = h.tip_mass_total;
  EXPECT_NEAR(m1 - m0, 1000.0 * 8 / 24, kStepMass10);
  EXPECT_NEAR(m2 - m1, 2000.0 * 12 / 24, kStepMass10);
  EXPECT_NEAR(m3 - m2, 1200.0 * 4 / 24, kStepMass10);
  EXPECT_NEAR(m3 - m0, 1533.33, kStepMass10);
}

TEST(Therapy, CycleLengthDoesNotChangeDelivery) {
  // Flex steps, a periodic dose and a patient bolus: 100 ms, 1 s and 20 s cycles program
  // the same volume (within a step or two) because the core integrates between exact
  // boundaries, not per cycle.
  std::vector<double> totals;
  for (Duration cyc : {msec(100), seconds(1), seconds(20)}) {
    Harness h;
    auto plan = flex_plan();
    plan.periodic.push_back({hours(12) + minutes(7), mcg(100), minutes(30)});
    plan.patient_bolus = PatientBolusRule{mcg(50), minutes(10), hours(3), 4};
    h.ready(plan);
    run_until_wall(h, kMidnight0922 + to_usec(hours(9)) + 7, cyc);
    ASSERT_TRUE(h.send({.kind = CommandKind::patient_bolus}).ok());
    run_until_wall(h, kMidnight0922 + to_usec(hours(48)), cyc);
    totals.push_back(static_cast<double>(h.steps_out));
  }
  EXPECT_NEAR(totals[0], totals[1], 2.0);
  EXPECT_NEAR(totals[0], totals[2], 2.0);
}

TEST(Therapy, PeriodicBolusOncePerLocalDayAtItsTime) {
  Harness h;
  auto plan = flex_plan();
  plan.periodic.push_back({hours(12), mcg(100), minutes(30)});
  h.ready(plan);
  run_until_wall(h, kMidnight0922 + to_usec(days(5)), seconds(10));
  std::vector<Event> starts;
  for (const auto& e : h.events) {
    if (e.type == EventType::bolus_started && e.source == BolusSource::periodic) starts.push_back(e);
  }
  ASSERT_EQ(starts.size(), 5u);  // 09-22 .. 09-26 (09-21's 12:00 had passed at load)
  for (const auto& e : starts) {
    const LocalTime lt = local_time(plan, e.when);
    EXPECT_EQ(lt.time_of_day, hours(12)) << "exact instant, whatever the cycle";
  }
  std::size_t finished = 0;
  for (const auto& e : h.events) {
    if (e.type == EventType::bolus_finished && e.source == BolusSource::periodic) {
      ++finished;
      EXPECT_NEAR(to_mcg(e.mass), 100.0, 1e-6);
      EXPECT_EQ(e.duration, minutes(30));
    }
  }
  EXPECT_EQ(finished, 5u);
}

TEST(Therapy, PatientBolusDeliversItsDoseOverItsDuration) {
  Harness h;
  auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  plan.patient_bolus = PatientBolusRule{mcg(100), minutes(10), hours(3), 4};
  h.ready(plan);
  h.run(hours(1), seconds(1));
  const double before = h.tip_mass_total;
  const Reply r = h.send({.kind = CommandKind::patient_bolus}, false, 2000);
  ASSERT_TRUE(r.ok()) << r.message.view();
  EXPECT_EQ(r.dose, mcg(100));
  EXPECT_EQ(r.ends, h.now.wall + minutes(10));
  EXPECT_TRUE(h.st().bolus_active);
  h.run(minutes(10), seconds(1));
  EXPECT_FALSE(h.st().bolus_active);
  // 100 mcg bolus + 10 min of 1.2 mg/day basal = 108.33 mcg
  EXPECT_NEAR(h.tip_mass_total - before, 108.33, kStepMass10);
  EXPECT_EQ(h.count(EventType::bolus_started), 1u);
  EXPECT_EQ(h.count(EventType::bolus_finished), 1u);
  EXPECT_EQ(h.st().patient_boluses_24h, 1u);
  EXPECT_EQ(h.events.back().type, EventType::bolus_finished);
}

/// Key fields that a refused command must leave as they were.
struct Snapshot {
  PumpState state;
  std::uint32_t boluses;
  bool bolus_active;
  double reservoir;
  std::uint64_t steps;
  Duration next_bolus;
  explicit Snapshot(const Harness& h)
      : state(h.st().state),
        boluses(h.st().patient_boluses_24h),
        bolus_active(h.st().bolus_active),
        reservoir(to_uL(h.st().reservoir)),
        steps(h.st().steps_issued),
        next_bolus(h.st().next_patient_bolus - WallTime{}) {}
  bool operator==(const Snapshot&) const = default;
};

TEST(Therapy, PatientBolusRefusalsAreNamedAndChangeNothing) {
  Harness h;
  auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10), mg(2));
  plan.patient_bolus = PatientBolusRule{mcg(100), minutes(10), hours(1), 3};
  h.ready(plan, false);
  auto refused = [&](Refusal want) {
    SCOPED_TRACE(to_string(want));
    const Snapshot before(h);
    const std::size_t ev = h.count(EventType::command_refused);
    const Reply r = h.send({.kind = CommandKind::patient_bolus}, false, 2000);
    EXPECT_EQ(r.refusal, want) << r.message.view();
    EXPECT_FALSE(r.message.empty());
    EXPECT_EQ(Snapshot(h), before);
    EXPECT_EQ(h.count(EventType::command_refused), ev + 1);
  };
  refused(Refusal::invalid_state);  // idle: not infusing
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
  h.run(minutes(30), seconds(1));
  refused(Refusal::lockout_active);  // 30 min after the start of the last
  EXPECT_EQ(h.st().next_patient_bolus, h.now.wall + minutes(30));
  h.run(minutes(31), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
  h.run(hours(1) + seconds(1), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
  h.run(hours(1) + seconds(1), seconds(1));
  refused(Refusal::bolus_limit_reached);  // 3 in the last 24 h
  // A day later the count has rolled; a clinician bolus fills the rolling 24 h.
  h.run(hours(24), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(750), .duration = minutes(10)}).ok());
  h.run(hours(1), seconds(1));
  ASSERT_LT(h.st().patient_boluses_24h, 3u);
  refused(Refusal::daily_limit_reached);  // 1.2 mg basal + 0.75 + 0.1 > 2 mg
  // Suspend: not infusing.
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  refused(Refusal::invalid_state);
}

TEST(Therapy, PatientBolusRefusedWhenTheReservoirCannotHoldIt) {
  Harness h;
  auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  plan.low_alarm = uL(5);
  plan.patient_bolus = PatientBolusRule{mcg(500), minutes(10), hours(1), 3};
  h.ready(plan, true, uL(220 + 30));  // 30 uL left after priming: 300 mcg
  const Reply r = h.send({.kind = CommandKind::patient_bolus}, false);
  EXPECT_EQ(r.refusal, Refusal::reservoir_low);
}

TEST(Therapy, PatientBolusNeedsARule) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  EXPECT_EQ(h.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::invalid_state);
}

TEST(Therapy, ClinicianBolusWithinLimits) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10), mg(2)));
  const double nan = std::nan("");
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(nan), .duration = minutes(1)}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(-1), .duration = minutes(1)}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(10), .duration = Duration{0}}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mg(2.5), .duration = hours(1)}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mg(1.99), .duration = hours(1)}).refusal,
            Refusal::daily_limit_reached);
  // 400 uL in 1 s is beyond 400 steps/s x 0.25 uL
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mg(1), .duration = seconds(1)}).refusal, Refusal::out_of_range);
  const double before = h.tip_mass_total;
  const Reply r = h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(300), .duration = minutes(5)});
  ASSERT_TRUE(r.ok()) << r.message.view();
  EXPECT_EQ(r.ends, h.now.wall + minutes(5));
  EXPECT_EQ(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(10), .duration = minutes(5)}).refusal,
            Refusal::invalid_state);
  h.run(minutes(5), msec(100));
  EXPECT_NEAR(h.tip_mass_total - before, 300.0 + 1200.0 * 5 / 1440, kStepMass10);
}

TEST(Therapy, CancelBolusStopsIt) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  EXPECT_EQ(h.send({.kind = CommandKind::cancel_bolus}, false).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(300), .duration = minutes(10)}).ok());
  h.run(minutes(5), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::cancel_bolus}, false, 2000).ok());
  EXPECT_FALSE(h.st().bolus_active);
  const Event& fin = h.events.back();
  ASSERT_EQ(fin.type, EventType::bolus_finished);
  EXPECT_NEAR(to_mcg(fin.mass), 150.0, 1.0);
  EXPECT_EQ(fin.uid, 2000u);
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

TEST(Therapy, PrimingDeliversNoDrugUntilTheCatheterIsFull) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}}).ok());
  // More than the empty catheter: refused, the excess would reach the patient.
  EXPECT_EQ(h.send({.kind = CommandKind::prime, .volume = uL(300)}).refusal, Refusal::out_of_range);
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(100)}).ok());
  h.run(minutes(10), seconds(1));
  EXPECT_EQ(h.core->state(), PumpState::idle);
  EXPECT_FALSE(h.st().catheter_primed);
  EXPECT_EQ(h.send({.kind = CommandKind::start}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(120)}).ok());
  h.run(minutes(10), seconds(1));
  EXPECT_TRUE(h.st().catheter_primed);
  EXPECT_EQ(h.st().total_delivered_mass, mcg(0));
  EXPECT_EQ(h.tip_mass_total, 0.0);
  EXPECT_EQ(h.steps_out, 880u);
  // Full: a second prime is refused; a catheter revision (ReviseCatheter) empties it.
  EXPECT_EQ(h.send({.kind = CommandKind::prime, .volume = uL(220)}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(220)}).ok());
  EXPECT_EQ(h.count(EventType::catheter_revised), 1u);
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(220)}).ok());
  h.run(minutes(15), seconds(1));
  EXPECT_EQ(h.tip_mass_total, 0.0);
  EXPECT_TRUE(h.st().catheter_primed);
}

TEST(Therapy, SuspendTimedResumesByItselfOpenWaitsForResume) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend, .duration = hours(2)}).ok());
  EXPECT_EQ(h.st().suspended_until, h.now.wall + hours(2));
  const std::uint64_t s0 = h.steps_out;
  h.run(hours(2) - seconds(1), seconds(1));
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  EXPECT_EQ(h.steps_out, s0);
  h.run(seconds(2), seconds(1));
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  h.run(days(2), seconds(10));
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  EXPECT_EQ(h.send({.kind = CommandKind::suspend, .duration = Duration{-1}}).refusal, Refusal::out_of_range);
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

TEST(Therapy, RefillBridgeHoldsThePrescribedMassRate) {
  // 1.5 mg/day at 10 mg/mL, then a refill at 20 mg/mL.  The catheter (220 uL) still holds
  // the old solution: the pump must keep pushing 150 uL/day until the new solution reaches
  // the tip, then 75 uL/day.  The hourly mass at the tip (from the oracle's own catheter)
  // stays on the prescription throughout; a pump without the bridge would double it.
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.5), mg_per_mL(10));
  h.ready(plan);
  h.run(days(1), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  auto plan20 = plan;
  plan20.concentration = mg_per_mL(20);
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .plan = &plan20, .volume = mL(20), .withdrawn = uL(20000 - 220 - 150)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  const double per_6h = 1500.0 / 4;
  double worst = 0;
  for (int i = 0; i < 4 * 4; ++i) {  // four days in 6 h windows
    const double m0 = h.tip_mass_total;
    h.run(hours(6), seconds(10));
    const double got = h.tip_mass_total - m0;
    worst = std::max(worst, std::fabs(got - per_6h));
    EXPECT_NEAR(got, per_6h, 2 * 5.0) << "window " << i;  // a step at 20 mg/mL is 5 mcg
  }
  RecordProperty("worst_6h_error_mcg", std::to_string(worst));
  // And the volume rate did follow the tip: 150 uL/day first, 75 uL/day at the end.
  EXPECT_NEAR(to_uL_per_day(h.st().pump_rate), 75.0, 1e-6);
  EXPECT_EQ(h.count(EventType::refill), 2u);
}

TEST(Therapy, DailyLimitHoldsBasalBackAndDropsIt) {
  // Limit 2 mg, basal 1.5 mg/day; a 1 mg clinician bolus an hour in fits when given, but
  // about 15 h later basal would cross the rolling 24 h limit: it is held back (daily_limit
  // alarm), never delivered, until the bolus leaves the window.
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.5), mg_per_mL(10), mg(2)));
  h.run(hours(1), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mg(1), .duration = minutes(30)}).ok());
  double worst = 0;
  bool held = false;
  const std::uint64_t dropped0 = h.st().steps_dropped;
  for (int i = 0; i < 6 * 60 * 48; ++i) {
    h.cycle(seconds(10));
    const double s = h.truth.sum(to_usec(h.now.mono));
    worst = std::max(worst, s);
    ASSERT_LE(s, 2000.0 + 1e-6) << "S1 broken at cycle " << i;
    held = held || h.alarm(AlarmCode::daily_limit);
  }
  EXPECT_TRUE(held);
  EXPECT_GT(worst, 2000.0 - 5.0);
  EXPECT_GT(h.st().steps_dropped, dropped0);
  EXPECT_FALSE(h.alarm(AlarmCode::daily_limit)) << "the bolus has left the window";
  // Dropped, not owed: over the 48 h the pump delivered less basal than prescribed.
  EXPECT_LT(h.tip_mass_total, 1000.0 + 1500.0 * 49 / 24 - 50);
}

TEST(Therapy, ReservoirLowThenEmptyStopsAndRefillDue) {
  Harness h;
  auto plan = continuous_plan(mg_per_day(10), mg_per_mL(10));  // 1 mL/day
  plan.low_alarm = mL(1);
  plan.max_daily_dose = mg(12);
  plan.patient_bolus = PatientBolusRule{mcg(250), minutes(10), hours(3), 4};  // +1 mg/day
  h.ready(plan, true, uL(220 + 1500));
  // 1.5 mL over the low alarm... minus none; refill due: (1.5 - 1.0) mL / 1.1 mL/day.
  EXPECT_NEAR(to_seconds(h.st().refill_due - h.now.wall), 0.5 / 1.1 * 86400, 2.0);
  h.run(hours(13), seconds(10));
  EXPECT_TRUE(h.alarm(AlarmCode::reservoir_low));
  EXPECT_EQ(h.st().refill_due, h.now.wall);
  h.run(days(2), seconds(10));
  EXPECT_TRUE(h.alarm(AlarmCode::reservoir_empty));
  EXPECT_EQ(h.core->state(), PumpState::stopped);
  EXPECT_GE(to_uL(h.st().reservoir), 0.0);
  EXPECT_EQ(h.send({.kind = CommandKind::resume}).refusal, Refusal::reservoir_low);
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = uL(0)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::reservoir_empty}).ok());
  h.cycle(seconds(1));
  EXPECT_FALSE(h.alarm(AlarmCode::reservoir_empty));
  EXPECT_FALSE(h.alarm(AlarmCode::reservoir_low));
  EXPECT_EQ(h.core->state(), PumpState::stopped) << "delivery resumes only by Resume";
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  // The refill check: 1.72 mL filled, 0 measured back against an estimate of ~0.
  EXPECT_FALSE(h.alarm(AlarmCode::refill_discrepancy));
  EXPECT_TRUE(std::isfinite(h.st().refill_accuracy_percent));
  EXPECT_NEAR(h.st().refill_accuracy_percent, 100.0, 1.0);
}

TEST(Therapy, RefillDiscrepancyRaisesMediumAlarm) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(10), mg_per_mL(10), mg(12)));
  EXPECT_TRUE(std::isnan(h.st().refill_accuracy_percent) || h.st().refill_accuracy_percent > 0);
  h.run(days(3), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  // Estimate ~16.78 mL; the clinician measures 18.5 mL: 1.7 mL off, > max(1 mL, 15 % of 3.2 mL).
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = mL(18.5)}).ok());
  EXPECT_TRUE(h.alarm(AlarmCode::refill_discrepancy));
  EXPECT_LT(h.st().refill_accuracy_percent, 50.0);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::refill_discrepancy}, false).ok());
  EXPECT_FALSE(h.alarm(AlarmCode::refill_discrepancy));
}

TEST(Therapy, BatteryEriEosAndReplacement) {
  BoardParams b;
  b.battery.capacity_mAs = 3600.0 * 100;  // 100 h of quiescent use
  Harness h(b);
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  EXPECT_EQ(h.send({.kind = CommandKind::replace_battery}).refusal, Refusal::invalid_state);
  h.run(hours(86), seconds(10));  // 14 % left
  EXPECT_TRUE(h.alarm(AlarmCode::battery_eri));
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  h.run(hours(10), seconds(10));  // 4 % left
  EXPECT_EQ(h.core->state(), PumpState::end_of_service);
  EXPECT_TRUE(h.alarm(AlarmCode::battery_eos));
  const std::uint64_t s = h.steps_out;
  h.run(hours(2), seconds(10));
  EXPECT_EQ(h.steps_out, s);
  EXPECT_FALSE(h.out.motor_enable);
  ASSERT_TRUE(h.send({.kind = CommandKind::replace_battery}, true, 1234).ok());
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  EXPECT_FALSE(h.alarm(AlarmCode::battery_eos));
  EXPECT_FALSE(h.alarm(AlarmCode::battery_eri));
  EXPECT_DOUBLE_EQ(h.st().battery_percent, 100.0);
  EXPECT_EQ(h.count(EventType::battery_replaced), 1u);
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  h.run(hours(1), seconds(10));
  EXPECT_GT(h.steps_out, s);
}

TEST(Therapy, LowBatteryLineRaisesEri) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  h.in.low_battery = true;
  h.cycle(msec(1));
  EXPECT_TRUE(h.alarm(AlarmCode::battery_eri));
  h.in.low_battery = false;
  h.cycle(msec(1));
  EXPECT_FALSE(h.alarm(AlarmCode::battery_eri));
}

}  // namespace
}  // namespace thecal

namespace thecal {
namespace {

TEST(Therapy, BolusButtonPressIsAPatientRequestOncePerPress) {
  using namespace thecal::test;  // NOLINT(google-build-using-namespace)
  Harness h;
  auto plan = flex_plan();
  plan.patient_bolus = PatientBolusRule{mcg(50), minutes(10), hours(3), 4};
  h.ready(plan);
  h.run(minutes(5));
  auto count = [&](EventType t) {
    int n = 0;
    for (const auto& e : h.events) n += (e.type == t && e.uid == kBolusButtonUid) ? 1 : 0;
    return n;
  };
  // Press and hold for a minute: one bolus, from the button.
  h.in.bolus_button = true;
  h.run(minutes(1));
  h.in.bolus_button = false;
  h.run(seconds(10));
  EXPECT_EQ(count(EventType::bolus_started), 1);
  EXPECT_TRUE(h.core->status().bolus_active);
  EXPECT_EQ(h.core->status().patient_boluses_24h, 1u);
  // A second press inside the lockout: refused like a D-Bus request, nothing delivered.
  h.in.bolus_button = true;
  h.run(seconds(1));
  h.in.bolus_button = false;
  h.run(seconds(1));
  EXPECT_EQ(count(EventType::bolus_started), 1);
  EXPECT_EQ(count(EventType::command_refused), 1);
  EXPECT_EQ(h.core->status().patient_boluses_24h, 1u);
  // After the lockout, a press gives the next one.
  h.run(hours(3));
  h.in.bolus_button = true;
  h.run(seconds(1));
  h.in.bolus_button = false;
  EXPECT_EQ(count(EventType::bolus_started), 2);
}

}  // namespace
}  // namespace thecal
