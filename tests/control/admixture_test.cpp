// Admixture (issue 16, SPEC 2, S1, S3): every drug of the solution is counted at the tip
// as the solution actually there, each against its own rolling-24 h limit.  The oracle is
// the harness's own: one plug-flow OracleCatheter per drug, fed with the steps the core
// issued and the concentrations the test put in the reservoir, and one exact rolling sum
// per drug.
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "tests/control/core_harness.hpp"

namespace thecal::test {
namespace {

constexpr Concentration kMorphine = mg_per_mL(10);

/// morphine 10 mg/mL at 4.8 mg/day (20 uL/h: the 220 uL catheter turns over in 11 h) with
/// bupivacaine at `bupi` and its own limit.
TherapyPlan mix_plan(Concentration bupi, Mass bupi_limit, Mass morphine_limit = mg(6)) {
  TherapyPlan p = continuous_plan(mg_per_day(4.8), kMorphine, morphine_limit);
  p.admixture.push_back(AdmixtureDrug{FixedString<32>{"bupivacaine"}, bupi, bupi_limit});
  return p;
}

/// The harness plus an independent second-drug oracle (bupivacaine).
struct Mix {
  Harness h;
  OracleCatheter bcath{220};
  OracleLedger btruth;
  double bupi_res = 0;  // mcg/uL in the reservoir, as the test filled it
  double bupi_total = 0;

  void cycle(Duration dt) {
    h.cycle(dt);
    if (h.out.steps > 0) {
      const double m = bcath.push(to_uL(h.board.volume_per_step) * h.out.steps, bupi_res);
      bupi_total += m;
      btruth.add(to_usec(h.now.mono), m);
    }
  }
  void run(Duration d, Duration step = seconds(10)) {
    const MonoTime end = h.now.mono + d;
    while (h.now.mono < end) cycle(std::min(step, end - h.now.mono));
  }
  /// Load, fill, prime (through this oracle too), start.
  void ready(const TherapyPlan& plan) {
    ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
    ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
    bupi_res = to_mg_per_mL(plan.admixture.at(0).concentration);
    ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{100'000'000}}).ok());
    ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
    run(hours(1), seconds(1));
    ASSERT_TRUE(h.st().catheter_primed);
    ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  }
  [[nodiscard]] const Status::DrugFigures& drug(std::size_t i) const { return h.st().drugs.at(i); }
};

TEST(Admixture, StatusListsEveryDrugPrimaryFirst) {
  Mix m;
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(10));
  m.ready(p);
  ASSERT_EQ(m.h.st().drugs.size(), 2U);
  EXPECT_EQ(m.drug(0).name.view(), "morphine");
  EXPECT_EQ(m.drug(0).concentration, kMorphine);
  EXPECT_EQ(m.drug(0).daily_limit, mg(6));
  EXPECT_EQ(m.drug(1).name.view(), "bupivacaine");
  EXPECT_EQ(m.drug(1).concentration, mg_per_mL(5));
  EXPECT_EQ(m.drug(1).daily_limit, mg(10));
  // Without admixture: one entry, the primary's figures.
  Harness plain;
  plain.ready(continuous_plan(mg_per_day(4.8), kMorphine, mg(6)));
  plain.run(hours(2), seconds(10));
  ASSERT_EQ(plain.st().drugs.size(), 1U);
  EXPECT_EQ(plain.st().drugs[0].delivered_24h, plain.st().delivered_24h);
  EXPECT_EQ(plain.st().drugs[0].daily_limit, plain.st().daily_limit);
}

