// Safety supervisor (S4, S5), clocks (S8) and the state machine table.
#include <array>
#include <fstream>
#include <optional>
#include <set>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "control/buzzer.hpp"
#include "control/pump_core.hpp"
#include "control/state_machine.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using namespace thecal::test;  // NOLINT(google-build-using-namespace)

enum class Fault { occlusion, disconnect, driver_fault, hardware, stall, empty };

struct FaultCase {
  const char* name;
  Fault fault;
  AlarmCode code;
};

class HighAlarm : public ::testing::TestWithParam<FaultCase> {};

TEST_P(HighAlarm, StopsTheMotorWithinTwoCyclesLatchesAndCancelsTheBolus) {
  const auto& p = GetParam();
  Harness h;
  auto plan = continuous_plan(mg_per_day(10), mg_per_mL(10), mg(20));
  h.ready(plan, true, p.fault == Fault::empty ? uL(220 + 80) : mL(20));
  const bool with_bolus = p.fault != Fault::empty;  // the empty case runs dry on basal
  if (with_bolus) {
    ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(300), .duration = minutes(30)}).ok());
  }
  // Each cycle is one loop period.  The test's own oracle says when a stall or an empty
  // reservoir arose: for a stall, the cycle whose steps bring the steps issued since the
  // core last saw a new encoder pulse to stall_pulses x steps_per_encoder_pulse; for an
  // empty reservoir, the cycle whose steps leave less than one step in it (fill less every
  // step the motor made).  S4: the motor is stopped within 2 loop periods of that cycle.
  const Duration period = h.board.loop_period;
  const auto stall_steps = static_cast<std::uint64_t>(h.board.stall_pulses) * h.board.steps_per_encoder_pulse;
  const double vps = to_uL(h.board.volume_per_step);
  const double fill = to_uL(p.fault == Fault::empty ? uL(220 + 80) : mL(20));
  std::uint64_t unconfirmed = 0;  // steps since the last cycle that brought a new pulse
  std::uint64_t seen_pulses = h.in.encoder_pulses;
  auto one_cycle = [&] {
    const std::uint64_t pulses_in = h.in.encoder_pulses;  // what this tick reads
    h.cycle(period);
    if (pulses_in != seen_pulses) {
      seen_pulses = pulses_in;
      unconfirmed = 0;
    }
    unconfirmed += h.out.steps;
  };
  for (int i = 0; i < 60'000; ++i) one_cycle();  // a minute of delivery first
  ASSERT_GT(h.out.steps + h.steps_out, 0u);
  ASSERT_EQ(h.core->state(), PumpState::infusing);
  switch (p.fault) {
    case Fault::occlusion: h.in.occlusion = true; break;
    case Fault::disconnect: h.in.disconnect = true; break;
    case Fault::driver_fault: h.in.driver_fault = true; break;
    case Fault::hardware: h.in.hardware_ok = false; break;
    case Fault::stall: h.encoder_works = false; break;
    case Fault::empty: break;
  }
  // Stall and empty need the motor to run into them; the sensor faults act at once.
  std::optional<int> cause_at;     // cycle in which the cause arose
  std::optional<int> stopped_at;   // first cycle with the motor disabled and no step
  int cycles = 0;
  while (!stopped_at && cycles < 10'000'000) {
    one_cycle();
    ++cycles;
    if (!h.out.motor_enable && h.out.steps == 0) stopped_at = cycles;
    if (cause_at) continue;
    if (p.fault == Fault::stall && unconfirmed >= stall_steps) cause_at = cycles;
    if (p.fault == Fault::empty && fill - vps * static_cast<double>(h.steps_out) < vps) cause_at = cycles;
    if (p.fault != Fault::stall && p.fault != Fault::empty) cause_at = 0;  // the input is there from the start
  }
  ASSERT_TRUE(stopped_at) << "the motor never stopped";
  ASSERT_TRUE(cause_at) << "stopped before its cause (cycle " << *stopped_at << ")";
  if (p.fault != Fault::stall && p.fault != Fault::empty) {
    EXPECT_EQ(*stopped_at, 1) << "same cycle as the input";
  } else {
    EXPECT_LE(*stopped_at - *cause_at, 2) << "S4: at most 2 loop periods after the cause (cycle " << *cause_at << ")";
    EXPECT_GE(*stopped_at, *cause_at) << "not before its cause";
  }
  EXPECT_EQ(h.core->state(), PumpState::stopped);
  EXPECT_EQ(h.out.steps, 0u);
  EXPECT_FALSE(h.out.motor_enable);
  EXPECT_TRUE(h.alarm(p.code));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::high);
  EXPECT_FALSE(h.st().bolus_active) << "a high alarm cancels the bolus";
  EXPECT_EQ(h.count(EventType::bolus_cancelled), with_bolus ? 1u : 0u);
  EXPECT_GE(to_uL(h.st().reservoir), 0.0);
  const std::uint64_t s = h.steps_out;
  h.run(minutes(1), msec(10));
  EXPECT_EQ(h.steps_out, s);
  // Patient may not acknowledge a high alarm; the clinician may.
  EXPECT_EQ(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = p.code}, false).refusal, Refusal::access_denied);
  // Remove the cause; the alarm stays latched until acknowledged.
  h.in = SensorInputs{.encoder_pulses = h.in.encoder_pulses};
  h.encoder_works = true;
  if (p.fault == Fault::empty) {
    ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(10)}).ok());
  }
  h.run(seconds(5), msec(10));
  EXPECT_TRUE(h.alarm(p.code));
  EXPECT_EQ(h.send({.kind = CommandKind::resume}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = p.code}).ok());
  h.cycle(msec(10));
  EXPECT_FALSE(h.alarm(p.code));
  EXPECT_EQ(h.core->state(), PumpState::stopped) << "delivery resumes only by Resume";
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  h.run(minutes(30), seconds(1));
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  EXPECT_GT(h.steps_out, s);
}

