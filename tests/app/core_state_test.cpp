// CoreState: the binary form round-trips and refuses damage; restore_state brings back
// every limit (lockout, count, ledger), counts unconfirmed steps as pumped, and maps the
// clocks conservatively across a restart (SPEC S7, S8).
#include <gtest/gtest.h>

#include "tests/app/journal_test_util.hpp"

namespace thecal::test {
namespace {

std::string as_text(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

struct Delivered {
  Harness h;
  TherapyPlan plan = bolus_plan();
  CoreState s;
  Delivered() {
    h.ready(plan);
    h.run(hours(2), seconds(1));
    EXPECT_TRUE(h.send({.kind = CommandKind::patient_bolus}, false).ok());
    h.run(minutes(5), seconds(1));
    h.core->export_state(s, h.now);
  }
};

TEST(CoreState, EncodesAndDecodesExactly) {
  Delivered d;
  const auto bytes = encode_core_state(d.s);
  std::string err;
  const auto back = decode_core_state(as_text(bytes), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(encode_core_state(*back), bytes);
  EXPECT_EQ(back->steps_issued, d.s.steps_issued);
  EXPECT_TRUE(back->boluses[0].active);
  EXPECT_EQ(back->plan->id, d.plan.id);
}

TEST(CoreState, Format2CarriesTheRevisionTheRefillSessionTheFillTimeAndTheStop) {
  Delivered d;
  CoreState s = d.s;
  s.state = PumpState::refilling;
  s.refill_before = PumpState::suspended;
  s.refill_began = s.mono - minutes(3);
  s.catheter_revised = true;
  s.catheter_capacity = uL(117);
  s.last_fill_wall = s.wall - days(2);
  s.stopped_since = s.wall - hours(5);
  s.plan->max_in_reservoir = days(40);
  s.alarms[static_cast<std::size_t>(AlarmCode::catheter_port_injection)].active = true;
  const auto bytes = encode_core_state(s);
  std::string err;
  const auto back = decode_core_state(as_text(bytes), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(encode_core_state(*back), bytes);
  EXPECT_EQ(back->state, PumpState::refilling);
  EXPECT_EQ(back->refill_before, PumpState::suspended);
  EXPECT_EQ(back->refill_began, s.refill_began);
  EXPECT_TRUE(back->catheter_revised);
  EXPECT_EQ(back->catheter_capacity, uL(117));
  EXPECT_EQ(back->last_fill_wall, s.last_fill_wall);
  ASSERT_TRUE(back->stopped_since);
  EXPECT_EQ(*back->stopped_since, *s.stopped_since);
  EXPECT_EQ(back->plan->max_in_reservoir, days(40));
  EXPECT_TRUE(back->alarms[static_cast<std::size_t>(AlarmCode::catheter_port_injection)].active);
  // A state before the session kept nowhere else is refused: refill_before must be one of
  // the four states BeginRefill leaves from.
  std::string bad = as_text(bytes);
  const std::size_t at = bad.size() - (8 + 8 + 1 + 8) - 1;  // before, then began, fill, stopped_since (1 + 8)
  ASSERT_EQ(static_cast<std::uint8_t>(bad[at]), static_cast<std::uint8_t>(PumpState::suspended));
  bad[at] = static_cast<char>(PumpState::refilling);
  EXPECT_FALSE(decode_core_state(bad, &err));
  EXPECT_NE(err.find("state before the refill"), std::string::npos) << err;
}

TEST(CoreState, AFormat1JournalIsStillRead) {
  // A format-1 state: the same bytes up to refill_accuracy, 17 alarms, no issue-17 tail.
  Delivered d;
  d.s.stopped_since.reset();
  const std::string two = as_text(encode_core_state(d.s));
  constexpr std::size_t kAlarmBytes = 3 + 8 + 8;
  constexpr std::size_t kTail1 = 1 + 4 * 8 + 2 * 8 + 2 * 8 + 1 + 8;  // daily_hold .. refill_accuracy
  constexpr std::size_t kTail2 = 8 + 1 + 1 + 8 + 8 + 1;              // max_in_reservoir .. stopped_since
  const std::size_t table = two.size() - kTail2 - kTail1 - kAlarmCount * kAlarmBytes - 4;
  std::string one = two.substr(0, table);
  one += std::string("\x11\0\0\0", 4);  // 17 alarms
  one += two.substr(table + 4, 17 * kAlarmBytes);
  one += two.substr(two.size() - kTail2 - kTail1, kTail1);
  one[0] = 1;
  std::string err;
  const auto back = decode_core_state(one, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->steps_issued, d.s.steps_issued);
  EXPECT_FALSE(back->catheter_revised);
  EXPECT_EQ(back->last_fill_wall, d.s.wall);  // a stability limit counts from then, never earlier
  EXPECT_FALSE(back->stopped_since);
  // Format 1 knew no `refilling`.
  std::string refilling = one;
  refilling[4 + 8 + 8] = static_cast<char>(PumpState::refilling);
  EXPECT_FALSE(decode_core_state(refilling, &err));
}

TEST(CoreState, EveryTruncationAndATrailingByteAreRefused) {
  Delivered d;
  const std::string b = as_text(encode_core_state(d.s));
  for (std::size_t n = 0; n < b.size(); n += (n < 400 ? 1 : 97)) {
    std::string err;
    ASSERT_FALSE(decode_core_state(b.substr(0, n), &err)) << n;
    ASSERT_FALSE(err.empty());
  }
  std::string err;
  EXPECT_FALSE(decode_core_state(b + "x", &err));
  EXPECT_NE(err.find("trailing"), std::string::npos);
  std::string future = b;
  future[0] = 9;
  EXPECT_FALSE(decode_core_state(future, &err));
  EXPECT_NE(err.find("newer"), std::string::npos) << err;
}

TEST(CoreRestore, LockoutCountLedgerAndBolusComeBack) {
  Delivered d;
  const Mass before = d.h.st().delivered_24h;
  // A new process: a new core on a clock that starts elsewhere (the sim clock restarts from
  // the real one), within the same boot, 30 s later.
  Harness n;
  n.now = Now{mono_us(5'000'000), d.h.now.wall + seconds(30)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, seconds(30)}, 0);
  EXPECT_EQ(rep.unconfirmed_steps, 0);
  EXPECT_EQ(n.core->state(), PumpState::infusing);
  EXPECT_GE(n.st().delivered_24h, before);
  EXPECT_EQ(n.st().patient_boluses_24h, 1u);
  EXPECT_TRUE(n.st().bolus_active);
  const Reply r = n.send({.kind = CommandKind::patient_bolus}, false);
  EXPECT_EQ(r.refusal, Refusal::lockout_active) << r.message.view();
  // No budget until the daemon reserves: the loop cannot step.
  n.run(minutes(1), seconds(1));
  EXPECT_EQ(n.st().steps_issued, d.s.steps_issued);
  ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{1000}}).ok());
  n.run(minutes(10), seconds(1));
  EXPECT_GT(n.st().steps_issued, d.s.steps_issued);
}

TEST(CoreRestore, UnconfirmedStepsCountAsPumpedNow) {
  Delivered d;
  Harness n;
  n.now = Now{d.h.now.mono + seconds(1), d.h.now.wall + seconds(1)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, seconds(1)}, 40);
  EXPECT_EQ(rep.unconfirmed_steps, 40);
  EXPECT_EQ(n.st().steps_issued, d.s.steps_issued + 40);
  EXPECT_NEAR(to_uL(n.st().reservoir), to_uL(d.s.reservoir) - 40 * 0.25, 1e-9);
  const double mass = 40 * 0.25 * 10.0;  // uL x mcg/uL, the catheter is full of the same drug
  EXPECT_NEAR(to_mcg(rep.unconfirmed_mass), mass, 1e-6);
  EXPECT_NEAR(to_mcg(n.st().delivered_24h), to_mcg(d.h.st().delivered_24h) + mass, 1e-3);
}