TEST(Admixture, EachDrugsTipMassFollowsTheSolutionAtTheTipThroughAConcentrationChangeOfOneDrug) {
  Mix m;
  const TherapyPlan a = mix_plan(mg_per_mL(5), mg(10));
  m.ready(a);
  m.run(hours(6));
  // Both drugs in the ratio 5 : 10 of the first solution.
  EXPECT_NEAR(to_mcg(m.drug(0).delivered_24h), m.h.truth.sum(to_usec(m.h.now.mono)), 0.01);
  EXPECT_NEAR(to_mcg(m.drug(1).delivered_24h), m.btruth.sum(to_usec(m.h.now.mono)), 0.01);
  EXPECT_NEAR(to_mcg(m.drug(1).delivered_24h), 0.5 * to_mcg(m.drug(0).delivered_24h), 0.02);
  const double morphine_before = to_mcg(m.drug(0).delivered_24h);
  const double bupi_before = to_mcg(m.drug(1).delivered_24h);
  ASSERT_GT(bupi_before, 500.0);

  // Refill with a stronger bupivacaine at the same morphine concentration.
  const TherapyPlan b = mix_plan(mg_per_mL(7.5), mg(10));
  ASSERT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(m.h.send({.kind = CommandKind::refill, .plan = &b, .volume = mL(20), .withdrawn = m.h.st().reservoir}).ok());
  m.bupi_res = 7.5;
  ASSERT_TRUE(m.h.send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(m.drug(1).concentration, mg_per_mL(7.5));  // the reservoir's

  // The catheter (220 uL, 11 h at 20 uL/h) still holds the 5 mg/mL solution: for the next
  // 10 h the tip delivers bupivacaine at half the morphine mass, not three quarters.
  m.run(hours(10));
  const double morphine_10h = to_mcg(m.drug(0).delivered_24h) - morphine_before;
  const double bupi_10h = to_mcg(m.drug(1).delivered_24h) - bupi_before;
  EXPECT_NEAR(morphine_10h, 2000.0, 20.0);  // 4.8 mg/day: the bridge is not needed
  EXPECT_NEAR(bupi_10h, 0.5 * morphine_10h, 2.0);
  // Then the new solution reaches the tip: three quarters.
  m.run(hours(4));
  const double morphine_4h = to_mcg(m.drug(0).delivered_24h) - morphine_before - morphine_10h;
  const double bupi_4h = to_mcg(m.drug(1).delivered_24h) - bupi_before - bupi_10h;
  EXPECT_GT(bupi_4h, 0.55 * morphine_4h);
  // Every figure equals the independent oracle's (all within 24 h of the first drop).
  EXPECT_NEAR(to_mcg(m.drug(0).delivered_24h), m.h.truth.sum(to_usec(m.h.now.mono)), 0.01);
  EXPECT_NEAR(to_mcg(m.drug(1).delivered_24h), m.btruth.sum(to_usec(m.h.now.mono)), 0.01);
  EXPECT_NEAR(to_mcg(m.h.st().delivered_24h), to_mcg(m.drug(0).delivered_24h), 1e-9);
}

TEST(Admixture, ADrugAddedOrRemovedByARefillIsCountedOnlyWhileItIsAtTheTip) {
  Mix m;
  const TherapyPlan a = mix_plan(mg_per_mL(5), mg(10));
  m.ready(a);
  m.run(hours(2));
  // Removed: morphine alone from now on; bupivacaine still comes out of the catheter.
  const TherapyPlan plain = continuous_plan(mg_per_day(4.8), kMorphine, mg(6));
  ASSERT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(m.h.send({.kind = CommandKind::refill, .plan = &plain, .volume = mL(20), .withdrawn = m.h.st().reservoir}).ok());
  m.bupi_res = 0;
  ASSERT_TRUE(m.h.send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(m.h.st().drugs.size(), 1U);  // Drugs: the reservoir's solution
  const auto slot = [&]() -> const PumpCore::DrugSlot& {
    for (const auto& d : m.h.core->drug_slots()) {
      if (d.name.view() == "bupivacaine") return d;
    }
    throw std::logic_error("bupivacaine is not counted any more");
  };
  const double before = to_mcg(slot().ledger.sum(m.h.now.mono));
  m.run(hours(8));
  const double during = to_mcg(slot().ledger.sum(m.h.now.mono)) - before;
  EXPECT_NEAR(during, 0.5 * 20.0 * 8 * 10, 40.0);  // 8 h of the old solution at the tip
  m.run(hours(6));  // the line has turned over: no more bupivacaine
  const double after = to_mcg(slot().ledger.sum(m.h.now.mono)) - before - during;
  EXPECT_NEAR(after, 0.5 * 20.0 * 3 * 10, 10.0);  // the last 60 uL of it, then none
  EXPECT_NEAR(to_mcg(slot().ledger.sum(m.h.now.mono)), m.btruth.sum(to_usec(m.h.now.mono)), 0.01);

  // Added: clonidine joins; nothing of it reaches the tip until the line has turned over.
  TherapyPlan c = continuous_plan(mg_per_day(4.8), kMorphine, mg(6));
  c.admixture.push_back(AdmixtureDrug{FixedString<32>{"clonidine"}, mcg_per_mL(100), mcg(600)});
  ASSERT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(m.h.send({.kind = CommandKind::refill, .plan = &c, .volume = mL(20), .withdrawn = m.h.st().reservoir}).ok());
  ASSERT_TRUE(m.h.send({.kind = CommandKind::resume}).ok());
  ASSERT_EQ(m.h.st().drugs.size(), 2U);
  EXPECT_EQ(m.drug(1).name.view(), "clonidine");
  m.run(hours(10));
  EXPECT_EQ(m.drug(1).delivered_24h, mcg(0));
  m.run(hours(3));
  // The last 2 h at 20 uL/h of 100 mcg/mL.
  EXPECT_NEAR(to_mcg(m.drug(1).delivered_24h), 4.0, 0.3);
}

TEST(Admixture, BasalThatWouldTakeTheAdmixtureDrugPastItsLimitIsHeldBackAndTheAlarmNamesIt) {
  Mix m;
  // Bupivacaine reaches the tip at 2.4 mg/day: its 1 mg limit is reached after 10 h,
  // long before morphine's 6 mg.
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(1));
  m.ready(p);
  double worst = 0;
  bool held = false;
  for (int i = 0; i < 6 * 14; ++i) {  // 14 h in 10 min slices
    m.run(minutes(10));
    worst = std::max(worst, m.btruth.sum(to_usec(m.h.now.mono)));
    held = held || m.h.st().daily_limit_hold;
  }
  EXPECT_LE(worst, 1000.0 + 1e-6);  // S1 for the admixture drug, by the oracle
  EXPECT_GT(worst, 1000.0 - 2 * 5 * to_uL(m.h.board.volume_per_step));  // it did get there
  EXPECT_TRUE(held);
  EXPECT_TRUE(m.h.alarm(AlarmCode::daily_limit));
  EXPECT_LT(to_mcg(m.drug(0).delivered_24h), 2100.0);  // morphine stopped at twice bupivacaine
  bool named = false;
  for (const auto& e : m.h.events) {
    if (e.type == EventType::alarm_raised && e.alarm == AlarmCode::daily_limit) named = e.drug.view() == "bupivacaine";
  }
  EXPECT_TRUE(named);
  // As the first day's mass leaves the window, delivery goes on, never past the limit.
  for (int i = 0; i < 6 * 24; ++i) {
    m.run(minutes(10));
    worst = std::max(worst, m.btruth.sum(to_usec(m.h.now.mono)));
  }
  EXPECT_LE(worst, 1000.0 + 1e-6);
  EXPECT_GT(m.bupi_total, 1800.0);  // about 1 mg per rolling day
}

TEST(Admixture, PrimaryAtItsLimitNamesThePrimary) {
  Mix m;
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(10), mg(1));
  m.ready(p);
  m.run(hours(7));
  EXPECT_TRUE(m.h.alarm(AlarmCode::daily_limit));
  EXPECT_LE(m.h.truth.sum(to_usec(m.h.now.mono)), 1000.0 + 1e-6);
  std::string named;
  for (const auto& e : m.h.events) {
    if (e.type == EventType::alarm_raised && e.alarm == AlarmCode::daily_limit) named = std::string(e.drug.view());
  }
  EXPECT_EQ(named, "morphine");
}