INSTANTIATE_TEST_SUITE_P(S4, HighAlarm,
                         ::testing::Values(FaultCase{"occlusion", Fault::occlusion, AlarmCode::occlusion},
                                           FaultCase{"disconnect", Fault::disconnect, AlarmCode::disconnect},
                                           FaultCase{"driver_fault", Fault::driver_fault, AlarmCode::driver_fault},
                                           FaultCase{"hardware", Fault::hardware, AlarmCode::hardware_fault},
                                           FaultCase{"stall", Fault::stall, AlarmCode::motor_stall},
                                           FaultCase{"empty", Fault::empty, AlarmCode::reservoir_empty}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Safety, DisconnectOnlyWhileDelivering) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  h.in.disconnect = true;  // pressure low: normal while the catheter fills or nothing flows
  h.ready(plan, false);
  EXPECT_FALSE(h.alarm(AlarmCode::disconnect));
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  h.cycle(msec(1));
  EXPECT_TRUE(h.alarm(AlarmCode::disconnect));
  EXPECT_EQ(h.core->state(), PumpState::stopped);
}

TEST(Safety, AcknowledgeSilencesAtMostTwoMinutesWhileTheCausePersists) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  h.in.occlusion = true;
  h.cycle(msec(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion}).ok());
  EXPECT_TRUE(h.alarm(AlarmCode::occlusion)) << "cause persists: still active";
  h.run(seconds(119), msec(50));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::off);
  h.run(seconds(2), msec(50));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::high) << "silence is never permanent";
  h.in.occlusion = false;
  h.cycle(msec(10));
  EXPECT_FALSE(h.alarm(AlarmCode::occlusion)) << "acknowledged and cause gone";
}

TEST(Safety, MediumAlarmsPatientMayAcknowledgeAndTheyClearByThemselves) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(1.2), mg_per_mL(10)));
  h.in.low_battery = true;
  h.cycle(msec(10));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::medium);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::battery_eri}, false).ok());
  h.cycle(msec(10));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::off);
  EXPECT_EQ(h.core->state(), PumpState::infusing) << "medium alarms do not stop delivery";
  h.in.low_battery = false;
  h.cycle(msec(10));
  EXPECT_FALSE(h.alarm(AlarmCode::battery_eri));
  EXPECT_EQ(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::battery_eri}).refusal, Refusal::out_of_range);
}

