// Issue 14 item 10: the simulated world keeps its promise at every TimeScale.  The journal
// grants step budget at the pace of real fsyncs; at 20,000x a simulated minute is 3 ms, so a
// slow grant would make the core drop programmed steps (budget_exhausted) that a real pump,
// with minutes of budget ahead, would have delivered.  The simulated world waits for the
// grant instead (DosingLoop::starved), for at most kMaxHoldUs of real time.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "control/pump_core.hpp"
#include "io/sim_plant.hpp"
#include "loop/dosing_loop.hpp"
#include "loop/loop_clock.hpp"

namespace thecal::loop {
namespace {

TherapyPlan continuous() {
  TherapyPlan p;
  p.id = "sim-budget";
  p.drug = "morphine";
  p.phase = Phase::maintenance;
  p.concentration = mg_per_mL(10);
  p.reservoir_capacity = mL(20);
  p.low_alarm = mL(2);
  p.catheter_volume = uL(0.25);  // one step: primed at once
  p.basal_mode = BasalMode::continuous;
  p.continuous_rate = mg_per_day(1.5);  // 150 uL/day: 600 steps a simulated day
  p.max_daily_dose = mg(3);
  return p;
}

struct World {
  BoardParams board;
  PumpCore core{board, Now{mono_us(real_monotonic_us()), wall_us(real_wall_us())}};
  io::SimPlant plant{board};
  DosingLoop loop{core, plant, [] {
                    LoopOptions o;
                    o.priority = 0;
                    o.simulated = true;
                    o.time_scale = 20'000;
                    return o;
                  }()};
  std::uint64_t next_id = 0;
  int exhausted = 0;
  Status last;

  void pump() {
    loop.drain_events([&](const Event& e) { exhausted += e.type == EventType::budget_exhausted ? 1 : 0; });
    Status s;
    if (loop.latest_status(s)) last = s;
  }
  template <class P>
  bool until(P p, int seconds) {  // a deadline, not a duration
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      pump();
      if (p()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling interval
    }
    return false;
  }
  /// Load, fill, prime (the one granted step), start: infusing with no budget left.
  void infusing(const TherapyPlan& plan) {
    ASSERT_FALSE(loop.start().has_value());
    ASSERT_TRUE(send({.kind = CommandKind::load_prescription, .plan = &plan}));
    ASSERT_TRUE(send({.kind = CommandKind::refill, .volume = mL(20)}));
    ASSERT_TRUE(send({.kind = CommandKind::grant_budget, .steps = Steps{1}}));
    ASSERT_TRUE(send({.kind = CommandKind::prime, .volume = uL(0.25)}));
    ASSERT_TRUE(until([&] { return last.catheter_primed && last.state == PumpState::idle; }, 30));
    ASSERT_TRUE(send({.kind = CommandKind::start}));
  }
  bool send(Command c) {
    c.id = ++next_id;
    c.caller = {0, true};
    if (!loop.post(c)) return false;
    bool ok = false, have = false;
    until(
        [&] {
          loop.drain_replies([&](const Reply& r) {
            if (r.id == c.id) {
              have = true;
              ok = r.ok();
            }
          });
          return have;
        },
        30);
    return ok;
  }
};

TEST(SimBudget, TheSimulatedWorldWaitsForEachGrantAndDropsNoStep) {
  World w;
  const TherapyPlan plan = continuous();
  ASSERT_NO_FATAL_FAILURE(w.infusing(plan));
  const WallTime t0 = w.last.wall;
  const std::uint64_t s0 = w.plant.steps_seen();
  // A journal that grants 3 steps only once the world has been waiting for it: each grant
  // comes "late" by a real-time margin the world would have used up at 20,000x.
  for (int i = 0; i < 40; ++i) {
    const std::uint64_t held = w.loop.held_cycles();
    ASSERT_TRUE(w.until([&] { return w.loop.held_cycles() > held + 20; }, 30)) << "grant " << i;
    ASSERT_TRUE(w.send({.kind = CommandKind::grant_budget, .steps = Steps{3}}));
  }
  ASSERT_TRUE(w.until([&] { return w.loop.held_cycles() > 0 && w.core.budget().count == 0; }, 30));
  ASSERT_TRUE(w.send({.kind = CommandKind::suspend}));
  w.pump();
  const double days = to_seconds(w.last.wall - t0) / 86'400.0;
  const auto stepped = static_cast<double>(w.plant.steps_seen() - s0);
  w.loop.stop();
  EXPECT_EQ(w.exhausted, 0) << "no programmed step was dropped for want of budget";
  EXPECT_EQ(stepped, 120.0) << "every granted step was used";
  // The world's clock stood still while it waited: 120 steps took the prescribed 0.2 days.
  EXPECT_NEAR(days * 600.0, 120.0, 2.0) << "simulated days " << days;
}

TEST(SimBudget, AJournalThatGrantsNothingLetsTheWorldRunOutOfBudgetAsARealPumpWould) {
  World w;
  const TherapyPlan plan = continuous();
  ASSERT_NO_FATAL_FAILURE(w.infusing(plan));
  // No grant ever comes: after kMaxHoldUs of real time the world runs on, and the core holds
  // delivery back (budget_exhausted), never steps without a reservation.
  const WallTime t0 = w.last.wall;
  ASSERT_TRUE(w.until([&] { return w.exhausted > 0; }, 30)) << "held " << w.loop.held_cycles();
  ASSERT_TRUE(w.until([&] { return w.last.wall - t0 > hours(1); }, 30)) << "the world ran on";
  w.loop.stop();
  EXPECT_EQ(w.plant.steps_seen(), 1u) << "only the granted priming step";
  EXPECT_GT(w.loop.held_cycles(), 0u);
}

}  // namespace
}  // namespace thecal::loop
