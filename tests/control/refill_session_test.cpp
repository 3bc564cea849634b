// Issue 17 in the pure core: catheter revision (S3), the refill session (S12), the
// solution's stability (S13), risk events (S14) and the alarm test.  Made-up time, the
// real PumpCore, the oracle catheter of core_harness.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "control/buzzer.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using test::continuous_plan;
using test::Harness;

TherapyPlan plan_1_2() { return continuous_plan(mg_per_day(1.2), mg_per_mL(10)); }

const Event* last_of(const Harness& h, EventType t) {
  for (auto it = h.events.rbegin(); it != h.events.rend(); ++it) {
    if (it->type == t) return &*it;
  }
  return nullptr;
}

std::size_t raised(const Harness& h, AlarmCode c) {
  std::size_t n = 0;
  for (const auto& e : h.events) n += e.type == EventType::alarm_raised && e.alarm == c ? 1 : 0;
  return n;
}

// ---- ReviseCatheter (S3) ---------------------------------------------------------------

TEST(ReviseCatheter, EmptiesTheNewCatheterLeavesIdleAndTheTipGetsNoDrugUntilPrimed) {
  Harness h;
  const auto plan = plan_1_2();
  h.ready(plan, true);
  h.run(hours(2), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  const Mass before = h.st().total_delivered_mass;
  ASSERT_GT(before, mcg(0));
  const Volume reservoir = h.st().reservoir;

  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(117)}, true, 4242).ok());
  EXPECT_EQ(h.core->state(), PumpState::idle);
  EXPECT_FALSE(h.st().catheter_primed);
  EXPECT_EQ(h.st().catheter_volume, uL(117));
  EXPECT_EQ(h.st().reservoir, reservoir);
  const Event* e = last_of(h, EventType::catheter_revised);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->volume, uL(117));
  EXPECT_EQ(e->volume2, uL(220));
  EXPECT_EQ(e->uid, 4242u);

  // Start is refused until primed; nothing changes.
  const Reply r = h.send({.kind = CommandKind::start});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_NE(r.message.view().find("not primed"), std::string_view::npos) << r.message.view();
  EXPECT_EQ(h.core->state(), PumpState::idle);

  // Priming the new volume delivers no drug at the tip, by the core and by the oracle.
  const double oracle_before = h.tip_mass_total;
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(117)}).ok());
  h.run(minutes(9), seconds(1));
  EXPECT_EQ(h.core->state(), PumpState::idle);
  EXPECT_TRUE(h.st().catheter_primed);
  EXPECT_EQ(h.st().total_delivered_mass, before);
  EXPECT_EQ(h.tip_mass_total, oracle_before);
  // A second prime is refused: the catheter is full.
  EXPECT_EQ(h.send({.kind = CommandKind::prime, .volume = uL(10)}).refusal, Refusal::invalid_state);

  // Then delivery: the tip mass counted by the core is the oracle's, and the rate's.
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  h.run(hours(10), seconds(10));
  const double delivered = to_mcg(h.st().total_delivered_mass - before);
  EXPECT_NEAR(delivered, h.tip_mass_total - oracle_before, 1e-6);
  EXPECT_NEAR(delivered, 1200.0 * 10 / 24, 2.5 + 0.25 * 10);  // within a step's mass
}

TEST(ReviseCatheter, RefusedOutsideIdleSuspendedStoppedAndOutOfRangeChangingNothing) {
  Harness h;
  const auto plan = plan_1_2();
  h.ready(plan, true);
  h.run(minutes(30), seconds(10));
  auto unchanged = [&](Command c, Refusal why) {
    const Status s = h.st();
    const Reply r = h.send(c);
    EXPECT_EQ(r.refusal, why) << r.message.view();
    EXPECT_EQ(h.core->state(), s.state);
    EXPECT_EQ(h.st().catheter_volume, s.catheter_volume);
    EXPECT_EQ(h.st().catheter_primed, s.catheter_primed);
    EXPECT_EQ(h.count(EventType::catheter_revised), 0u);
  };
  unchanged({.kind = CommandKind::revise_catheter, .volume = uL(100)}, Refusal::invalid_state);  // infusing
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  unchanged({.kind = CommandKind::revise_catheter, .volume = uL(0)}, Refusal::out_of_range);
  unchanged({.kind = CommandKind::revise_catheter, .volume = uL(-5)}, Refusal::out_of_range);
  unchanged({.kind = CommandKind::revise_catheter, .volume = uL(2000.5)}, Refusal::out_of_range);
  unchanged({.kind = CommandKind::revise_catheter, .volume = uL(std::nan(""))}, Refusal::out_of_range);
  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(2000)}).ok());
  EXPECT_EQ(h.st().catheter_volume, uL(2000));
}