TEST(Safety, BuzzerCadencesAreDistinctPerPriority) {
  auto profile = [](BuzzerPattern p) {
    int on = 0;
    int edges = 0;
    bool prev = false;
    for (int ms = 0; ms < 120'000; ms += 10) {
      const bool b = buzzer_level(p, mono_us(0), mono_us(ms * 1000LL));
      on += b ? 1 : 0;
      edges += (b && !prev) ? 1 : 0;
      prev = b;
    }
    return std::pair{on, edges};
  };
  const auto hi = profile(BuzzerPattern::high);
  const auto me = profile(BuzzerPattern::medium);
  const auto lo = profile(BuzzerPattern::low);
  EXPECT_EQ(profile(BuzzerPattern::off), (std::pair{0, 0}));
  EXPECT_EQ(hi.second, 200);  // 10 pulses every 6 s
  EXPECT_EQ(me.second, 45);   // 3 pulses every 8 s
  EXPECT_EQ(lo.second, 8);    // 2 pulses every 30 s
  EXPECT_GT(hi.first, me.first);
  EXPECT_GT(me.first, lo.first);
}

TEST(Safety, FlowDeviationFromTheEncoder) {
  for (double gain : {0.97, 0.80, 1.25}) {
    Harness h;
    h.ready(continuous_plan(mg_per_day(20), mg_per_mL(10), mg(25)));  // 2 mL/day
    h.plant_gain = gain;
    h.run(hours(6), seconds(1));
    EXPECT_EQ(h.alarm(AlarmCode::flow_deviation), gain != 0.97) << "gain " << gain;
    EXPECT_EQ(h.core->state(), PumpState::infusing) << "medium: delivery goes on";
  }
}

// S5 pins the flow monitor to "more than 10 % over 15 minutes".  A fast basal (1 mg/mL at
// 300 mg/day: 13.9 steps/s, 12,500 steps per window) makes the one-pulse allowance (8 steps)
// and the pulse quantization at the window's ends (another 8) small next to 0.3 % of a
// window (37 steps), so gains 0.3 % either side of the threshold fall clearly on each side.
TherapyPlan fast_flow_plan() {
  auto plan = continuous_plan(mg_per_day(300), mg_per_mL(1), mg(400));
  plan.reservoir_capacity = mL(1000);
  return plan;
}

TEST(Safety, FlowDeviationThresholdIsTenPercent) {
  struct Case {
    double gain;
    bool alarm;
  };
  for (const Case c : {Case{0.903, false}, Case{0.897, true}, Case{1.097, false}, Case{1.103, true}}) {
    Harness h;
    h.ready(fast_flow_plan(), true, mL(1000));
    h.plant_gain = c.gain;  // after priming: every window from the second on is all at this gain
    h.run(hours(1) + minutes(5), seconds(1));
    EXPECT_EQ(h.core->state(), PumpState::infusing);
    EXPECT_EQ(h.alarm(AlarmCode::flow_deviation), c.alarm) << "gain " << c.gain;
    if (!c.alarm) {
      EXPECT_EQ(h.count(EventType::alarm_raised), 0u) << "gain " << c.gain << ": never raised";
    }
  }
}