TEST(Admixture, BolusesThatWouldTakeTheAdmixtureDrugPastItsLimitAreRefusedAndChangeNothing) {
  Mix m;
  TherapyPlan p = mix_plan(mg_per_mL(5), mg(1));
  p.patient_bolus = PatientBolusRule{mg(0.5), minutes(10), hours(1), 4};
  m.ready(p);
  m.run(hours(8));  // bupivacaine ~0.8 mg, morphine ~1.6 mg of 6 mg
  const Status before = m.h.st();
  ASSERT_GT(to_mcg(before.drugs[1].delivered_24h), 780.0);
  ASSERT_LT(to_mcg(before.drugs[1].delivered_24h), 820.0);
  // 0.5 mg morphine brings 0.25 mg bupivacaine, plus the basal over 10 min: above 1 mg.
  const std::size_t events = m.h.events.size();
  const Reply r = m.h.send({.kind = CommandKind::patient_bolus}, false);
  EXPECT_EQ(r.refusal, Refusal::daily_limit_reached);
  EXPECT_NE(std::string(r.message.view()).find("bupivacaine"), std::string::npos) << r.message.view();
  const Reply c = m.h.send({.kind = CommandKind::clinician_bolus, .dose = mg(0.5), .duration = minutes(10)});
  EXPECT_EQ(c.refusal, Refusal::daily_limit_reached);
  // Nothing changed: no bolus, no count, the same rate; only the two refusals logged.
  EXPECT_FALSE(m.h.st().bolus_active);
  EXPECT_EQ(m.h.st().patient_boluses_24h, before.patient_boluses_24h);
  EXPECT_EQ(m.h.st().mass_rate, before.mass_rate);
  EXPECT_EQ(m.h.events.size(), events + 2);
  EXPECT_EQ(m.h.count(EventType::command_refused), 2U);
  // NextPatientBolusUsec waits for room for bupivacaine too (morphine has room, no lockout).
  m.run(seconds(2), seconds(1));
  EXPECT_GT(m.h.st().next_patient_bolus, m.h.now.wall);
  // A smaller clinician bolus that fits both limits is accepted.
  const Reply ok = m.h.send({.kind = CommandKind::clinician_bolus, .dose = mg(0.2), .duration = minutes(10)});
  EXPECT_TRUE(ok.ok()) << ok.message.view();
}

