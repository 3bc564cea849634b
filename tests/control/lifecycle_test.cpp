// Over the implant's life (issue 11): the refill check's figures, battery replacement and
// the core's side of pump replacement (import of another unit's exported state).
#include <cmath>

#include <gtest/gtest.h>

#include "tests/control/core_harness.hpp"

namespace thecal::test {
namespace {

TherapyPlan bolus_plan() {
  TherapyPlan p = continuous_plan(mg_per_day(1.0), mg_per_mL(10), mg(3));
  p.patient_bolus = PatientBolusRule{mg(0.1), minutes(10), hours(3), 4};
  return p;
}

const Event* last(const Harness& h, EventType t) {
  for (auto it = h.events.rbegin(); it != h.events.rend(); ++it) {
    if (it->type == t) return &*it;
  }
  return nullptr;
}

TEST(RefillCheck, EventCarriesBothFiguresAndTheToleranceAndRaisesTheAlarmAfterIt) {
  Harness h;
  const TherapyPlan plan = continuous_plan(mg_per_day(20), mg_per_mL(10), mg(30));
  h.ready(plan);
  h.run(days(2), seconds(10));  // ~4 mL pumped
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  const Volume estimate = h.st().reservoir;
  const Volume pumped = h.st().pumped_since_refill;
  // The plant pumped 30 % more than commanded: the residual is lower than the estimate.
  const Volume measured = mL(20) - pumped * 1.3;
  h.events.clear();
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = measured}).ok());
  const Event* e = last(h, EventType::refill);
  ASSERT_NE(e, nullptr);
  EXPECT_NEAR(to_uL(e->estimate), to_uL(estimate), 1e-6);
  EXPECT_NEAR(to_uL(e->volume2), to_uL(measured), 1e-6);
  EXPECT_NEAR(to_uL(e->pumped), to_uL(pumped), 1e-6);
  EXPECT_NEAR(to_uL(e->tolerance), std::max(1000.0, 0.15 * to_uL(pumped)), 1e-6);
  EXPECT_TRUE(e->flagged);
  EXPECT_NEAR(e->percent, 130.0, 0.01);
  EXPECT_NEAR(h.st().refill_accuracy_percent, 130.0, 0.01);
  EXPECT_TRUE(h.alarm(AlarmCode::refill_discrepancy));
  // The refill record comes before the alarm it caused.
  std::size_t refill_at = 0, alarm_at = 0;
  for (std::size_t i = 0; i < h.events.size(); ++i) {
    if (h.events[i].type == EventType::refill) refill_at = i;
    if (h.events[i].type == EventType::alarm_raised && h.events[i].alarm == AlarmCode::refill_discrepancy) alarm_at = i;
  }
  EXPECT_LT(refill_at, alarm_at);
}

TEST(RefillCheck, AFewPercentIsWithinToleranceButShowsInTheAccuracy) {
  Harness h;
  const TherapyPlan plan = continuous_plan(mg_per_day(20), mg_per_mL(10), mg(30));
  h.ready(plan);
  h.run(days(2), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  const Volume pumped = h.st().pumped_since_refill;
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = mL(20) - pumped * 0.95}).ok());
  const Event* e = last(h, EventType::refill);
  ASSERT_NE(e, nullptr);
  EXPECT_FALSE(e->flagged);
  EXPECT_FALSE(h.alarm(AlarmCode::refill_discrepancy));
  EXPECT_NEAR(h.st().refill_accuracy_percent, 95.0, 0.01);
}

TEST(BatteryReplacement, RefusedWhileDeliveringAndChangesNothing) {
  Harness h;
  h.ready(bolus_plan());
  h.run(hours(5), seconds(10));
  const double used = h.st().battery_used_mAs;
  ASSERT_GT(used, 0.0);
  const Reply r = h.send({.kind = CommandKind::replace_battery});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  EXPECT_DOUBLE_EQ(h.st().battery_used_mAs, used);
}

/// A second unit's core, fresh, at its own clocks (monotonic unrelated to the first's).
struct Fresh {
  Harness h;
  Fresh() {
    h.now = Now{mono_us(5'000'000), h.now.wall};
    h.core = std::make_unique<PumpCore>(h.board, h.now);
    EXPECT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{100'000'000}}).ok());
  }
};