TEST(CoreRestore, AcrossARebootNoTimeIsAssumedAndAWallJumpIsLogged) {
  // S8: after a reboot the monotonic clock starts again near zero and the wall clock may
  // have moved anywhere.  With elapsed 0 everything stays in the 24 h window as if no
  // time had passed, and the wall-clock difference is logged as a jump (flex guard on).
  for (const Duration wall_moved : {days(1), -hours(2), hours(25)}) {
    Delivered d;
    Harness n;
    n.now = Now{mono_us(2'000'000), d.h.now.wall + wall_moved};
    n.core = std::make_unique<PumpCore>(n.board, n.now);
    const auto rep = n.core->restore_state(d.s, RestoreClock{n.now, Duration{0}}, 0);
    (void)rep;
    n.core->drain_events([&](const Event& e) { n.events.push_back(e); });
    EXPECT_NEAR(to_mcg(n.st().delivered_24h), to_mcg(d.h.st().delivered_24h), 1e-6) << to_usec(wall_moved);
    EXPECT_EQ(n.count(EventType::wall_clock_jump), 1u) << to_usec(wall_moved);
    EXPECT_EQ(n.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::lockout_active);
    // The lockout (3 h) runs on the monotonic clock from the restart, whatever the wall did.
    ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
    n.run(hours(2) + minutes(50), seconds(10));
    EXPECT_EQ(n.send({.kind = CommandKind::patient_bolus}, false).refusal, Refusal::lockout_active);
    n.run(minutes(20), seconds(10));
    EXPECT_TRUE(n.send({.kind = CommandKind::patient_bolus}, false).ok());
  }
}