TEST(Safety, FlowDeviationIsJudgedOverFifteenMinutesOfDelivery) {
  // A plant at half the commanded flow raises the alarm at the end of a window; from then on
  // it pumps right, and the alarm clears at the end of the next window: exactly 15 minutes
  // of delivery later (one 1 s cycle of slack), not a cycle sooner.
  Harness h;
  h.ready(fast_flow_plan(), true, mL(1000));
  h.plant_gain = 0.5;
  int n = 0;
  while (!h.alarm(AlarmCode::flow_deviation) && n++ < 3600) h.cycle(seconds(1));
  ASSERT_TRUE(h.alarm(AlarmCode::flow_deviation));
  const MonoTime raised = h.now.mono;
  h.plant_gain = 1.0;
  while (h.alarm(AlarmCode::flow_deviation) && h.now.mono - raised < hours(1)) h.cycle(seconds(1));
  EXPECT_FALSE(h.alarm(AlarmCode::flow_deviation));
  EXPECT_GE(h.now.mono - raised, minutes(15)) << "judged before 15 minutes of delivery";
  EXPECT_LE(h.now.mono - raised, minutes(15) + seconds(1)) << "judged over more than 15 minutes";
  // Delivery that is suspended does not count towards the window.
  h.plant_gain = 0.5;
  n = 0;
  while (!h.alarm(AlarmCode::flow_deviation) && n++ < 3600) h.cycle(seconds(1));
  ASSERT_TRUE(h.alarm(AlarmCode::flow_deviation));
  h.plant_gain = 1.0;
  const MonoTime raised2 = h.now.mono;
  h.run(minutes(5), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  h.run(minutes(30), seconds(1));
  EXPECT_TRUE(h.alarm(AlarmCode::flow_deviation)) << "a suspended pump delivers nothing to judge";
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  while (h.alarm(AlarmCode::flow_deviation) && h.now.mono - raised2 < hours(2)) h.cycle(seconds(1));
  EXPECT_GE(h.now.mono - raised2, minutes(15 + 30));
  EXPECT_LE(h.now.mono - raised2, minutes(15 + 30) + seconds(2));
}

TEST(Safety, StateLostFromTheDaemonBlocksStartUntilAcknowledged) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  h.ready(plan, false);
  ASSERT_TRUE(h.send({.kind = CommandKind::raise_alarm, .alarm = AlarmCode::state_lost}).ok());
  EXPECT_EQ(h.send({.kind = CommandKind::raise_alarm, .alarm = AlarmCode::occlusion}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.send({.kind = CommandKind::start}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::state_lost}).ok());
  EXPECT_TRUE(h.send({.kind = CommandKind::start}).ok());
}

// ---- clocks (S8) ---------------------------------------------------------------------

TEST(Clock, TrialEndsByItselfAndAWallJumpBackCannotExtendIt) {
  for (Duration jump : {Duration{0}, -days(1), -hours(5), days(1)}) {
    Harness h;
    auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
    plan.phase = Phase::trial;
    plan.trial_ends = h.now.wall + days(2);
    const MonoTime end_mono = h.now.mono + days(2);
    h.ready(plan);
    EXPECT_EQ(h.st().trial_ends, *plan.trial_ends);
    h.run(hours(12), seconds(10));
    h.cycle(seconds(1), jump);
    while (h.core->state() == PumpState::infusing && h.now.mono < end_mono + days(2)) h.cycle(seconds(10));
    EXPECT_EQ(h.core->state(), PumpState::trial_finished);
    EXPECT_TRUE(h.alarm(AlarmCode::trial_finished));
    EXPECT_EQ(h.count(EventType::trial_finished), 1u);
    // Ends by the earlier of the wall and the monotonic clock.
    const MonoTime expected = jump > Duration{0} ? end_mono - jump : end_mono;
    EXPECT_GE(h.now.mono, expected);
    EXPECT_LE(h.now.mono, expected + seconds(10)) << "one cycle at most";
    const std::uint64_t s = h.steps_out;
    h.run(hours(6), seconds(10));
    EXPECT_EQ(h.steps_out, s);
    EXPECT_EQ(h.send({.kind = CommandKind::start}).refusal, Refusal::invalid_state);
    // A maintenance prescription takes over: idle, then Start.
    auto maint = plan;
    maint.phase = Phase::maintenance;
    maint.trial_ends.reset();
    ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &maint}).ok());
    EXPECT_EQ(h.core->state(), PumpState::idle);
    ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  }
}

struct JumpCase {
  const char* name;
  Duration at;    // after local midnight of 09-22
  Duration jump;  // wall clock step
};

class WallJump : public ::testing::TestWithParam<JumpCase> {};