TEST(ReviseCatheter, FromStoppedLeavesIdleWithTheAlarmStanding) {
  Harness h;
  h.ready(plan_1_2(), true);
  h.in.disconnect = true;
  h.cycle(msec(1));
  ASSERT_EQ(h.core->state(), PumpState::stopped);
  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(150)}).ok());
  EXPECT_EQ(h.core->state(), PumpState::idle);
  EXPECT_TRUE(h.alarm(AlarmCode::disconnect));
  EXPECT_FALSE(h.st().catheter_primed);
}

TEST(ReviseCatheter, APrescriptionMustCarryTheRevisedVolume) {
  Harness h;
  const auto plan = plan_1_2();
  h.ready(plan, false);
  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(117)}).ok());
  // A stale prescription (220 uL) would undo the surgery's record: refused, nothing changed.
  auto stale = plan_1_2();
  stale.id = "stale";
  const Reply r = h.send({.kind = CommandKind::load_prescription, .plan = &stale});
  EXPECT_EQ(r.refusal, Refusal::invalid_prescription);
  EXPECT_NE(r.message.view().find("revised catheter"), std::string_view::npos) << r.message.view();
  EXPECT_EQ(h.st().catheter_volume, uL(117));
  EXPECT_EQ(h.st().prescription_id.view(), "test");
  const Reply rf = h.send({.kind = CommandKind::refill, .plan = &stale, .volume = mL(10)});
  EXPECT_EQ(rf.refusal, Refusal::invalid_prescription);
  auto fresh = plan_1_2();
  fresh.id = "fresh";
  fresh.catheter_volume = uL(117);
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &fresh}).ok());
  EXPECT_EQ(h.st().catheter_volume, uL(117));
}

// ---- The refill session (S12) ----------------------------------------------------------

TEST(RefillSession, BeginStopsTheMotorCancelsTheBolusAndRefillReturnsToInfusing) {
  Harness h;
  h.ready(plan_1_2(), true);
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(100), .duration = minutes(30)}).ok());
  h.run(minutes(5), seconds(1));
  ASSERT_TRUE(h.st().bolus_active);
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}, true, 777).ok());
  EXPECT_EQ(h.core->state(), PumpState::refilling);
  EXPECT_EQ(h.st().refill_before, PumpState::infusing);
  EXPECT_FALSE(h.st().bolus_active);
  const Event* c = last_of(h, EventType::bolus_cancelled);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->uid, 777u);
  const std::uint64_t steps = h.steps_out;
  h.run(minutes(10), msec(100));
  EXPECT_EQ(h.steps_out, steps);  // motor stopped
  EXPECT_FALSE(h.out.motor_enable);
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = h.st().reservoir}).ok());
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  EXPECT_EQ(h.st().reservoir, mL(20));
  h.run(minutes(10), seconds(1));
  EXPECT_GT(h.steps_out, steps);
}

TEST(RefillSession, CancelReturnsToTheStateBeforeAndChangesNothingElse) {
  Harness h;
  h.ready(plan_1_2(), true);
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend, .duration = Duration{0}}).ok());
  const Volume reservoir = h.st().reservoir;
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::cancel_refill}).ok());
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  EXPECT_EQ(h.st().reservoir, reservoir);
  EXPECT_EQ(h.count(EventType::refill), 1u);  // only ready()'s fill
  EXPECT_EQ(h.count(EventType::refill_cancelled), 1u);
}