TEST(Admixture, TheStateCarriesTheAdmixtureAndAStateWithoutItEncodesAsBefore) {
  Mix m;
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(10));
  m.ready(p);
  m.run(hours(3));
  auto s = std::make_unique<CoreState>();
  m.h.core->export_state(*s, m.h.now);
  const auto bytes = encode_core_state(*s);
  std::string err;
  const auto back = decode_core_state(std::string(bytes.begin(), bytes.end()), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(encode_core_state(*back), bytes);
  ASSERT_EQ(back->plan->admixture.size(), 1U);
  EXPECT_EQ(back->plan->admixture[0].concentration, mg_per_mL(5));
  // Restored into a new core: the same per-drug figures.
  Harness n;
  (void)n.core->restore_state(*back, RestoreClock{m.h.now, Duration{0}}, 0);
  ASSERT_EQ(n.st().drugs.size(), 2U);
  EXPECT_EQ(n.st().drugs[1].delivered_24h, m.drug(1).delivered_24h);
  EXPECT_EQ(n.st().drugs[1].concentration, mg_per_mL(5));

  // Without admixture there is no tail: the bytes end where format 1 always ended, so
  // journals written before issue 16 decode, and this one decodes on an older thecald.
  Harness plain;
  plain.ready(continuous_plan(mg_per_day(4.8), kMorphine, mg(6)));
  plain.run(hours(1), seconds(10));
  auto o = std::make_unique<CoreState>();
  plain.core->export_state(*o, plain.now);
  const auto old_bytes = encode_core_state(*o);
  auto with_tail = *o;  // same state, one admixture slot in use: only the tail is added
  with_tail.drug_slots[0].name = "clonidine";
  with_tail.drug_slots[0].limit = mcg(300);
  const auto new_bytes = encode_core_state(with_tail);
  ASSERT_GT(new_bytes.size(), old_bytes.size());
  EXPECT_TRUE(std::equal(old_bytes.begin(), old_bytes.end(), new_bytes.begin()));
  const auto old_back = decode_core_state(std::string(old_bytes.begin(), old_bytes.end()), &err);
  ASSERT_TRUE(old_back) << err;
  EXPECT_TRUE(old_back->drug_slots[0].name.empty());
  // A tail of an unknown version, or a damaged one, is refused whole.
  std::string bad(new_bytes.begin(), new_bytes.end());
  bad[old_bytes.size()] = 7;
  EXPECT_FALSE(decode_core_state(bad, &err));
  EXPECT_NE(err.find("admixture tail version"), std::string::npos) << err;
  const std::string cut(new_bytes.begin(), new_bytes.end() - 3);
  EXPECT_FALSE(decode_core_state(cut, &err));
}

TEST(Admixture, ALoadThatChangesTheAdmixtureInAFilledReservoirNeedsRefill) {
  Mix m;
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(10));
  m.ready(p);
  const TherapyPlan q = mix_plan(mg_per_mL(7.5), mg(10));
  ASSERT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  const Reply r = m.h.send({.kind = CommandKind::load_prescription, .plan = &q});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_EQ(m.drug(1).concentration, mg_per_mL(5));
  // Only the limit changes: no new solution, accepted.
  const TherapyPlan l = mix_plan(mg_per_mL(5), mg(8));
  EXPECT_TRUE(m.h.send({.kind = CommandKind::load_prescription, .plan = &l}).ok());
  EXPECT_EQ(m.drug(1).daily_limit, mg(8));
}