TEST_P(WallJump, IsLoggedAndNeverCausesExtraDelivery) {
  // Flex basal, a periodic dose at 12:00 and one at 21:00, over four days; the same run
  // with the wall clock stepped once must not deliver more than the undisturbed reference,
  // beyond one step (the two runs' step accumulators may stand a fraction apart), and no
  // periodic dose may ever fire twice within 22 h of monotonic time.
  //
  // What "the same therapy" is depends on the direction.  A clock set back repeats a
  // stretch of the schedule while time really passes: compared at the same monotonic
  // time.  A clock set forward skips a stretch of the schedule: the pump is then J ahead
  // of the reference on the wall clock, so it is compared with the reference at the same
  // *wall* time (the reference runs J longer); comparing at the same monotonic time would
  // charge the jumped pump with the next J of its (legitimately earlier) schedule.
  struct Result {
    std::uint64_t steps;
    std::size_t periodic;
    std::size_t jumps;
    Duration min_spacing;
  };
  auto run = [](Duration jump, Duration at, Duration extra) {
    Harness h;
    auto plan = flex_plan(mg(4));
    plan.periodic.push_back({hours(12), mcg(100), minutes(30)});
    plan.periodic.push_back({hours(21), mcg(80), minutes(20)});
    h.ready(plan);
    run_until_wall(h, kMidnight0922 + to_usec(at), seconds(10));
    h.cycle(seconds(10), jump);
    h.run(days(4) + extra, seconds(10));
    Result r{h.steps_out, 0, h.count(EventType::wall_clock_jump), days(365)};
    std::array<std::optional<MonoTime>, 2> last{};
    for (const auto& e : h.events) {
      if (e.type != EventType::bolus_started) continue;
      ++r.periodic;
      if (last[e.index]) r.min_spacing = std::min(r.min_spacing, e.mono - *last[e.index]);
      last[e.index] = e.mono;
    }
    return r;
  };
  const auto& p = GetParam();
  const bool forward = p.jump > Duration{0};
  const Result ref = run(Duration{0}, p.at, forward ? p.jump : Duration{0});
  const Result got = run(p.jump, p.at, Duration{0});
  EXPECT_EQ(ref.jumps, 0u);
  EXPECT_EQ(got.jumps, 1u) << "the jump is logged";
  EXPECT_LE(got.steps, ref.steps + 1) << "no extra delivery (at most one step of accumulator phase)";
  EXPECT_LE(got.periodic, ref.periodic) << "no extra periodic dose";
  EXPECT_GE(got.min_spacing, PumpCore::kPeriodicMinSpacing) << "never twice within 22 h";
  // A clock set forward skips the doses of the skipped stretch (the first one due is
  // given at once, no catch-up of the others); otherwise at most one day's doses are lost.
  const auto skipped_days = static_cast<std::size_t>(forward ? p.jump / days(1) : 0);
  EXPECT_GE(got.periodic + 2 + 2 * skipped_days, ref.periodic) << "no more doses lost than the clock skipped";
}

TEST_P(WallJump, FlexBasalIsNeverAboveTheUndisturbedRunForADay) {
  // Without periodic doses, for the 24 h after a jump in either direction the flex basal
  // is the lower of the rates by the new and by the old clock: at every monotonic time
  // the jumped pump has delivered at most one step more than the undisturbed one.
  auto run = [](Duration jump, Duration at, std::vector<std::uint64_t>& hourly) {
    Harness h;
    h.ready(flex_plan(mg(4)));
    run_until_wall(h, kMidnight0922 + to_usec(at), seconds(10));
    h.cycle(seconds(10), jump);
    for (int i = 0; i < 23; ++i) {
      h.run(hours(1), seconds(10));
      hourly.push_back(h.steps_out);
    }
    return h.count(EventType::wall_clock_jump);
  };
  const auto& p = GetParam();
  std::vector<std::uint64_t> ref;
  std::vector<std::uint64_t> got;
  EXPECT_EQ(run(Duration{0}, p.at, ref), 0u);
  EXPECT_EQ(run(p.jump, p.at, got), 1u);
  for (std::size_t i = 0; i < ref.size(); ++i) {
    EXPECT_LE(got[i], ref[i] + 1) << "hour " << i + 1 << " after the jump";
  }
}