TEST(RefillSession, RefusedCallsChangeNothing) {
  Harness h;
  const auto plan = plan_1_2();
  // Outside a session, CancelRefill is refused in every state.
  EXPECT_EQ(h.send({.kind = CommandKind::cancel_refill}).refusal, Refusal::invalid_state);
  h.ready(plan, true);
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  const Volume reservoir = h.st().reservoir;
  auto refused = [&](Command c, Refusal why) {
    const Reply r = h.send(c);
    EXPECT_EQ(r.refusal, why) << to_string(c.kind) << ": " << r.message.view();
    EXPECT_EQ(h.core->state(), PumpState::refilling);
    EXPECT_EQ(h.st().reservoir, reservoir);
    EXPECT_EQ(h.st().refill_before, PumpState::infusing);
  };
  refused({.kind = CommandKind::begin_refill}, Refusal::invalid_state);
  refused({.kind = CommandKind::start}, Refusal::invalid_state);
  refused({.kind = CommandKind::resume}, Refusal::invalid_state);
  refused({.kind = CommandKind::suspend}, Refusal::invalid_state);
  refused({.kind = CommandKind::prime, .volume = uL(10)}, Refusal::invalid_state);
  refused({.kind = CommandKind::clinician_bolus, .dose = mcg(10), .duration = minutes(10)}, Refusal::invalid_state);
  refused({.kind = CommandKind::revise_catheter, .volume = uL(100)}, Refusal::invalid_state);
  // Overfilling is refused (OutOfRange), and so is a negative residual.
  const Reply over = h.send({.kind = CommandKind::refill, .volume = uL(20'001), .withdrawn = uL(0)});
  EXPECT_EQ(over.refusal, Refusal::out_of_range);
  EXPECT_NE(over.message.view().find("beyond the reservoir capacity"), std::string_view::npos) << over.message.view();
  EXPECT_EQ(h.core->state(), PumpState::refilling);
  EXPECT_EQ(h.st().reservoir, reservoir);
  refused({.kind = CommandKind::refill, .volume = mL(5), .withdrawn = uL(-1)}, Refusal::out_of_range);
}

TEST(RefillSession, BeginIsRefusedWhilePrimingAndAfterTheTrial) {
  Harness h;
  const auto plan = plan_1_2();
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(100)}).ok());
  const Reply r = h.send({.kind = CommandKind::begin_refill});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_NE(r.message.view().find("begin_refill is not allowed while the pump is priming"), std::string_view::npos);
  EXPECT_EQ(h.core->state(), PumpState::priming);
}

TEST(RefillSession, OutsideASessionRefillIsASessionOfOneCall) {
  Harness h;
  h.ready(plan_1_2(), true);
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(100), .duration = minutes(30)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = h.st().reservoir}).ok());
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  EXPECT_FALSE(h.st().bolus_active);  // what BeginRefill cancels, one call cancels
  EXPECT_EQ(h.st().reservoir, mL(20));
  // Beyond capacity: refused, nothing changed.
  EXPECT_EQ(h.send({.kind = CommandKind::refill, .volume = mL(21)}).refusal, Refusal::out_of_range);
  EXPECT_EQ(h.st().reservoir, mL(20));
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

TEST(RefillSession, AChangeOfDrugEndsTheSessionSuspended) {
  Harness h;
  h.ready(plan_1_2(), true);
  auto other = continuous_plan(mcg_per_day(100), mcg_per_mL(500), mg(1));
  other.id = "hydromorphone";
  other.drug = "hydromorphone";
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .plan = &other, .volume = mL(20), .withdrawn = h.st().reservoir}).ok());
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  EXPECT_EQ(h.st().suspended_until, WallTime{});  // until Resume
  EXPECT_EQ(h.st().drug.view(), "hydromorphone");
}