TherapyPlan with_admix(std::initializer_list<const char*> names, const char* primary = "morphine") {
  TherapyPlan p = continuous_plan(mg_per_day(4.8), kMorphine, mg(6));
  p.drug = primary;
  for (const char* n : names) p.admixture.push_back(AdmixtureDrug{FixedString<32>{n}, mg_per_mL(1), mg(10)});
  return p;
}

Reply refill_with(Mix& m, const TherapyPlan& p) {
  EXPECT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  const Reply r = m.h.send({.kind = CommandKind::refill, .plan = &p, .volume = mL(20), .withdrawn = m.h.st().reservoir});
  EXPECT_TRUE(m.h.send({.kind = CommandKind::resume}).ok());
  return r;
}

TEST(Admixture, ARefillNeedingMoreDrugSlotsThanFreeIsRefusedAndChangesNothing) {
  Mix m;
  const TherapyPlan a = with_admix({"d1", "d2", "d3"});
  m.ready(a);
  m.run(hours(1));
  const TherapyPlan b = with_admix({"d4", "d5", "d6"});
  ASSERT_TRUE(refill_with(m, b).ok());
  m.run(hours(1));
  // d1..d3 are still in the line and the last 24 h, d4..d6 in the reservoir: no slot left.
  const TherapyPlan c = with_admix({"d7"});
  const Reply r = refill_with(m, c);
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_NE(std::string(r.message.view()).find("too many drugs"), std::string::npos) << r.message.view();
  ASSERT_EQ(m.h.st().drugs.size(), 4U);
  EXPECT_EQ(m.drug(1).name.view(), "d4");
  // The last of d1..d3 left the tip 11 h after that refill: a day later their slots are
  // free again.
  m.run(hours(30), seconds(60));
  EXPECT_EQ(refill_with(m, c).refusal, Refusal::invalid_state);  // 31 h: still counted
  m.run(hours(6), seconds(60));
  EXPECT_TRUE(refill_with(m, c).ok());
  EXPECT_EQ(m.drug(1).name.view(), "d7");
}

TEST(Admixture, ADrugDoesNotChangeBetweenPrimaryAndAdmixtureWhileItIsCounted) {
  Mix m;
  const TherapyPlan a = mix_plan(mg_per_mL(5), mg(10));
  m.ready(a);
  m.run(hours(2));
  // Bupivacaine as the new primary: its admixture ledger still counts the last 2 h.
  const TherapyPlan b = with_admix({}, "bupivacaine");
  Reply r = refill_with(m, b);
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_NE(std::string(r.message.view()).find("new primary drug"), std::string::npos) << r.message.view();
  // Morphine into the admixture while the primary ledger counts it.
  const TherapyPlan c = with_admix({"morphine"}, "hydromorphone");
  r = refill_with(m, c);
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_NE(std::string(r.message.view()).find("old primary drug"), std::string::npos) << r.message.view();
  EXPECT_EQ(m.h.st().drug.view(), "morphine");
  EXPECT_EQ(m.drug(1).name.view(), "bupivacaine");
}

TEST(Admixture, TheCoreRefusesAnAdmixtureItCannotTrust) {
  Harness h;
  TherapyPlan p = with_admix({"morphine"});
  EXPECT_EQ(h.send({.kind = CommandKind::load_prescription, .plan = &p}).refusal, Refusal::invalid_prescription);
  p = with_admix({"d1", "d1"});
  EXPECT_EQ(h.send({.kind = CommandKind::load_prescription, .plan = &p}).refusal, Refusal::invalid_prescription);
  p = with_admix({"d1"});
  p.admixture[0].concentration = Concentration::canonical(std::nan(""));
  EXPECT_EQ(h.send({.kind = CommandKind::load_prescription, .plan = &p}).refusal, Refusal::invalid_prescription);
  p = with_admix({"d1"});
  p.admixture[0].max_daily_dose = mcg(0);
  EXPECT_EQ(h.send({.kind = CommandKind::load_prescription, .plan = &p}).refusal, Refusal::invalid_prescription);
  EXPECT_FALSE(h.st().has_prescription);
}