INSTANTIATE_TEST_SUITE_P(
    S8, WallJump,
    ::testing::Values(JumpCase{"fwd_5min_before_dose", hours(11) + minutes(57), minutes(5)},
                      JumpCase{"back_5min_after_dose", hours(12) + minutes(2), -minutes(5)},
                      JumpCase{"back_3h_after_dose", hours(13), -hours(3)},
                      JumpCase{"fwd_3h_over_dose", hours(10), hours(3)},
                      JumpCase{"back_12h_into_high_flex", hours(20) + minutes(30), -hours(12)},
                      JumpCase{"fwd_12h", hours(7), hours(12)},
                      JumpCase{"back_1day", hours(12) + minutes(40), -days(1)},
                      JumpCase{"fwd_1day", hours(12) + minutes(40), days(1)},
                      JumpCase{"back_2days", hours(22), -days(2)},
                      JumpCase{"fwd_3days", hours(11), days(3)},
                      JumpCase{"back_1h_dst_like", hours(21) + minutes(10), -hours(1)}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Clock, DstChangesFollowLocalTimeWithoutExtraDoses) {
  // Across the 2026-10-25 fall-back (02:00-03:00 local happens twice) and a periodic dose
  // at 02:30: it fires once per local day.
  Harness h;
  auto plan = flex_plan(mg(4));
  plan.periodic.push_back({hours(2) + minutes(30), mcg(100), minutes(10)});
  h.ready(plan);
  const std::int64_t oct24 = kMidnight0922 + to_usec(days(32));
  run_until_wall(h, oct24, seconds(30));
  const std::size_t before = h.count(EventType::bolus_started);
  run_until_wall(h, oct24 + to_usec(days(3)), seconds(10));
  EXPECT_EQ(h.count(EventType::bolus_started) - before, 3u);
  EXPECT_EQ(h.count(EventType::wall_clock_jump), 0u) << "DST is not a jump: UTC runs on";
}

// ---- the state machine ----------------------------------------------------------------

TEST(StateMachine, DocsCarryTheSameTableAsTheCode) {
  std::ifstream f(std::string(THECAL_SOURCE_DIR) + "/docs/therapy-model.md");
  ASSERT_TRUE(f.good()) << "docs/therapy-model.md missing";
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const std::regex row(R"(\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|)");
  std::set<std::string> in_doc;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), row); it != std::sregex_iterator(); ++it) {
    in_doc.insert((*it)[1].str() + " " + (*it)[2].str() + " " + (*it)[3].str());
  }
  std::set<std::string> in_code;
  for (const auto& t : kTransitions) {
    in_code.insert(std::string(to_string(t.from)) + " " + std::string(to_string(t.trigger)) + " " +
                   std::string(to_string(t.to)));
  }
  EXPECT_EQ(in_doc, in_code);
}

TEST(StateMachine, IllegalTransitionsAreRefusedWithAReason) {
  Harness h;
  const auto plan = continuous_plan(mg_per_day(1.2), mg_per_mL(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  auto expect_refused = [&](Command c, std::string_view words) {
    const PumpState s = h.core->state();
    const Reply r = h.send(c);
    EXPECT_EQ(r.refusal, Refusal::invalid_state) << to_string(c.kind);
    EXPECT_NE(r.message.view().find(words), std::string_view::npos) << r.message.view();
    EXPECT_EQ(h.core->state(), s);
  };
  expect_refused({.kind = CommandKind::resume}, "resume is not allowed while the pump is idle");
  expect_refused({.kind = CommandKind::suspend}, "suspend is not allowed while the pump is idle");
  expect_refused({.kind = CommandKind::clinician_bolus, .dose = mcg(1), .duration = minutes(1)},
                 "bolus is not allowed while the pump is idle");
  h.ready(plan, true);
  expect_refused({.kind = CommandKind::cancel_refill}, "cancel_refill is not allowed while the pump is infusing");
  expect_refused({.kind = CommandKind::revise_catheter, .volume = uL(100)},
                 "revise_catheter is not allowed while the pump is infusing");
  expect_refused({.kind = CommandKind::replace_battery}, "replace_battery is not allowed while the pump is infusing");
  expect_refused({.kind = CommandKind::start}, "start is not allowed while the pump is infusing");
  expect_refused({.kind = CommandKind::prime, .volume = uL(1)}, "prime is not allowed while the pump is infusing");
}

TEST(StateMachine, EveryStateHasAWayOut) {
  for (int s = 0; s <= static_cast<int>(PumpState::refilling); ++s) {
    bool out = false;
    for (const auto& t : kTransitions) out = out || (static_cast<int>(t.from) == s && t.to != t.from);
    // `refilling` leaves for the state kept at BeginRefill (its rows name no target).
    if (static_cast<PumpState>(s) == PumpState::refilling) {
      out = next_state(PumpState::refilling, Trigger::refill).has_value() &&
            next_state(PumpState::refilling, Trigger::cancel_refill).has_value();
    }
    EXPECT_TRUE(out) << to_string(static_cast<PumpState>(s));
  }
}

}  // namespace
}  // namespace thecal