TEST(RefillSession, PressureHighWhileRefillingIsCatheterPortInjectionWithinTwoPeriodsAndLatches) {
  Harness h;
  h.ready(plan_1_2(), true);
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  h.run(minutes(1), msec(1));
  h.in.occlusion = true;  // the needle went into the catheter access port
  h.cycle(msec(1));
  ASSERT_TRUE(h.alarm(AlarmCode::catheter_port_injection)) << "not within one loop period";
  EXPECT_EQ(priority_of(AlarmCode::catheter_port_injection), AlarmPriority::high);
  EXPECT_FALSE(h.alarm(AlarmCode::occlusion));  // the motor is stopped: not an occlusion
  EXPECT_EQ(h.out.steps, 0u);
  EXPECT_FALSE(h.out.motor_enable);
  h.cycle(msec(1));
  EXPECT_EQ(h.out.buzzer_pattern, BuzzerPattern::high);
  // Latches like S4: the pressure falls, the alarm stays until acknowledged.
  h.in.occlusion = false;
  h.run(seconds(5), msec(1));
  EXPECT_TRUE(h.alarm(AlarmCode::catheter_port_injection));
  // Ending the session does not resume delivery: a high alarm stands, the pump is stopped.
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = h.st().reservoir}).ok());
  EXPECT_EQ(h.core->state(), PumpState::stopped);
  EXPECT_EQ(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::catheter_port_injection}, false).refusal,
            Refusal::access_denied);
  EXPECT_EQ(h.send({.kind = CommandKind::resume}).refusal, Refusal::invalid_state);
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::catheter_port_injection}).ok());
  EXPECT_FALSE(h.alarm(AlarmCode::catheter_port_injection));
  ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
  EXPECT_EQ(h.core->state(), PumpState::infusing);
  EXPECT_EQ(raised(h, AlarmCode::catheter_port_injection), 1u);
}

TEST(RefillSession, PressureHighOutsideASessionIsStillAnOcclusion) {
  Harness h;
  h.ready(plan_1_2(), true);
  h.in.occlusion = true;
  h.cycle(msec(1));
  EXPECT_TRUE(h.alarm(AlarmCode::occlusion));
  EXPECT_FALSE(h.alarm(AlarmCode::catheter_port_injection));
}

TEST(RefillSession, UnfinishedAfterFifteenMinutesClearedByTheEnd) {
  Harness h;
  h.ready(plan_1_2(), false);
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  h.run(minutes(15) - msec(2), msec(500));
  h.run(msec(1), msec(1));
  EXPECT_FALSE(h.alarm(AlarmCode::refill_unfinished));
  h.cycle(msec(1));
  EXPECT_TRUE(h.alarm(AlarmCode::refill_unfinished));
  EXPECT_EQ(priority_of(AlarmCode::refill_unfinished), AlarmPriority::medium);
  EXPECT_EQ(h.core->state(), PumpState::refilling);
  ASSERT_TRUE(h.send({.kind = CommandKind::cancel_refill}).ok());
  EXPECT_FALSE(h.alarm(AlarmCode::refill_unfinished));
  EXPECT_EQ(h.core->state(), PumpState::idle);
}

TEST(RefillSession, FastForwardRaisesRefillUnfinishedAtTheSameCycleAsTicking) {
  auto run = [](bool ff) {
    Harness h;
    h.ready(plan_1_2(), false);
    EXPECT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
    const Duration period = msec(10);
    if (ff) {
      IdealPlant plant;
      plant.in = h.in;
      std::int64_t left = 20 * 60 * 100;
      while (left > 0) {
        const FastForward r = h.core->fast_forward(h.now, period, left, plant);
        h.now = r.now;
        left -= r.cycles;
        h.drain();
      }
    } else {
      for (int i = 0; i < 20 * 60 * 100; ++i) h.cycle(period);
    }
    const Event* e = nullptr;
    for (const auto& x : h.events) {
      if (x.type == EventType::alarm_raised && x.alarm == AlarmCode::refill_unfinished) e = &x;
    }
    EXPECT_NE(e, nullptr);
    return e != nullptr ? to_usec(e->mono) : 0;
  };
  EXPECT_EQ(run(true), run(false));
}

// ---- The solution's stability (S13) ----------------------------------------------------

