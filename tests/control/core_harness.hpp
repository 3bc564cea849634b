// Test harness for PumpCore: a tiny plant (encoder, faults), made-up clocks, and an
// oracle that knows nothing of the core's internals — its own plug-flow catheter fed from
// the Actuation step counts and the concentrations the test put in the reservoir, and its
// own exact rolling 24 h sum — so the safety properties are checked independently.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "control/pump_core.hpp"

namespace thecal::test {

inline TherapyPlan continuous_plan(MassRate rate, Concentration conc, Mass max_daily = mg(3)) {
  TherapyPlan p;
  p.id = "test";
  p.drug = "morphine";
  p.phase = Phase::maintenance;
  p.concentration = conc;
  p.reservoir_capacity = mL(20);
  p.low_alarm = mL(2);
  p.catheter_volume = uL(220);
  p.basal_mode = BasalMode::continuous;
  p.continuous_rate = rate;
  p.max_daily_dose = max_daily;
  return p;
}

/// The oracle's catheter: a plain deque, written independently of control/catheter.cpp.
class OracleCatheter {
 public:
  explicit OracleCatheter(double capacity_uL) : cap_(capacity_uL) {}
  void set_capacity(double c) { cap_ = c; }
  void clear() { q_.clear(); }
  /// Pushes `v` uL at `c` mcg/uL; returns mcg leaving the tip.
  double push(double v, double c) {
    q_.push_back({v, c});
    double total = 0;
    for (const auto& s : q_) total += s.v;
    double excess = total - cap_;
    double out = 0;
    while (excess > 1e-12 && !q_.empty()) {
      auto& f = q_.front();
      const double take = std::min(f.v, excess);
      out += take * f.c;
      f.v -= take;
      excess -= take;
      if (f.v <= 1e-12) q_.pop_front();
    }
    return out;
  }
  [[nodiscard]] double contents() const {
    double t = 0;
    for (const auto& s : q_) t += s.v;
    return t;
  }
  [[nodiscard]] double tip_conc(double incoming) const {
    if (contents() < cap_ - 1e-9 || q_.empty()) return incoming;
    return q_.front().c;
  }

 private:
  struct Seg {
    double v, c;
  };
  double cap_;
  std::deque<Seg> q_;
};

/// Exact rolling-24 h mass at the tip, from the oracle's own deliveries.
class OracleLedger {
 public:
  void add(std::int64_t mono_us, double mcg) {
    if (mcg <= 0) return;
    q_.push_back({mono_us, mcg});
    sum_ += mcg;
  }
  double sum(std::int64_t mono_us) {
    while (!q_.empty() && q_.front().t <= mono_us - to_usec(days(1))) {
      sum_ -= q_.front().m;
      q_.pop_front();
    }
    if (q_.empty()) sum_ = 0;
    return sum_;
  }