TEST(PumpImport, KeepsLockoutCountAndLedgerAndStartsEmptyAndIdle) {
  Harness a;
  const TherapyPlan plan = bolus_plan();
  a.ready(plan);
  a.run(hours(6), seconds(10));
  ASSERT_TRUE(a.send({.kind = CommandKind::patient_bolus}, false).ok());
  a.run(minutes(30), seconds(10));
  const Mass delivered = a.st().delivered_24h;
  ASSERT_GT(delivered, mcg(100));
  auto exported = std::make_unique<CoreState>();
  a.core->export_state(*exported, a.now);

  Fresh b;
  b.h.now.wall = a.now.wall + minutes(20);  // the handover took 20 minutes of wall time
  b.h.cycle(seconds(1));
  const double battery = b.h.st().battery_used_mAs;
  auto in = std::make_unique<CoreState>(*exported);
  const Reply r = b.h.send({.kind = CommandKind::import_therapy, .state_in = in.get()});
  ASSERT_TRUE(r.ok()) << r.message.c_str();
  const Status& s = b.h.st();
  EXPECT_EQ(b.h.core->state(), PumpState::idle);
  EXPECT_EQ(s.reservoir, uL(0));
  EXPECT_TRUE(std::isnan(s.refill_accuracy_percent));
  EXPECT_EQ(s.patient_boluses_24h, 1u);
  EXPECT_GE(s.delivered_24h, delivered);  // never less than the old unit counted
  EXPECT_LE(s.delivered_24h, delivered + mcg(1));
  EXPECT_TRUE(s.catheter_primed);  // the catheter stays with the patient, full
  EXPECT_EQ(s.steps_issued, 0u);   // this unit's own counters
  EXPECT_NEAR(s.battery_used_mAs, battery, 1e-9);  // this unit's battery, not the old one's
  // The lockout lasts at least as long as on the old unit: refill, start, ask.
  ASSERT_TRUE(b.h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = uL(0)}).ok());
  ASSERT_TRUE(b.h.send({.kind = CommandKind::start}).ok());
  EXPECT_EQ(b.h.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::lockout_active);
  // After the old unit's lockout end (+ the assumed zero handover) it is allowed again.
  b.h.run(hours(3) - minutes(30) + minutes(1), seconds(10));
  EXPECT_TRUE(b.h.send({.kind = CommandKind::patient_bolus}, false).ok());
}

TEST(PumpImport, RefusedOnAUnitWithHistoryOrNotIdleAndChangesNothing) {
  Harness a;
  a.ready(bolus_plan());
  a.run(hours(1), seconds(10));
  auto exported = std::make_unique<CoreState>();
  a.core->export_state(*exported, a.now);

  // A unit that has pumped (the old one itself).
  Harness b;
  b.ready(bolus_plan(), false);
  const auto before = b.st();
  auto in = std::make_unique<CoreState>(*exported);
  EXPECT_EQ(b.send({.kind = CommandKind::import_therapy, .state_in = in.get()}).refusal, Refusal::invalid_state);
  EXPECT_EQ(b.st().steps_issued, before.steps_issued);
  EXPECT_EQ(b.st().reservoir, before.reservoir);
  // Infusing.
  EXPECT_EQ(a.send({.kind = CommandKind::import_therapy, .state_in = in.get()}).refusal, Refusal::invalid_state);
  EXPECT_EQ(a.core->state(), PumpState::infusing);
  // A fresh unit that was filled already.
  Fresh c;
  const TherapyPlan plan = bolus_plan();
  ASSERT_TRUE(c.h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(c.h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  EXPECT_EQ(c.h.send({.kind = CommandKind::import_therapy, .state_in = in.get()}).refusal, Refusal::invalid_state);
  EXPECT_EQ(c.h.st().reservoir, mL(20));
}

TEST(PumpExport, OnlyWhileThePumpCannotDeliverByItself) {
  Harness h;
  EXPECT_EQ(h.send({.kind = CommandKind::export_therapy}).refusal, Refusal::invalid_state);  // no prescription
  h.ready(bolus_plan());
  EXPECT_EQ(h.send({.kind = CommandKind::export_therapy}).refusal, Refusal::invalid_state);  // infusing
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend, .duration = hours(1)}).ok());
  EXPECT_EQ(h.send({.kind = CommandKind::export_therapy}).refusal, Refusal::invalid_state);  // resumes by itself
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  EXPECT_TRUE(h.send({.kind = CommandKind::export_therapy}).ok());
  EXPECT_EQ(h.core->state(), PumpState::suspended);
}

TEST(PumpImport, OldBatteryAlarmsStayBehindTherapyAlarmsCome) {
  Harness a;
  a.ready(bolus_plan());
  a.run(hours(1), seconds(10));
  ASSERT_TRUE(a.send({.kind = CommandKind::suspend}).ok());
  const Volume pumped = a.st().pumped_since_refill;
  ASSERT_TRUE(a.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = mL(20) - pumped - mL(5)}).ok());
  ASSERT_TRUE(a.alarm(AlarmCode::refill_discrepancy));
  auto exported = std::make_unique<CoreState>();
  a.core->export_state(*exported, a.now);
  exported->alarms[static_cast<std::size_t>(AlarmCode::battery_eri)].active = true;
  Fresh b;
  auto in = std::make_unique<CoreState>(*exported);
  ASSERT_TRUE(b.h.send({.kind = CommandKind::import_therapy, .state_in = in.get()}).ok());
  EXPECT_TRUE(b.h.alarm(AlarmCode::refill_discrepancy));
  EXPECT_FALSE(b.h.alarm(AlarmCode::battery_eri));
}

}  // namespace
}  // namespace thecal::test