TEST(SolutionStability, ExpiresAtFillPlusMaxDaysCapsRefillDueAndClearsAtTheNextRefill) {
  Harness h;
  auto plan = continuous_plan(mcg_per_day(10), mcg_per_mL(100), mcg(19.2));  // lasts 180 days
  plan.drug = "ziconotide";
  plan.max_in_reservoir = days(40);
  h.ready(plan, true);
  const Event* fill = last_of(h, EventType::refill);
  ASSERT_NE(fill, nullptr);
  const WallTime expires = fill->when + days(40);
  EXPECT_EQ(h.st().solution_expires, expires);
  EXPECT_EQ(h.st().refill_due, expires);  // the volume would last longer: the date rules
  // Not before its time, then at it (cycles of 1 h, the last one exact).
  while (h.now.wall + hours(1) < expires) h.cycle(hours(1));
  EXPECT_FALSE(h.alarm(AlarmCode::solution_expired));
  h.cycle(expires - h.now.wall - Duration{1});
  EXPECT_FALSE(h.alarm(AlarmCode::solution_expired));
  h.cycle(Duration{1});
  EXPECT_TRUE(h.alarm(AlarmCode::solution_expired));
  EXPECT_EQ(priority_of(AlarmCode::solution_expired), AlarmPriority::medium);
  EXPECT_EQ(h.core->state(), PumpState::infusing);  // medium: delivery goes on
  // Acknowledging silences it; the cause stays.
  ASSERT_TRUE(h.send({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::solution_expired}, false).ok());
  EXPECT_TRUE(h.alarm(AlarmCode::solution_expired));
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20), .withdrawn = h.st().reservoir}).ok());
  EXPECT_FALSE(h.alarm(AlarmCode::solution_expired));
  EXPECT_EQ(h.st().solution_expires, h.now.wall + days(40));
}

TEST(SolutionStability, FastForwardRaisesSolutionExpiredAtTheSameCycleAsTicking) {
  auto run = [](bool ff) {
    Harness h;
    auto plan = continuous_plan(mcg_per_day(10), mcg_per_mL(100), mcg(19.2));
    plan.max_in_reservoir = hours(25);
    h.ready(plan, true);
    const Duration period = seconds(1);
    const std::int64_t cycles = 26 * 3600;
    if (ff) {
      IdealPlant plant;
      plant.in = h.in;
      plant.steps = static_cast<std::uint64_t>(h.in.encoder_pulses) * h.board.steps_per_encoder_pulse;
      std::int64_t left = cycles;
      while (left > 0) {
        const FastForward r = h.core->fast_forward(h.now, period, left, plant);
        h.now = r.now;
        left -= r.cycles;
        h.drain();
      }
    } else {
      for (std::int64_t i = 0; i < cycles; ++i) h.cycle(period);
    }
    std::int64_t at = 0;
    for (const auto& x : h.events) {
      if (x.type == EventType::alarm_raised && x.alarm == AlarmCode::solution_expired) at = to_usec(x.mono);
    }
    EXPECT_NE(at, 0);
    return at;
  };
  EXPECT_EQ(run(true), run(false));
}

TEST(SolutionStability, WithoutALimitNothingExpires) {
  Harness h;
  h.ready(plan_1_2(), true);
  EXPECT_EQ(h.st().solution_expires, WallTime{});
  EXPECT_NE(h.st().refill_due, WallTime{});
}

// ---- Risk events (S14) -----------------------------------------------------------------

std::vector<Event> risks(const Harness& h, std::uint32_t kind) {
  std::vector<Event> out;
  for (const auto& e : h.events) {
    if (e.type == EventType::risk_event && e.index == kind) out.push_back(e);
  }
  return out;
}

TEST(RiskEvents, AStopIsLoggedOnTheCycleItReaches48HoursOnceWhileStillStopped) {
  Harness h;
  h.ready(plan_1_2(), true);
  h.run(minutes(10), seconds(10));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}, true, 555).ok());
  const MonoTime began = h.now.mono;
  const WallTime began_wall = h.now.wall;
  // 7 s cycles: the mark (48 h = 172,800 s) falls inside a cycle, not on a cycle's time.
  const Duration cycle = seconds(7);
  while (h.now.mono + cycle < began + PumpCore::kLongStop) h.cycle(cycle);
  EXPECT_TRUE(risks(h, kRiskLongStop).empty()) << "logged before 48 h";
  ASSERT_LT(h.now.mono, began + PumpCore::kLongStop);
  h.cycle(cycle);  // the cycle that reaches 48 h
  ASSERT_GE(h.now.mono, began + PumpCore::kLongStop);
  auto r = risks(h, kRiskLongStop);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].mono, began + PumpCore::kLongStop);  // stamped at the mark itself
  EXPECT_EQ(r[0].when, began_wall + PumpCore::kLongStop);
  EXPECT_EQ(r[0].duration, hours(48));
  EXPECT_EQ(r[0].uid, kSystemUid);
  EXPECT_EQ(r[0].new_state, PumpState::suspended);
  EXPECT_EQ(h.core->state(), PumpState::suspended);
  // Once per stop: days more of the same stop log nothing more.
  h.run(days(5), minutes(7));
  EXPECT_EQ(risks(h, kRiskLongStop).size(), 1u);
  EXPECT_TRUE(risks(h, kRiskLongStopEnded).empty());
}