TEST(Admixture, ADamagedAdmixtureTailIsRefused) {
  Mix m;
  const TherapyPlan p = mix_plan(mg_per_mL(5), mg(10));
  m.ready(p);
  m.run(hours(1));
  auto good = std::make_unique<CoreState>();
  m.h.core->export_state(*good, m.h.now);
  auto refused = [&](auto&& damage, const char* why) {
    auto s = std::make_unique<CoreState>(*good);
    damage(*s);
    const auto b = encode_core_state(*s);
    std::string err;
    EXPECT_FALSE(decode_core_state(std::string(b.begin(), b.end()), &err)) << why;
    EXPECT_NE(err.find(why), std::string::npos) << err;
  };
  refused([](CoreState& s) { s.plan_slots[0] = static_cast<std::uint8_t>(kDrugSlots); }, "bad admixture slot");
  refused([](CoreState& s) { s.plan_slots[0] = 5; }, "outside its slot");
  refused([](CoreState& s) { s.reservoir_admix[0] = mg_per_mL(-1); }, "negative or not finite");
  refused([](CoreState& s) { s.catheter.back().admix[0] = Concentration::canonical(std::nan("")); },
          "negative or not finite");
  refused([](CoreState& s) { s.drug_slots[0].limit = Mass::canonical(std::numeric_limits<double>::infinity()); },
          "negative or not finite");
}

}  // namespace
}  // namespace thecal::test

namespace thecal::test {
namespace {

// Issue 16 remainder: Drugs shows every drug at the prescription's concentration while the
// reservoir waits for its first fill, after a first Load and after an import (pump
// replacement) alike; the admixture drugs showed 0 mcg/mL after an import.
TEST(Admixture, BeforeTheFirstFillEveryDrugShowsThePrescriptionsConcentrationAfterALoadAndAfterAnImport) {
  TherapyPlan p = mix_plan(mg_per_mL(5), mg(10));
  p.admixture.push_back(AdmixtureDrug{FixedString<32>{"clonidine"}, mcg_per_mL(150), mcg(900)});
  auto check = [&](const Status& s, const char* when) {
    ASSERT_EQ(s.drugs.size(), 3U) << when;
    EXPECT_EQ(s.reservoir, uL(0)) << when;
    EXPECT_EQ(s.drugs[0].name.view(), "morphine") << when;
    EXPECT_EQ(s.drugs[0].concentration, kMorphine) << when;
    EXPECT_EQ(s.concentration, kMorphine) << when;
    EXPECT_EQ(s.drugs[1].name.view(), "bupivacaine") << when;
    EXPECT_EQ(s.drugs[1].concentration, mg_per_mL(5)) << when;
    EXPECT_EQ(s.drugs[2].name.view(), "clonidine") << when;
    EXPECT_EQ(s.drugs[2].concentration, mcg_per_mL(150)) << when;
    EXPECT_EQ(s.drugs[2].daily_limit, mcg(900)) << when;
  };
  Harness fresh;
  ASSERT_TRUE(fresh.send({.kind = CommandKind::load_prescription, .plan = &p}).ok());
  check(fresh.st(), "after a first load");

  // A unit that has run on it, suspended and exported; a new unit imports it.
  Mix m;
  m.ready(p);
  m.run(hours(3));
  ASSERT_TRUE(m.h.send({.kind = CommandKind::suspend}).ok());
  auto exported = std::make_unique<CoreState>();
  m.h.core->export_state(*exported, m.h.now);
  const auto bytes = encode_core_state(*exported);
  std::string err;
  auto in = decode_core_state(std::string(bytes.begin(), bytes.end()), &err);  // as the document carries it
  ASSERT_TRUE(in) << err;
  Harness b;
  b.now.wall = m.h.now.wall + minutes(10);
  b.cycle(seconds(1));
  ASSERT_TRUE(b.send({.kind = CommandKind::import_therapy, .state_in = &*in}).ok());
  check(b.st(), "after an import");
  EXPECT_EQ(b.st().drugs[1].delivered_24h, m.drug(1).delivered_24h);  // the ledger came along
  // The first Refill (withdrawn 0) fills it with the same solution: nothing moves.
  ASSERT_TRUE(b.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = uL(0)}).ok());
  EXPECT_EQ(b.st().drugs[1].concentration, mg_per_mL(5));
  EXPECT_EQ(b.st().drugs[2].concentration, mcg_per_mL(150));
}

}  // namespace
}  // namespace thecal::test