TEST(CoreRestore, TheLedgerNeverForgetsEarlierThanItWould) {
  // Same boot, 23 h 45 min later: the bolus given 23 h 50 to 23 h 55 min ago is still counted.
  Harness h;
  TherapyPlan plan = bolus_plan();
  h.ready(plan);
  ASSERT_TRUE(h.send({.kind = CommandKind::clinician_bolus, .dose = mcg(200), .duration = minutes(5)}).ok());
  h.run(minutes(10), seconds(1));
  ASSERT_TRUE(h.send({.kind = CommandKind::suspend}).ok());
  CoreState s;
  h.core->export_state(s, h.now);
  const Mass m = h.st().delivered_24h;
  Harness n;
  n.now = Now{mono_us(7'000'000), h.now.wall + hours(23) + minutes(45)};
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  (void)n.core->restore_state(s, RestoreClock{n.now, hours(23) + minutes(45)}, 0);
  EXPECT_GE(n.st().delivered_24h, m * 0.99);
  n.run(minutes(30), seconds(10));
  EXPECT_LT(to_mcg(n.st().delivered_24h), 1.0) << "and it does leave the window afterwards";
}

TEST(CoreRestore, InterruptedPrimingComesBackSuspended) {
  Harness h;
  TherapyPlan plan = bolus_plan();
  ASSERT_TRUE(h.send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::refill, .volume = mL(20)}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
  ASSERT_TRUE(h.send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
  h.run(minutes(3), seconds(1));
  ASSERT_EQ(h.core->state(), PumpState::priming);
  CoreState s;
  h.core->export_state(s, h.now);
  Harness n;
  n.core = std::make_unique<PumpCore>(n.board, n.now);
  const auto rep = n.core->restore_state(s, RestoreClock{n.now, Duration{0}}, 0);
  EXPECT_TRUE(rep.priming_interrupted);
  EXPECT_EQ(n.core->state(), PumpState::suspended);
  ASSERT_TRUE(n.send({.kind = CommandKind::grant_budget, .steps = Steps{100000}}).ok());
  n.run(minutes(5), seconds(1));
  EXPECT_EQ(n.st().steps_issued, s.steps_issued) << "priming does not resume by itself";
}

TEST(CoreRestore, ClockElapsedRule) {
  app::ClockRef a{"boot-a", 1'000'000, 5};
  app::ClockRef b{"boot-a", 61'000'000, 5};
  EXPECT_EQ(app::assumed_elapsed(a, b), seconds(60));
  EXPECT_EQ(app::assumed_elapsed(b, a), Duration{0});
  b.boot_id = "boot-b";
  EXPECT_EQ(app::assumed_elapsed(a, b), Duration{0});
  a.boot_id.clear();
  EXPECT_EQ(app::assumed_elapsed(a, b), Duration{0});
}

}  // namespace
}  // namespace thecal::test