TEST(RiskEvents, AStopOf47h59IsNotARiskAndOneResumedAfter49hIsLoggedTwice) {
  for (const Duration stop : {hours(47) + minutes(59), hours(49)}) {
    Harness h;
    h.ready(plan_1_2(), true);
    h.run(minutes(10), seconds(10));
    ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
    h.run(stop, minutes(1));
    ASSERT_TRUE(h.send({.kind = CommandKind::resume}, true, 555).ok());
    if (stop < hours(48)) {
      EXPECT_EQ(h.count(EventType::risk_event), 0u);
      continue;
    }
    const auto reached = risks(h, kRiskLongStop);
    const auto ended = risks(h, kRiskLongStopEnded);
    ASSERT_EQ(reached.size(), 1u);
    ASSERT_EQ(ended.size(), 1u);
    EXPECT_EQ(reached[0].duration, hours(48));
    EXPECT_EQ(ended[0].duration, hours(49));  // the whole stop, monotonic
    EXPECT_EQ(ended[0].uid, 555u);            // who resumed
    EXPECT_EQ(ended[0].mono, h.now.mono);
    // A second stop starts its own count.
    h.run(hours(1), minutes(1));
    ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
    h.run(hours(47), minutes(10));
    EXPECT_EQ(risks(h, kRiskLongStop).size(), 1u);
    h.run(hours(1), minutes(10));
    EXPECT_EQ(risks(h, kRiskLongStop).size(), 2u);
  }
}

TEST(RiskEvents, EveryWayOfStoppingCountsAndAPumpNeverStartedDoesNot) {
  // A high alarm's stop (the pump goes on being `stopped`), a refill session left open,
  // the end of a trial: the tip gets nothing of the prescription, 48 h later it is logged.
  {
    Harness h;
    h.ready(plan_1_2(), true);
    h.run(minutes(10), seconds(10));
    h.in.occlusion = true;
    h.cycle(seconds(1));
    ASSERT_EQ(h.core->state(), PumpState::stopped);
    const MonoTime began = h.now.mono;
    h.in.occlusion = false;
    h.run(hours(49), minutes(10));
    const auto r = risks(h, kRiskLongStop);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].mono, began + hours(48));
    EXPECT_EQ(r[0].new_state, PumpState::stopped);
  }
  {
    Harness h;
    h.ready(plan_1_2(), true);
    h.run(minutes(10), seconds(10));
    ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
    h.run(hours(49), minutes(10));
    const auto r = risks(h, kRiskLongStop);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].new_state, PumpState::refilling);
  }
  {
    Harness h;
    TherapyPlan p = plan_1_2();
    p.phase = Phase::trial;
    p.trial_ends = h.now.wall + hours(3);
    h.ready(p, true);
    h.run(hours(4), minutes(1));
    ASSERT_EQ(h.core->state(), PumpState::trial_finished);
    const Event* end = last_of(h, EventType::trial_finished);
    ASSERT_NE(end, nullptr);
    const MonoTime ended = end->mono;
    h.run((ended + hours(48) - minutes(1)) - h.now.mono, minutes(1));
    EXPECT_TRUE(risks(h, kRiskLongStop).empty());
    h.run(minutes(2), minutes(1));
    ASSERT_EQ(risks(h, kRiskLongStop).size(), 1u);
    EXPECT_EQ(risks(h, kRiskLongStop)[0].mono, ended + hours(48));
    EXPECT_EQ(risks(h, kRiskLongStop)[0].new_state, PumpState::trial_finished);
  }
  {
    // Loaded and primed, never started: no therapy has stopped.
    Harness h;
    h.ready(plan_1_2(), false);
    h.run(days(4), minutes(10));
    EXPECT_EQ(h.count(EventType::risk_event), 0u);
  }
}

