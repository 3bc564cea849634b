// The replay's independent checker must be able to fail: each rule it re-checks, fed what a
// broken core would show, reports a violation; fed what a correct one shows, nothing.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "replay/checker.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal::replay {
namespace {

constexpr Now kT0{mono_us(1'000'000), wall_us(1'790'000'000'000'000)};
Now at(Duration d) { return Now{kT0.mono + d, kT0.wall + d}; }

struct Fixture {
  std::vector<Violation> v;
  Checker c{v};
  TherapyPlan plan = test::flex_plan(mg(3));
  Fixture() {
    plan.patient_bolus = PatientBolusRule{mg(0.1), minutes(10), hours(3), 2};
    c.begin_run(BoardParams{}, plan);
  }
  void patient_bolus(Duration t, PumpState before = PumpState::infusing) {
    io::Recorded r;
    r.kind = io::RecKind::command;
    r.cmd.kind = CommandKind::patient_bolus;
    c.command(r, Reply{}, before, at(t));
  }
  [[nodiscard]] bool has(const std::string& rule) const {
    for (const auto& x : v) {
      if (x.rule == rule) return true;
    }
    return false;
  }
};

TEST(Checker, S2LockoutCountAndStateOfAGrantedPatientBolus) {
  Fixture ok;
  ok.patient_bolus(hours(1));
  ok.patient_bolus(hours(4));
  EXPECT_TRUE(ok.v.empty());
  Fixture lockout;
  lockout.patient_bolus(hours(1));
  lockout.patient_bolus(hours(2));
  EXPECT_TRUE(lockout.has("S2"));
  Fixture count;
  for (int i = 0; i < 3; ++i) count.patient_bolus(hours(1 + 4 * i));
  EXPECT_TRUE(count.has("S2"));  // three in 24 h, max_per_day 2
  Fixture state;
  state.patient_bolus(hours(1), PumpState::suspended);
  EXPECT_TRUE(state.has("S2"));
}

TEST(Checker, S4NoStepMoreThanTwoCyclesAfterAStopCondition) {
  Fixture f;
  SensorInputs in;
  in.occlusion = true;
  f.c.sensors(in, 100, at(seconds(1)));
  f.c.steps(101, 101, 1, at(seconds(1)), false);  // within 2 periods: allowed
  EXPECT_TRUE(f.v.empty());
  f.c.steps(102, 102, 1, at(seconds(1)), false);
  EXPECT_TRUE(f.has("S4"));
  Fixture resumed;
  resumed.c.sensors(in, 100, at(seconds(1)));
  resumed.c.steps(200, 200, 1, at(seconds(2)), true);  // a Resume was granted: delivery again
  EXPECT_TRUE(resumed.v.empty());
}

TEST(Checker, S6FromTheStatus) {
  Fixture f;
  Status s;
  s.steps_issued = 100;
  s.programmed_volume = uL(25.0);
  f.c.status(s, at(seconds(1)));
  EXPECT_TRUE(f.v.empty());
  s.programmed_volume = uL(25.3);  // more than a step (0.25 uL) unaccounted for
  f.c.status(s, at(seconds(2)));
  EXPECT_TRUE(f.has("S6"));
}

// ---- S1 exact, per drug, from the checker's own plug-flow line ----------------------------

/// morphine 10 mg/mL (limit 3 mg) with bupivacaine 7.5 mg/mL (limit 1.5 mg): a step of
/// 0.25 uL gives 2.5 mcg of morphine and 1.875 mcg of bupivacaine once the 220 uL line is full.
TherapyPlan admixture_plan() {
  TherapyPlan p = test::flex_plan(mg(3));
  AdmixtureDrug bupivacaine;
  bupivacaine.name = "bupivacaine";
  bupivacaine.concentration = mg_per_mL(7.5);
  bupivacaine.max_daily_dose = mg(1.5);
  p.admixture.push_back(bupivacaine);
  return p;
}

struct Line {
  std::vector<Violation> v;
  Checker c{v};
  explicit Line(const TherapyPlan& p) {
    c.begin_run(BoardParams{}, p);
    c.cycle(at(seconds(0)), 880, BuzzerPattern::off);  // priming: 220 uL fill the empty line
  }
  [[nodiscard]] std::vector<const Violation*> of(const std::string& rule) const {
    std::vector<const Violation*> r;
    for (const auto& x : v) {
      if (x.rule == rule) r.push_back(&x);
    }
    return r;
  }
};

TEST(Checker, S1CountsEachDrugOfAnAdmixtureAgainstItsOwnLimit) {
  // Priming delivers nothing: the line only fills.
  Line fill(admixture_plan());
  EXPECT_DOUBLE_EQ(fill.c.total_mcg("morphine"), 0.0);
  // 1000 steps within 24 h: 2.5 mg of morphine (under 3 mg), 1.875 mg of bupivacaine (over
  // 1.5 mg): the admixture drug alone is over its limit, and that is reported.
  Line over(admixture_plan());
  for (int i = 1; i <= 1000; ++i) over.c.cycle(at(seconds(std::int64_t{60} * i)), 1, BuzzerPattern::off);
  ASSERT_EQ(over.of("S1").size(), 1U);
  EXPECT_NE(over.of("S1")[0]->what.find("bupivacaine"), std::string::npos) << over.of("S1")[0]->what;
  EXPECT_NEAR(over.c.total_mcg("morphine"), 2500.0, 1e-6);
  // 700 steps a day for two days: every drug within its limit in any 24 h.
  Line ok(admixture_plan());
  for (int i = 1; i <= 1400; ++i) ok.c.cycle(at(Duration{i * days(2).count() / 1400}), 1, BuzzerPattern::off);
  EXPECT_TRUE(ok.v.empty());
  EXPECT_NEAR(ok.c.total_mcg("bupivacaine"), 1400 * 1.875, 1e-6);
}

TEST(Checker, S1IsExactAtTheEdgeOfThe24HourWindow) {
  // 600 steps (1.125 mg of bupivacaine) at hour 1, then 240 steps (0.45 mg): 1.575 mg
  // when the second batch comes less than 24 h after the first, 0.45 mg when exactly 24 h.
  Line in(admixture_plan());
  in.c.cycle(at(hours(1)), 600, BuzzerPattern::off);
  in.c.cycle(at(hours(25) - usec(1)), 240, BuzzerPattern::off);
  EXPECT_EQ(in.of("S1").size(), 1U);
  Line out(admixture_plan());
  out.c.cycle(at(hours(1)), 600, BuzzerPattern::off);
  out.c.cycle(at(hours(25)), 240, BuzzerPattern::off);
  EXPECT_TRUE(out.v.empty());
  EXPECT_NEAR(out.c.window_mcg("bupivacaine"), 450.0, 1e-9);
}

TEST(Checker, S1CountsTheHistoryTheRunBeganWith) {
  // A restart: the core's state holds 2.9 mg of morphine in the minute before the run.
  CoreState st;
  st.plan = test::flex_plan(mg(3));
  st.mono = kT0.mono;
  st.reservoir_conc = mg_per_mL(10);
  st.reservoir = mL(10);
  st.catheter_capacity = uL(220);
  st.catheter.push_back({uL(220), mg_per_mL(10), {}});
  const std::int64_t minute = to_usec(kT0.mono) / to_usec(minutes(1)) - 1;
  st.ledger[0] = {minute, 2'900'000'000};  // picograms
  std::vector<Violation> v;
  Checker c(v);
  c.begin_run(BoardParams{}, st);
  c.cycle(at(hours(1)), 41, BuzzerPattern::off);  // 102.5 mcg more: 3.0025 mg in 24 h
  ASSERT_EQ(v.size(), 1U);
  EXPECT_EQ(v[0].rule, "S1");
  std::vector<Violation> v2;
  Checker c2(v2);
  c2.begin_run(BoardParams{}, st);
  c2.cycle(at(hours(24)), 41, BuzzerPattern::off);  // the history has left the window
  EXPECT_TRUE(v2.empty());
}

// ---- S3: the core's tip figures against the checker's own line ----------------------------

Status status_after(std::uint64_t steps, double tip_mcg, bool primed) {
  Status s;
  s.steps_issued = steps;
  s.programmed_volume = uL(0.25 * static_cast<double>(steps));
  s.total_delivered_mass = mcg(tip_mcg);
  s.catheter_primed = primed;
  return s;
}

io::Recorded refill_to(const TherapyPlan& p) {
  io::Recorded r;
  r.kind = io::RecKind::command;
  r.cmd.kind = CommandKind::refill;
  r.cmd.volume = mL(20);
  r.plan = std::make_shared<const TherapyPlan>(p);
  return r;
}

TEST(Checker, S3AfterARefillTheTipFollowsTheOldSolutionUntilTheLineIsFlushed) {
  TherapyPlan stronger = test::flex_plan(mg(30));
  stronger.concentration = mg_per_mL(20);
  // A correct core: 100 steps (25 uL) after the refill still carry 10 mcg/uL to the tip.
  Line good(test::flex_plan(mg(30)));
  good.c.command(refill_to(stronger), Reply{}, PumpState::infusing, at(seconds(1)));
  good.c.cycle(at(seconds(2)), 100, BuzzerPattern::off);
  good.c.status(status_after(980, 250.0, true), at(seconds(2)));
  EXPECT_TRUE(good.v.empty());
  // ... and only after the whole 220 uL (880 steps) the new one: 4 steps, 1 uL, 20 mcg.
  good.c.cycle(at(seconds(3)), 780, BuzzerPattern::off);
  good.c.cycle(at(seconds(4)), 4, BuzzerPattern::off);
  good.c.status(status_after(1764, 2200.0 + 20.0, true), at(seconds(4)));
  EXPECT_TRUE(good.v.empty()) << good.v[0].what;
  // A broken core counts the new concentration at once.
  Line broken(test::flex_plan(mg(30)));
  broken.c.command(refill_to(stronger), Reply{}, PumpState::infusing, at(seconds(1)));
  broken.c.cycle(at(seconds(2)), 100, BuzzerPattern::off);
  broken.c.status(status_after(980, 500.0, true), at(seconds(2)));
  EXPECT_EQ(broken.of("S3").size(), 1U);
}

TEST(Checker, S3TheBridgeRunsThePumpForTheConcentrationAtTheTip) {
  TherapyPlan stronger = test::flex_plan(mg(30));
  stronger.concentration = mg_per_mL(20);
  auto check = [&](double rate_ul_h) {
    Line l(test::flex_plan(mg(30)));
    l.c.command(refill_to(stronger), Reply{}, PumpState::infusing, at(seconds(1)));
    Status s = status_after(880, 0.0, true);
    s.state = PumpState::infusing;
    s.mass_rate = mcg_per_h(50);
    s.pump_rate = uL_per_h(rate_ul_h);
    l.c.status(s, at(seconds(2)));
    return l.of("S3").size();
  };
  EXPECT_EQ(check(5.0), 0U);  // 50 mcg/h from the old 10 mcg/uL still in the line
  EXPECT_EQ(check(2.5), 1U);  // already at the new 20 mcg/uL: half the prescribed mass
}

TEST(Checker, S3AfterACatheterRevisionTheTipGetsNothingUntilPrimed) {
  io::Recorded revise;
  revise.kind = io::RecKind::command;
  revise.cmd.kind = CommandKind::revise_catheter;
  revise.cmd.volume = uL(100);
  Line good(test::flex_plan());
  good.c.command(revise, Reply{}, PumpState::suspended, at(seconds(1)));
  good.c.status(status_after(880, 0.0, false), at(seconds(1)));
  good.c.cycle(at(seconds(2)), 399, BuzzerPattern::off);  // 99.75 uL: not primed yet
  good.c.status(status_after(1279, 0.0, true), at(seconds(2)));
  good.c.cycle(at(seconds(3)), 2, BuzzerPattern::off);  // full, then 0.25 uL at the tip
  good.c.status(status_after(1281, 2.5, true), at(seconds(3)));
  EXPECT_TRUE(good.v.empty()) << good.v[0].what;
  // A broken core that counts the priming as delivered.
  Line broken(test::flex_plan());
  broken.c.command(revise, Reply{}, PumpState::suspended, at(seconds(1)));
  broken.c.cycle(at(seconds(2)), 40, BuzzerPattern::off);
  broken.c.status(status_after(920, 100.0, false), at(seconds(2)));
  EXPECT_EQ(broken.of("S3").size(), 1U);
  // One that says the new catheter is primed while it is empty.
  Line lying(test::flex_plan());
  lying.c.command(revise, Reply{}, PumpState::suspended, at(seconds(1)));
  lying.c.status(status_after(880, 0.0, true), at(seconds(1)));
  EXPECT_EQ(lying.of("S3").size(), 1U);
}

// ---- S5: the buzzer's pattern, silence and its end --------------------------------------

Event alarm(EventType t, AlarmCode c, Duration when) {
  Event e;
  e.type = t;
  e.alarm = c;
  e.mono = kT0.mono + when;
  e.when = kT0.wall + when;
  return e;
}

TEST(Checker, S5TheLoudestUnsilencedAlarmSoundsAndSilenceEndsAfterTwoMinutes) {
  Fixture f;
  f.c.event(alarm(EventType::alarm_raised, AlarmCode::reservoir_low, seconds(10)));
  f.c.cycle(at(seconds(10)), 0, BuzzerPattern::medium);
  f.c.event(alarm(EventType::alarm_acknowledged, AlarmCode::reservoir_low, seconds(20)));
  f.c.cycle(at(seconds(20)), 0, BuzzerPattern::off);
  f.c.sound(at(seconds(139)), BuzzerPattern::off);                 // still within its 2 minutes
  f.c.cycle(at(seconds(140)), 0, BuzzerPattern::medium);           // sounds again: never permanent
  f.c.event(alarm(EventType::alarm_raised, AlarmCode::occlusion, seconds(150)));
  f.c.cycle(at(seconds(150)), 0, BuzzerPattern::high);             // the higher priority wins
  EXPECT_TRUE(f.v.empty()) << f.v[0].what;

  Fixture keeps;  // a buzzer that keeps sounding a silenced medium alarm
  keeps.c.event(alarm(EventType::alarm_raised, AlarmCode::reservoir_low, seconds(10)));
  keeps.c.cycle(at(seconds(10)), 0, BuzzerPattern::medium);
  keeps.c.event(alarm(EventType::alarm_acknowledged, AlarmCode::reservoir_low, seconds(20)));
  keeps.c.cycle(at(seconds(20)), 0, BuzzerPattern::medium);
  EXPECT_TRUE(keeps.has("S5"));

  Fixture forever;  // silence that never ends
  forever.c.event(alarm(EventType::alarm_raised, AlarmCode::reservoir_low, seconds(10)));
  forever.c.cycle(at(seconds(10)), 0, BuzzerPattern::medium);
  forever.c.event(alarm(EventType::alarm_acknowledged, AlarmCode::reservoir_low, seconds(20)));
  forever.c.cycle(at(seconds(20)), 0, BuzzerPattern::off);
  forever.c.sound(at(minutes(10)), BuzzerPattern::off);
  EXPECT_TRUE(forever.has("S5"));

  Fixture quiet;  // a medium pattern while a high alarm stands
  quiet.c.event(alarm(EventType::alarm_raised, AlarmCode::reservoir_low, seconds(10)));
  quiet.c.event(alarm(EventType::alarm_raised, AlarmCode::occlusion, seconds(10)));
  quiet.c.cycle(at(seconds(10)), 0, BuzzerPattern::medium);
  EXPECT_TRUE(quiet.has("S5"));

  Fixture cleared;  // sounding on after the alarm cleared
  cleared.c.event(alarm(EventType::alarm_raised, AlarmCode::daily_limit, seconds(10)));
  cleared.c.event(alarm(EventType::alarm_cleared, AlarmCode::daily_limit, seconds(11)));
  cleared.c.cycle(at(seconds(11)), 0, BuzzerPattern::medium);
  EXPECT_TRUE(cleared.has("S5"));
}

TEST(Checker, S8AWallClockStepMustBeLoggedAndS5AHighAlarmEndsABolus) {
  Fixture f;
  f.c.clock(at(seconds(1)));
  Now jumped = at(seconds(2));
  jumped.wall += seconds(5);
  f.c.clock(jumped);
  f.c.end_run();
  EXPECT_TRUE(f.has("S8"));
  Fixture logged;
  logged.c.clock(at(seconds(1)));
  logged.c.clock(jumped);
  Event j;
  j.type = EventType::wall_clock_jump;
  logged.c.event(j);
  logged.c.end_run();
  EXPECT_FALSE(logged.has("S8"));

  Fixture s5;
  Event e;
  e.type = EventType::bolus_started;
  e.source = BolusSource::clinician;
  e.mono = kT0.mono;
  s5.c.event(e);
  e.type = EventType::alarm_raised;
  e.alarm = AlarmCode::occlusion;
  e.mono = kT0.mono + seconds(1);
  s5.c.event(e);
  e.type = EventType::state_changed;
  e.mono = kT0.mono + seconds(2);
  s5.c.event(e);
  EXPECT_TRUE(s5.has("S5"));
  Fixture s5ok;
  e.type = EventType::bolus_started;
  e.mono = kT0.mono;
  s5ok.c.event(e);
  e.type = EventType::alarm_raised;
  e.mono = kT0.mono + seconds(1);
  s5ok.c.event(e);
  e.type = EventType::bolus_cancelled;
  s5ok.c.event(e);
  e.type = EventType::state_changed;
  e.mono = kT0.mono + seconds(2);
  s5ok.c.event(e);
  EXPECT_FALSE(s5ok.has("S5"));
}

}  // namespace
}  // namespace thecal::replay
