// The replay's independent checker must be able to fail: each rule it re-checks, fed what a
// broken core would show, reports a violation; fed what a correct one shows, nothing.
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

TEST(Checker, S6AndS1FromTheStatus) {
  Fixture f;
  Status s;
  s.steps_issued = 100;
  s.programmed_volume = uL(25.0);
  s.total_delivered_mass = mcg(0);
  f.c.status(s, at(seconds(1)));
  EXPECT_TRUE(f.v.empty());
  s.programmed_volume = uL(25.3);  // more than a step (0.25 uL) unaccounted for
  f.c.status(s, at(seconds(2)));
  EXPECT_TRUE(f.has("S6"));

  Fixture s1;
  Status t;
  for (int h = 0; h <= 24; ++h) {
    t.total_delivered_mass = mcg(130.0 * h);  // 3.12 mg in 24 h against a 3 mg limit
    s1.c.status(t, at(hours(h)));
  }
  EXPECT_TRUE(s1.has("S1"));
  Fixture s1ok;
  for (int h = 0; h <= 48; ++h) {
    t.total_delivered_mass = mcg(120.0 * h);  // 2.88 mg in any 24 h
    s1ok.c.status(t, at(hours(h)));
  }
  EXPECT_FALSE(s1ok.has("S1"));
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