TEST(RiskEvents, TheStopSurvivesARestartAndIsLoggedOnceAt48HoursOfThePumpsLife) {
  // A restart at 30 h into the stop, within one boot (the monotonic clock goes on) and
  // across a reboot (a new clock, no time assumed: the hours off do not count).
  for (const bool reboot : {false, true}) {
    SCOPED_TRACE(reboot ? "across a reboot" : "within one boot");
    Harness h;
    h.ready(plan_1_2(), true);
    h.run(minutes(10), seconds(10));
    ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
    const MonoTime began = h.now.mono;
    h.run(hours(30), minutes(10));
    auto saved = std::make_unique<CoreState>();
    h.core->export_state(*saved, h.now);
    ASSERT_TRUE(saved->stop_began);
    EXPECT_FALSE(saved->long_stop_logged);
    const Duration off = reboot ? hours(6) : Duration{0};
    const Now restart{reboot ? mono_us(5'000'000) : h.now.mono, h.now.wall + off};
    const Duration elapsed = reboot ? Duration{0} : restart.mono - h.now.mono;
    h.now = restart;
    h.core = std::make_unique<PumpCore>(h.board, h.now);
    (void)h.core->restore_state(*saved, RestoreClock{h.now, elapsed}, 0);
    h.drain();
    const MonoTime mark = reboot ? restart.mono + hours(18) : began + hours(48);
    while (h.now.mono + seconds(30) < mark) h.cycle(seconds(30));
    EXPECT_TRUE(risks(h, kRiskLongStop).empty());
    h.cycle(seconds(30));
    auto r = risks(h, kRiskLongStop);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].mono, mark);
    EXPECT_EQ(r[0].duration, hours(48));
    // Logged before a second restart: not logged again after it; the resume closes it.
    h.run(hours(2), minutes(10));
    h.core->export_state(*saved, h.now);
    EXPECT_TRUE(saved->long_stop_logged);
    h.core = std::make_unique<PumpCore>(h.board, h.now);
    (void)h.core->restore_state(*saved, RestoreClock{h.now, Duration{0}}, 0);
    ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}}).ok());
    h.run(days(1), minutes(10));
    EXPECT_EQ(risks(h, kRiskLongStop).size(), 1u);
    ASSERT_TRUE(h.send({.kind = CommandKind::resume}).ok());
    const auto ended = risks(h, kRiskLongStopEnded);
    ASSERT_EQ(ended.size(), 1u);
    EXPECT_EQ(ended[0].duration, hours(48) + hours(2) + days(1));
  }
}

TEST(RiskEvents, TheReservoirRunningEmptyIsLoggedOnce) {
  Harness h;
  h.ready(continuous_plan(mg_per_day(2.4), mg_per_mL(10)), true, uL(500));
  h.run(days(2), seconds(30));
  ASSERT_TRUE(h.alarm(AlarmCode::reservoir_empty));
  std::size_t n = 0;
  for (const auto& e : h.events) n += e.type == EventType::risk_event && e.index == kRiskReservoirEmpty ? 1 : 0;
  EXPECT_EQ(n, 1u);
}

// ---- TestAlarm -------------------------------------------------------------------------