 private:
  struct E {
    std::int64_t t;
    double m;
  };
  std::deque<E> q_;
  double sum_ = 0;
};

struct Harness {
  BoardParams board;
  Now now{mono_us(1'000'000), wall_us(1'790'000'000'000'000)};  // 2026-09-21
  std::unique_ptr<PumpCore> core;
  SensorInputs in;
  Actuation out;
  std::uint64_t id = 0;
  // plant
  std::uint64_t plant_steps = 0;
  bool encoder_works = true;
  double plant_gain = 1.0;  // encoder pulses per commanded step, relative (drift)
  double plant_pulse_acc = 0;
  // oracle
  OracleCatheter cath{220};
  OracleLedger truth;
  double reservoir_conc = 0;  // mcg/uL, as the test filled it
  double plan_conc = 0;       // mcg/uL, of the prescription the test loaded last
  double tip_mass_total = 0;
  std::uint64_t steps_out = 0;
  std::vector<Event> events;
  std::vector<std::pair<std::int64_t, std::uint32_t>> step_log;  // (mono us, steps)

  explicit Harness(BoardParams b = BoardParams{}) : board(b) { core = std::make_unique<PumpCore>(board, now); }

  Reply send(Command c, bool clinician = true, std::uint32_t uid = 1000) {
    c.id = ++id;
    c.caller = {uid, clinician};
    Reply r = core->apply(c, now);
    // The oracle keeps its own copy of what the test loaded: it never asks the core.
    if (r.ok() && (c.kind == CommandKind::load_prescription || c.kind == CommandKind::refill) && c.plan != nullptr) {
      plan_conc = to_mg_per_mL(c.plan->concentration);
      cath.set_capacity(to_uL(c.plan->catheter_volume));
    }
    if (r.ok() && c.kind == CommandKind::load_prescription && reservoir_conc == 0) reservoir_conc = plan_conc;
    if (r.ok() && c.kind == CommandKind::refill) reservoir_conc = plan_conc;
    if (r.ok() && c.kind == CommandKind::revise_catheter) {
      cath.set_capacity(to_uL(c.volume));
      cath.clear();
    }
    drain();
    return r;
  }
  void drain() {
    core->drain_events([&](const Event& e) { events.push_back(e); });
  }
  /// One cycle of `dt` (wall moves with it, plus `wall_jump`).
  void cycle(Duration dt, Duration wall_jump = Duration{0}) {
    now.mono += dt;
    now.wall += dt + wall_jump;
    core->tick(now, in, out);
    drain();
    steps_out += out.steps;
    if (out.steps > 0) {
      step_log.emplace_back(to_usec(now.mono), out.steps);
      const double v = to_uL(board.volume_per_step) * out.steps;
      const double m = cath.push(v, reservoir_conc);
      tip_mass_total += m;
      truth.add(to_usec(now.mono), m);
    }
    // The plant executes the steps before the next cycle; the encoder reports them.
    plant_steps += out.steps;
    if (encoder_works) {
      plant_pulse_acc += plant_gain * out.steps;
      in.encoder_pulses = static_cast<std::uint64_t>(plant_pulse_acc / board.steps_per_encoder_pulse);
    }
  }
  void run(Duration d, Duration step = msec(100)) {
    const MonoTime end = now.mono + d;
    while (now.mono < end) cycle(std::min(step, end - now.mono));
  }
  [[nodiscard]] const Status& st() const { return core->status(); }
  [[nodiscard]] bool alarm(AlarmCode c) const { return st().alarms[static_cast<std::size_t>(c)].active; }
  [[nodiscard]] std::size_t count(EventType t) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.type == t ? 1 : 0;
    return n;
  }
  /// Load, fill, grant budget, prime and (optionally) start.
  void ready(const TherapyPlan& plan, bool start = true, Volume fill = mL(20)) {
    ASSERT_TRUE(send({.kind = CommandKind::load_prescription, .plan = &plan}).ok());
    ASSERT_TRUE(send({.kind = CommandKind::refill, .volume = fill}).ok());
    ASSERT_TRUE(send({.kind = CommandKind::grant_budget, .steps = Steps{100'000'000}}).ok());
    ASSERT_TRUE(send({.kind = CommandKind::prime, .volume = plan.catheter_volume}).ok());
    const Duration prime_time{static_cast<std::int64_t>((plan.catheter_volume / board.prime_rate).canonical_value())};
    run(prime_time + minutes(1), seconds(1));
    ASSERT_EQ(core->state(), PumpState::idle);
    ASSERT_TRUE(st().catheter_primed);
    ASSERT_EQ(st().total_delivered_mass, mcg(0));
    if (start) {
      ASSERT_TRUE(send({.kind = CommandKind::start}).ok());
    }
  }
};

}  // namespace thecal::test

namespace thecal::test {

// Europe/Berlin around the harness's start (2026-09-21): CEST until 2026-10-25 01:00 UTC,
// CET until 2027-03-28 01:00 UTC, then CEST.
inline void berlin(TherapyPlan& p) {
  p.timezone = "Europe/Berlin";
  p.utc_offsets.clear();
  p.utc_offsets.push_back({wall_us(1774746000LL * 1'000'000 - 1), hours(1)});
  p.utc_offsets.push_back({wall_us(1774746000LL * 1'000'000), hours(2)});
  p.utc_offsets.push_back({wall_us(1792890000LL * 1'000'000), hours(1)});
  p.utc_offsets.push_back({wall_us(1806195600LL * 1'000'000), hours(2)});
  p.utc_offsets.push_back({wall_us(1824944400LL * 1'000'000), hours(1)});
}
/// Local midnight (Berlin, CEST) starting 2026-09-22, as wall time.
inline constexpr std::int64_t kMidnight0922 = 1790028000LL * 1'000'000;

inline TherapyPlan flex_plan(Mass max_daily = mg(3)) {
  TherapyPlan p = continuous_plan(MassRate{}, mg_per_mL(10), max_daily);
  berlin(p);
  p.basal_mode = BasalMode::flex;
  p.flex_steps.push_back({hours(0), mg_per_day(1.0)});
  p.flex_steps.push_back({hours(8), mg_per_day(2.0)});
  p.flex_steps.push_back({hours(20), mg_per_day(1.2)});
  return p;
}

/// Advances both clocks (no delivery logic involved beyond the ticks) to wall time `w`.
inline void run_until_wall(Harness& h, std::int64_t w_us, Duration step) {
  while (to_usec(h.now.wall) < w_us) h.cycle(std::min(step, Duration{w_us - to_usec(h.now.wall)}));
}

}  // namespace thecal::test