TEST(AlarmTest, SoundsHighMediumAndLowOnceEachOnTheBuzzerAndRaisesNothing) {
  Harness h;
  h.ready(plan_1_2(), true);
  h.run(seconds(1), msec(1));
  const std::size_t events_before = h.events.size();
  ASSERT_TRUE(h.send({.kind = CommandKind::test_alarm}, true, 321).ok());
  std::array<int, 4> pulses{};  // rising edges per pattern
  bool was = false;
  for (int ms = 0; ms < 8000; ++ms) {
    h.cycle(msec(1));
    if (h.out.buzzer && !was) ++pulses[static_cast<std::size_t>(h.out.buzzer_pattern)];
    was = h.out.buzzer;
  }
  EXPECT_EQ(pulses[static_cast<std::size_t>(BuzzerPattern::high)], 10);
  EXPECT_EQ(pulses[static_cast<std::size_t>(BuzzerPattern::medium)], 3);
  EXPECT_EQ(pulses[static_cast<std::size_t>(BuzzerPattern::low)], 2);
  EXPECT_FALSE(h.out.buzzer);
  EXPECT_FALSE(h.st().alarm_test);
  for (std::size_t i = events_before; i < h.events.size(); ++i) {
    EXPECT_NE(h.events[i].type, EventType::alarm_raised);
    EXPECT_NE(h.events[i].type, EventType::alarm_cleared);
  }
  const Event* e = last_of(h, EventType::alarm_test);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->uid, 321u);
  EXPECT_EQ(h.core->state(), PumpState::infusing);
}

TEST(AlarmTest, RefusedWhileAHighAlarmSoundsOrATestRuns) {
  Harness h;
  h.ready(plan_1_2(), true);
  ASSERT_TRUE(h.send({.kind = CommandKind::test_alarm}).ok());
  EXPECT_EQ(h.send({.kind = CommandKind::test_alarm}).refusal, Refusal::invalid_state);
  h.run(seconds(8), msec(10));
  h.in.occlusion = true;
  h.cycle(msec(1));
  const Reply r = h.send({.kind = CommandKind::test_alarm});
  EXPECT_EQ(r.refusal, Refusal::invalid_state);
  EXPECT_FALSE(h.st().alarm_test);
  EXPECT_EQ(h.count(EventType::alarm_test), 1u);
}

// ---- Persistence -----------------------------------------------------------------------

TEST(RefillSession, ARestartInASessionComesBackRefillingWithEverythingKept) {
  Harness h;
  auto plan = plan_1_2();
  plan.max_in_reservoir = days(30);
  h.ready(plan, true);
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::revise_catheter, .volume = uL(150)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = uL(150)}).ok());
  h.run(minutes(10), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::start}).ok());
  h.run(minutes(10), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::begin_refill}).ok());
  h.run(minutes(5), seconds(1));
  CoreState s;
  h.core->export_state(s, h.now);
  std::string err;
  const auto bytes = encode_core_state(s);
  const auto back = decode_core_state(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->state, PumpState::refilling);
  EXPECT_EQ(back->refill_before, PumpState::infusing);
  EXPECT_TRUE(back->catheter_revised);
  EXPECT_EQ(back->catheter_capacity, uL(150));
  ASSERT_TRUE(back->plan);
  EXPECT_EQ(back->plan->max_in_reservoir, days(30));
  EXPECT_EQ(back->last_fill_wall, s.last_fill_wall);

  PumpCore fresh(h.board, h.now);
  (void)fresh.restore_state(*back, RestoreClock{h.now, Duration{0}}, 0);
  EXPECT_EQ(fresh.state(), PumpState::refilling);
  EXPECT_EQ(fresh.status().solution_expires, h.st().solution_expires);
  EXPECT_EQ(fresh.status().catheter_volume, uL(150));
  // The session's clock goes on: refill_unfinished 15 min after BeginRefill, not after the restart.
  Actuation out;
  Now t = h.now;
  for (int i = 0; i < 9 * 60; ++i) {
    t.mono += seconds(1);
    t.wall += seconds(1);
    fresh.tick(t, h.in, out);
    EXPECT_EQ(out.steps, 0u);
  }
  EXPECT_FALSE(fresh.status().alarms[static_cast<std::size_t>(AlarmCode::refill_unfinished)].active);
  t.mono += seconds(61);
  t.wall += seconds(61);
  fresh.tick(t, h.in, out);
  EXPECT_TRUE(fresh.status().alarms[static_cast<std::size_t>(AlarmCode::refill_unfinished)].active);
  // A stale prescription is still refused after the restart (the revision is kept).
  Command c;
  c.kind = CommandKind::refill;
  c.plan = &plan;
  c.volume = mL(10);
  EXPECT_EQ(fresh.apply(c, t).refusal, Refusal::invalid_prescription);
}

}  // namespace
}  // namespace thecal
