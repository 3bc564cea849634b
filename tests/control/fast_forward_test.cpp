// The exact fast-forward (issue 15 item 4): PumpCore::fast_forward against tick() at 1 kHz.
//
// Each randomized scenario runs two cores from the same construction with the same
// commands and input changes at the same times: one ticked every 1 ms with an ideal plant,
// the other fast-forwarded between those times.  At every command time and at the end the
// whole exported CoreState (its binary encoding, byte for byte), the events in order with
// every field, the steps, the last cycle's actuation and the status's exact fields must be
// identical.  Scenarios mix continuous and flex basal (steps changing inside the run),
// periodic doses, patient and clinician boluses, timed suspends, a refill with a new
// concentration (the bridge), the trial end, DST changes (Europe/Berlin), wall-clock
// jumps, faults, restarts (export and restore into a new core), tight daily limits (S1
// holds), small journal budgets, a motor rate limit and a battery that reaches ERI and EOS.
//
// Seeds: the fixed list 1..THECAL_FF_RUNS (default 24; 3 under sanitizers).  A failure prints its seed;
// THECAL_FF_SEED=<n> reruns that one scenario alone:
//
//   THECAL_FF_SEED=7 build/default/tests/control/control_unit_tests --gtest_filter='FastForward.*'
//
// THECAL_FF_CHUNK=<n> also compares every n cycles after the last command, to find where a
// divergence starts (ComposesWhenCutIntoPieces does it for a few seeds in CI);
// THECAL_FF_LONG_RUNS=<n> runs n of the 3-day scenarios at 100 ms (default 4).
//
// The cost test counts the fast-forward's iterations (computed cycles plus jumps): they
// grow with the steps delivered and the boundaries crossed, not with the cycles jumped.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "control/core_state.hpp"
#include "control/pump_core.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using namespace thecal::test;  // NOLINT(google-build-using-namespace)

// Sanitizers make the ticking reference ~20x slower: fewer scenarios there.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kRuns = 3;
constexpr std::uint64_t kChunkRuns = 2;
constexpr std::uint64_t kLongRuns = 1;
constexpr std::uint64_t kAdmixRuns = 2;
constexpr std::uint64_t kLongStopRuns = 1;
constexpr std::int64_t kSuspendDays = 45;
#else
constexpr std::uint64_t kRuns = 24;
constexpr std::uint64_t kChunkRuns = 6;
constexpr std::uint64_t kLongRuns = 4;
constexpr std::uint64_t kAdmixRuns = 12;
constexpr std::uint64_t kLongStopRuns = 4;
constexpr std::int64_t kSuspendDays = 60;
#endif
constexpr Duration kPeriod = msec(1);
/// Cost bound: fast-forward iterations allowed per simulated day beyond those per step
/// (local midnight, flex steps, the flow window every 15 min, minutes of an S1 hold).
constexpr std::uint64_t kPerDay = 500;
constexpr std::int64_t kSpringForward = 1774746000LL * 1'000'000;  // 2026-03-29 01:00 UTC
constexpr std::int64_t kFallBack = 1792890000LL * 1'000'000;       // 2026-10-25 01:00 UTC

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once, before any thread
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

bool same_event(const Event& a, const Event& b) {
  return a.when == b.when && a.mono == b.mono && a.type == b.type && a.uid == b.uid && a.old_state == b.old_state &&
         a.new_state == b.new_state && a.alarm == b.alarm && a.source == b.source &&
         same(a.mass.canonical_value(), b.mass.canonical_value()) &&
         same(a.volume.canonical_value(), b.volume.canonical_value()) &&
         same(a.volume2.canonical_value(), b.volume2.canonical_value()) && a.duration == b.duration &&
         a.command == b.command && a.refusal == b.refusal && a.index == b.index && same(a.percent, b.percent) &&
         same(a.estimate.canonical_value(), b.estimate.canonical_value()) &&
         same(a.pumped.canonical_value(), b.pumped.canonical_value()) &&
         same(a.tolerance.canonical_value(), b.tolerance.canonical_value()) && a.flagged == b.flagged &&
         a.drug == b.drug;
}

/// The first field in which two states differ ("" if none), for a failure's message.
std::string first_difference(const CoreState& a, const CoreState& b) {
  auto v = [](auto x) { return x.canonical_value(); };
  if (a.state != b.state) return "state";
  if (a.reservoir != b.reservoir) return "reservoir";
  if (a.catheter.size() != b.catheter.size()) return "catheter segments";
  for (std::size_t i = 0; i < a.catheter.size(); ++i) {
    if (v(a.catheter[i].volume) != v(b.catheter[i].volume)) return "catheter volume " + std::to_string(i);
  }
  for (std::size_t i = 0; i < a.ledger.size(); ++i) {
    if (a.ledger[i].index != b.ledger[i].index || a.ledger[i].pg != b.ledger[i].pg) return "ledger bucket " + std::to_string(i);
  }
  if (a.battery_used_mAs != b.battery_used_mAs) return "battery";
  if (a.jump_guard_until != b.jump_guard_until || a.pre_jump_offset != b.pre_jump_offset) return "jump guard";
  if (a.suspend_until != b.suspend_until || a.trial_end_mono != b.trial_end_mono) return "suspend or trial";
  if (v(a.prime_left) != v(b.prime_left)) return "prime_left";
  for (std::size_t i = 0; i < a.boluses.size(); ++i) {
    const auto& x = a.boluses[i];
    const auto& y = b.boluses[i];
    if (x.active != y.active || x.start != y.start || x.end != y.end || v(x.programmed) != v(y.programmed) ||
        v(x.held) != v(y.held)) {
      return "bolus " + std::to_string(i);
    }
  }
  if (a.periodic_last_day != b.periodic_last_day || a.periodic_last_fired != b.periodic_last_fired) return "periodic";
  for (std::size_t i = 0; i < a.alarms.size(); ++i) {
    const auto& x = a.alarms[i];
    const auto& y = b.alarms[i];
    if (x.active != y.active || x.acknowledged != y.acknowledged || x.cause_present != y.cause_present ||
        x.raised != y.raised || x.silenced_until != y.silenced_until) {
      return "alarm " + std::string(to_string(static_cast<AlarmCode>(i)));
    }
  }
  if (a.daily_hold != b.daily_hold) return "daily_hold";
  if (v(a.total_mass) != v(b.total_mass) || v(a.total_volume) != v(b.total_volume)) return "totals";
  if (v(a.programmed_volume) != v(b.programmed_volume)) return "programmed_volume";
  if (v(a.dropped_volume) != v(b.dropped_volume) || a.steps_dropped != b.steps_dropped) return "dropped";
  if (a.steps_issued != b.steps_issued) return "steps_issued";
  return "";
}

/// One core, driven either cycle by cycle or by fast_forward, with an ideal plant.
struct CoreRun {
  std::unique_ptr<PumpCore> core;
  IdealPlant plant;
  Now now;
  bool ff = false;
  Duration period = kPeriod;
  std::uint64_t id = 0;
  std::uint64_t steps = 0;
  std::uint64_t iterations = 0;
  std::uint64_t calls = 0;  // fast_forward calls (more than advances: early returns)
  std::int64_t cycles = 0;
  Actuation last{};
  std::vector<Event> events;
  // The cycles that stepped or changed the buzzer's pattern (CycleLog): ticking records
  // them itself, the fast-forward hands them over; the two lists must agree.
  bool log_cycles = false;
  std::vector<CycleLog::Entry> logged;
  CycleLog cycle_log{};
  BuzzerPattern pattern = BuzzerPattern::off;

  CoreRun(const BoardParams& b, Now start, bool fast, Duration cycle = kPeriod)
      : core(std::make_unique<PumpCore>(b, start)), now(start), ff(fast), period(cycle) {}

  void drain() {
    core->drain_events([&](const Event& e) { events.push_back(e); });
  }
  Reply send(Command c) {
    c.id = ++id;
    c.caller = {1000, true};
    const Reply r = core->apply(c, now);
    drain();
    return r;
  }
  void advance(std::int64_t n) {
    cycles += n;
    if (!ff) {
      for (std::int64_t i = 0; i < n; ++i) {
        now.mono += period;
        now.wall += period;
        core->tick(now, plant.in, last);
        plant.execute(last.steps, core->board().steps_per_encoder_pulse);
        steps += last.steps;
        if (log_cycles && (last.steps > 0 || core->status().buzzer_pattern != pattern)) {
          logged.push_back({now, last.steps, core->status().buzzer_pattern});
          pattern = core->status().buzzer_pattern;
        }
        drain();
      }
      return;
    }
    while (n > 0) {
      cycle_log.last_pattern = pattern;
      const FastForward r = core->fast_forward(now, period, n, plant, log_cycles ? &cycle_log : nullptr);
      if (log_cycles) {
        logged.insert(logged.end(), cycle_log.entries.begin(),
                      cycle_log.entries.begin() + static_cast<std::ptrdiff_t>(cycle_log.size));
        pattern = cycle_log.last_pattern;
      }
      ++calls;
      ASSERT_GT(r.cycles, 0);
      n -= r.cycles;
      now = r.now;
      steps += r.steps;
      iterations += r.iterations();
      last = r.last;
      drain();
    }
  }
};

/// Load, fill, grant `budget` and prime (the priming itself runs in the caller's cycles).
void set_up(CoreRun& run, const TherapyPlan& p, Volume fill, Steps budget) {
  ASSERT_TRUE(run.send({.kind = CommandKind::load_prescription, .plan = &p}).ok());
  ASSERT_TRUE(run.send({.kind = CommandKind::refill, .volume = fill}).ok());
  ASSERT_TRUE(run.send({.kind = CommandKind::grant_budget, .steps = budget}).ok());
  ASSERT_TRUE(run.send({.kind = CommandKind::prime, .volume = p.catheter_volume}).ok());
}

/// set_up, 5 s of priming (at 20 mL/h: up to 27 uL), then Start.
void start_infusing(CoreRun& run, const TherapyPlan& p) {
  set_up(run, p, mL(20), Steps{100'000'000});
  run.advance(seconds(5) / kPeriod);
  ASSERT_TRUE(run.send({.kind = CommandKind::start}).ok());
}

/// Everything the two runs must agree on, bit for bit.
void expect_same(CoreRun& a, CoreRun& b, const std::string& where) {
  SCOPED_TRACE(where);
  ASSERT_EQ(a.now.mono, b.now.mono);
  ASSERT_EQ(a.steps, b.steps) << "steps";
  ASSERT_EQ(a.plant.in.encoder_pulses, b.plant.in.encoder_pulses);
  ASSERT_EQ(a.events.size(), b.events.size()) << "events";
  for (std::size_t i = 0; i < a.events.size(); ++i) {
    ASSERT_TRUE(same_event(a.events[i], b.events[i]))
        << "event " << i << ": " << to_string(a.events[i].type) << " at " << to_usec(a.events[i].mono) << " against "
        << to_string(b.events[i].type) << " at " << to_usec(b.events[i].mono);
  }
  CoreState sa;
  CoreState sb;
  a.core->export_state(sa, a.now);
  b.core->export_state(sb, b.now);
  ASSERT_TRUE(encode_core_state(sa) == encode_core_state(sb)) << "CoreState differs: " << first_difference(sa, sb);
  const Status& x = a.core->status();
  const Status& y = b.core->status();
  ASSERT_EQ(x.state, y.state);
  ASSERT_EQ(x.pending_volume.canonical_value(), y.pending_volume.canonical_value()) << "pending (due and fraction)";
  ASSERT_EQ(x.battery_used_mAs, y.battery_used_mAs);
  ASSERT_EQ(x.steps_issued, y.steps_issued);
  ASSERT_EQ(x.delivered_24h.canonical_value(), y.delivered_24h.canonical_value());
  ASSERT_EQ(a.last.steps, b.last.steps);
  ASSERT_EQ(a.last.motor_enable, b.last.motor_enable);
  ASSERT_EQ(a.last.heartbeat, b.last.heartbeat);
  ASSERT_EQ(a.last.buzzer, b.last.buzzer);
  ASSERT_EQ(a.last.buzzer_pattern, b.last.buzzer_pattern);
  if (a.log_cycles && b.log_cycles) {
    ASSERT_EQ(a.logged.size(), b.logged.size()) << "stepping or sounding cycles";
    for (std::size_t i = 0; i < a.logged.size(); ++i) {
      ASSERT_EQ(a.logged[i].now.mono, b.logged[i].now.mono) << "logged cycle " << i;
      ASSERT_EQ(a.logged[i].now.wall, b.logged[i].now.wall) << "logged cycle " << i;
      ASSERT_EQ(a.logged[i].steps, b.logged[i].steps) << "logged cycle " << i;
      ASSERT_EQ(a.logged[i].pattern, b.logged[i].pattern) << "logged cycle " << i;
    }
  }
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(std::uint64_t seed) : g(seed * 0x9E3779B97F4A7C15ULL + 7) {}
  double uni(double a, double b) { return std::uniform_real_distribution<double>(a, b)(g); }
  std::int64_t irange(std::int64_t a, std::int64_t b) { return std::uniform_int_distribution<std::int64_t>(a, b)(g); }
  bool chance(double p) { return uni(0, 1) < p; }
};

/// Local time of day (Berlin) of wall time `w`, from the plan's own table.
Duration local_tod(const TherapyPlan& p, std::int64_t w) {
  Duration off = hours(1);
  for (const auto& o : p.utc_offsets) {
    if (to_usec(o.from) <= w) off = o.offset;
  }
  const std::int64_t local = w + to_usec(off);
  return Duration{((local % 86'400'000'000LL) + 86'400'000'000LL) % 86'400'000'000LL};
}

struct Scenario {
  BoardParams board;
  TherapyPlan plan;
  TherapyPlan plan2;  // the refill's (another concentration: the bridge)
  Now start{};
  Duration horizon{0};
  Duration period = kPeriod;
  struct Act {
    std::int64_t cycle = 0;
    int kind = 0;
    double x = 0;
    std::int64_t n = 0;
  };
  std::vector<Act> acts;
};

/// Acts of the long-stop scenarios (beyond the random kinds 0..10).
constexpr int kActStop = 11;       // an open-ended suspend
constexpr int kActOcclusion = 12;  // a high alarm's stop (occlusion on)

/// A scenario of `seed`; `long_run`: the same kinds of event over 3 days at 100 ms cycles
/// (the rolling 24 h's expiry, several local midnights and periodic days); `long_stop`: a
/// long run in which a stop of delivery crosses its 48 h mark (S14).
Scenario make_scenario(std::uint64_t seed, bool long_run = false, bool admix = false, bool long_stop = false) {
  long_run = long_run || long_stop;
  Rng r(seed);
  Scenario s;
  if (long_run) s.period = msec(100);
  s.board.prime_rate = mL_per_h(20);
  if (r.chance(0.25)) s.board.max_steps_per_second = 3;  // a bolus meets the motor's limit
  if (r.chance(0.3)) s.board.battery.capacity_mAs = 3600.0 * r.uni(0.6, 1.6);  // ERI, EOS within the run
  s.horizon = minutes(r.irange(8, 30));
  std::int64_t wall = 1'790'000'000LL * 1'000'000 + r.irange(0, 40) * 86'400'000'000LL + r.irange(0, 86'400'000'000LL);
  if (r.chance(0.3)) wall = (r.chance(0.5) ? kSpringForward : kFallBack) - r.irange(60'000'000, 720'000'000);
  s.start = {mono_us(1'000'000 + r.irange(0, 1'000'000'000)), wall_us(wall)};

  static constexpr std::array<double, 4> kConc{0.5, 1, 2, 10};
  TherapyPlan& p = s.plan;
  p = continuous_plan(MassRate{}, mg_per_mL(kConc[static_cast<std::size_t>(r.irange(0, 3))]));
  berlin(p);
  p.catheter_volume = uL(static_cast<double>(r.irange(5, 40)));
  const double uL_day = r.uni(200, 6000);
  const Mass day = p.concentration * uL(uL_day);
  // Local time of day at the run's start (after priming, about a minute in).
  const Duration tod = local_tod(p, wall);
  if (r.chance(0.5)) {
    p.continuous_rate = MassRate::canonical(to_mcg(day) / 86400e6);
  } else {
    p.basal_mode = BasalMode::flex;
    p.flex_steps.push_back({Duration{0}, MassRate::canonical(to_mcg(day) * r.uni(0.2, 1.8) / 86400e6)});
    // Steps that change inside the run.
    Duration at = tod + minutes(r.irange(1, 10));
    for (int i = 0; i < 3 && at < days(1); ++i) {
      p.flex_steps.push_back({at, MassRate::canonical(to_mcg(day) * r.uni(0, 1.8) / 86400e6)});
      at += minutes(r.irange(1, 10));
    }
  }
  for (auto i = r.irange(0, 2); i > 0; --i) {
    const Duration at = tod + minutes(r.irange(2, 25));
    if (at >= days(1)) continue;
    p.periodic.push_back({at, p.concentration * uL(r.uni(1, 20)), minutes(r.irange(1, 10))});
  }
  std::sort(p.periodic.begin(), p.periodic.end(), [](const auto& a, const auto& b) { return a.at < b.at; });
  if (r.chance(0.8)) {
    p.patient_bolus = PatientBolusRule{p.concentration * uL(r.uni(1, 15)), minutes(r.irange(1, 5)),
                                       minutes(r.irange(0, 6)), static_cast<std::uint32_t>(r.irange(1, 6))};
  }
  Mass planned = to_mcg(day) > 0 ? day * 1.8 : mcg(0);
  for (const auto& d : p.periodic) planned += d.dose;
  if (p.patient_bolus) planned += p.patient_bolus->dose * static_cast<double>(p.patient_bolus->max_per_day);
  p.max_daily_dose = planned * r.uni(1.0, 1.3);
  if (r.chance(0.3)) {
    // Tight: S1 holds back within the run (the core's ledger may already count a past day).
    p.max_daily_dose = p.concentration * uL(r.uni(5, 40));
  }
  if (r.chance(0.25)) {
    p.phase = Phase::trial;
    p.trial_ends = s.start.wall + minutes(r.irange(2, 30));
  }
  s.plan2 = p;
  s.plan2.concentration = p.concentration * (r.chance(0.5) ? 2.0 : 0.5);

  if (long_run) s.horizon = days(3);
  const std::int64_t total = s.horizon / s.period;
  for (auto i = r.irange(3, 14); i > 0; --i) {
    s.acts.push_back({r.irange(1, total - 1), static_cast<int>(r.irange(0, 10)), r.uni(0, 1), r.irange(0, 1'000'000)});
  }
  if (long_stop) {
    // S14: a stop (suspend until Resume, or an occlusion's high alarm) early in the run, so
    // that its 48 h mark falls inside it; inside the stop only acts that keep it a stop (no
    // timed suspend, refill or resume); a restart before the mark for half the seeds, one
    // after it for some; a resume after the mark (ending the stop: its second entry) for
    // most.  Drawn from its own stream.
    Rng q(seed + 2'000'003);
    const std::int64_t begin = static_cast<std::int64_t>(static_cast<double>(total) * q.uni(0.05, 0.3));
    const std::int64_t mark = begin + hours(48) / s.period;
    std::int64_t end = total;
    if (q.chance(0.75)) {
      end = std::min(total - 1, mark + static_cast<std::int64_t>(q.uni(0, 0.25) * static_cast<double>(total)));
    }
    // (A timed suspend up to 305 s before would still run at `begin`: Suspend is refused
    // while suspended, and the timer would end the stop.)
    const std::int64_t timer = seconds(310) / s.period;
    std::erase_if(s.acts, [&](const Scenario::Act& a) {
      const bool ends_a_stop = a.kind == 3 || a.kind == 4 || a.kind == 7 || a.kind == 10;
      return ends_a_stop && a.cycle >= begin - (a.kind == 3 ? timer : 0) && a.cycle <= end;
    });
    s.acts.push_back({begin, q.chance(0.7) ? kActStop : kActOcclusion, 0, 0});
    if (q.chance(0.5)) s.acts.push_back({q.irange(begin + 1, mark - 1), 9, 0, 0});
    if (q.chance(0.3) && mark + 1 < end) s.acts.push_back({q.irange(mark + 1, end - 1), 9, 0, 0});
    if (end < total) s.acts.push_back({end, 7, 0, 0});
  }
  std::stable_sort(s.acts.begin(), s.acts.end(), [](const auto& a, const auto& b) { return a.cycle < b.cycle; });
  if (admix) {
    // Issue 16: bupivacaine in the same solution (drawn from its own stream, so that the
    // scenarios without it stay as they were); its ratio changes with plan2's refill, and
    // half the time its own limit is the tighter one, so that S1 holds back for it.
    Rng m(seed + 1'000'003);
    const Concentration b = p.concentration * m.uni(0.2, 2.0);
    const Mass planned_b = p.max_daily_dose * (b / p.concentration);
    const Mass lim = m.chance(0.5) ? planned_b * m.uni(0.05, 0.5) : planned_b * 1.5;
    s.plan.admixture.push_back(AdmixtureDrug{FixedString<32>{"bupivacaine"}, b, lim});
    s.plan2.admixture.push_back(AdmixtureDrug{FixedString<32>{"bupivacaine"}, b * (m.chance(0.5) ? 1.5 : 1.0), lim});
  }
  return s;
}

/// Applies one act to a run (the same to both).
void act(CoreRun& run, const Scenario& s, const Scenario::Act& a) {
  switch (a.kind) {
    case 0:
    case 1: (void)run.send({.kind = CommandKind::patient_bolus}); break;
    case 2:
      (void)run.send({.kind = CommandKind::clinician_bolus,
                      .dose = s.plan.concentration * uL(1 + 10 * a.x),
                      .duration = seconds(30 + a.n % 600)});
      break;
    case 3: (void)run.send({.kind = CommandKind::suspend, .duration = seconds(5 + a.n % 300)}); break;
    case 4:
      // A refill with another concentration: the catheter bridges.
      (void)run.send({.kind = CommandKind::suspend});
      (void)run.send({.kind = CommandKind::refill, .plan = a.x < 0.5 ? &s.plan2 : &s.plan, .volume = mL(15),
                      .withdrawn = run.core->status().reservoir});
      (void)run.send({.kind = CommandKind::resume});
      break;
    case 5:
      // A wall-clock jump (NTP step or manual set): takes effect at the next cycle.
      run.now.wall += Duration{(a.x < 0.5 ? -1 : 1) * (2'000'000 + a.n * 7'000)};
      break;
    case 6:
      // A fault for a while (the next act of this kind, or acknowledge, clears it).
      if (a.x < 0.5) run.plant.in.occlusion = !run.plant.in.occlusion;
      else run.plant.in.low_battery = !run.plant.in.low_battery;
      break;
    case 7:
      run.plant.in.occlusion = false;
      for (std::size_t i = 0; i < kAlarmCount; ++i) {
        if (run.core->status().alarms[i].active) {
          (void)run.send({.kind = CommandKind::acknowledge_alarm, .alarm = static_cast<AlarmCode>(i)});
        }
      }
      (void)run.send({.kind = CommandKind::resume});
      break;
    case 8:
      if (a.x < 0.5) (void)run.send({.kind = CommandKind::cancel_bolus});
      else (void)run.send({.kind = CommandKind::grant_budget, .steps = Steps{1 + a.n % 40}});
      break;
    case 9: {
      // A restart: the state exported and restored into a new core, as thecald does
      // through its journal (no time lost), then a fresh budget.
      CoreState saved;
      run.core->export_state(saved, run.now);
      run.core = std::make_unique<PumpCore>(s.board, run.now);
      (void)run.core->restore_state(saved, RestoreClock{run.now, Duration{0}}, 0);
      (void)run.send({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000}});
      break;
    }
    case kActStop: (void)run.send({.kind = CommandKind::suspend}); break;
    case kActOcclusion: run.plant.in.occlusion = true; break;
    default: (void)run.send({.kind = CommandKind::resume}); break;
  }
}

/// daily_limit alarms raised for bupivacaine (the admixture scenarios must reach them).
std::uint64_t g_admix_holds = 0;
/// S14's long-stop risk events (the 48 h mark, the resume after it) the scenarios reached.
std::uint64_t g_long_stops = 0;
std::uint64_t g_long_stops_ended = 0;

/// Runs one scenario; with `chunk` > 0 it also compares every `chunk` cycles after the
/// last command (fast-forwards cut into pieces must compose).
void run_seed(std::uint64_t seed, std::int64_t chunk, std::uint64_t& cycles_total, std::uint64_t& iterations_total,
              bool long_run = false, bool admix = false, bool long_stop = false) {
  SCOPED_TRACE(::testing::Message() << "fast-forward scenario seed " << seed << " (rerun alone: THECAL_FF_SEED=" << seed
                                    << ")");
  const Scenario s = make_scenario(seed, long_run, admix, long_stop);
  CoreRun tick(s.board, s.start, false, s.period);
  CoreRun fast(s.board, s.start, true, s.period);
  // Every other scenario also through a CycleLog (its early returns when full included).
  tick.log_cycles = fast.log_cycles = seed % 2 == 0;
  // Set-up: load, fill, a budget (sometimes small: budget_exhausted), prime, start.
  const Steps budget{s.acts.size() % 3 == 0 ? 400 : 100'000'000};
  set_up(tick, s.plan, mL(15), budget);
  set_up(fast, s.plan, mL(15), budget);
  if (::testing::Test::HasFatalFailure()) return;
  const std::int64_t prime_cycles =
      static_cast<std::int64_t>((s.plan.catheter_volume / s.board.prime_rate).canonical_value()) / s.period.count() + 500;
  tick.advance(prime_cycles);
  fast.advance(prime_cycles);
  if (::testing::Test::HasFatalFailure()) return;
  expect_same(tick, fast, "after priming");
  if (::testing::Test::HasFatalFailure()) return;
  for (CoreRun* run : {&tick, &fast}) (void)run->send({.kind = CommandKind::start});
  std::int64_t at = 0;
  const std::int64_t total = s.horizon / s.period;
  for (const auto& a : s.acts) {
    tick.advance(a.cycle - at);
    fast.advance(a.cycle - at);
    if (::testing::Test::HasFatalFailure()) return;
    at = a.cycle;
    expect_same(tick, fast, "before act " + std::to_string(a.kind) + " at cycle " + std::to_string(a.cycle));
    if (::testing::Test::HasFatalFailure()) return;
    act(tick, s, a);
    act(fast, s, a);
    expect_same(tick, fast, "after act " + std::to_string(a.kind) + " at cycle " + std::to_string(a.cycle));
    if (::testing::Test::HasFatalFailure()) return;
  }
  while (chunk > 0 && at + chunk < total) {
    tick.advance(chunk);
    fast.advance(chunk);
    at += chunk;
    expect_same(tick, fast, "at cycle " + std::to_string(at));
    if (::testing::Test::HasFatalFailure()) return;
  }
  tick.advance(total - at);
  fast.advance(total - at);
  if (::testing::Test::HasFatalFailure()) return;
  expect_same(tick, fast, "at the end");
  for (const auto& e : tick.events) {
    g_admix_holds += e.type == EventType::alarm_raised && e.alarm == AlarmCode::daily_limit && e.drug.view() == "bupivacaine";
    g_long_stops += e.type == EventType::risk_event && e.index == kRiskLongStop;
    g_long_stops_ended += e.type == EventType::risk_event && e.index == kRiskLongStopEnded;
  }
  cycles_total += static_cast<std::uint64_t>(fast.cycles);
  iterations_total += fast.iterations;
}

TEST(FastForward, EqualsTickingAt1kHzBitForBit) {
  const std::uint64_t one = env_u64("THECAL_FF_SEED", 0);
  const std::uint64_t runs = one != 0 ? 1 : env_u64("THECAL_FF_RUNS", kRuns);
  std::uint64_t cycles = 0;
  std::uint64_t iterations = 0;
  for (std::uint64_t i = 0; i < runs; ++i) {
    const std::uint64_t seed = one != 0 ? one : i + 1;
    run_seed(seed, static_cast<std::int64_t>(env_u64("THECAL_FF_CHUNK", 0)), cycles, iterations);
    if (::testing::Test::HasFatalFailure()) {
      std::cout << "fast-forward scenario seed " << seed << " FAILED\n";
      return;
    }
  }
  std::cout << "fast-forward: " << runs << " scenarios, " << cycles << " cycles of 1 ms in " << iterations
            << " iterations\n";
}

TEST(FastForward, EqualsTickingWithAnAdmixture) {
  // Issue 16: the same with a second drug in the solution (per-drug catheter, ledger, S1
  // hold-back and bolus checks): the state, with its admixture tail, bit for bit.
  std::uint64_t cycles = 0;
  std::uint64_t iterations = 0;
  for (std::uint64_t seed = 1; seed <= kAdmixRuns; ++seed) {
    run_seed(seed, 0, cycles, iterations, false, true);
    if (::testing::Test::HasFatalFailure()) {
      std::cout << "fast-forward admixture scenario seed " << seed << " FAILED\n";
      return;
    }
  }
  EXPECT_GT(g_admix_holds, 0U) << "no scenario held delivery back for the admixture drug";
}

TEST(FastForward, ComposesWhenCutIntoPieces) {
  // The same scenarios compared every 997 cycles: a fast-forward cut anywhere (mid-stretch,
  // mid-bolus, one cycle before a step) still equals ticking.
  std::uint64_t cycles = 0;
  std::uint64_t iterations = 0;
  for (std::uint64_t seed = 1; seed <= kChunkRuns; ++seed) {
    run_seed(seed, 997, cycles, iterations);
    if (::testing::Test::HasFatalFailure()) {
      std::cout << "fast-forward scenario seed " << seed << " (THECAL_FF_CHUNK=997) FAILED\n";
      return;
    }
  }
}

TEST(FastForward, EqualsTickingOverDaysAt100ms) {
  // The same for 3 days at 100 ms cycles: the ledger's buckets leave the window, local
  // days turn, periodic doses come back, the flow window runs many times.
  std::uint64_t cycles = 0;
  std::uint64_t iterations = 0;
  const std::uint64_t runs = env_u64("THECAL_FF_LONG_RUNS", kLongRuns);
  for (std::uint64_t seed = 1; seed <= runs; ++seed) {
    run_seed(seed, 0, cycles, iterations, true);
    if (::testing::Test::HasFatalFailure()) {
      std::cout << "fast-forward 3-day scenario seed " << seed << " FAILED\n";
      return;
    }
  }
  std::cout << "fast-forward: " << runs << " scenarios of 3 days, " << cycles << " cycles of 100 ms in " << iterations
            << " iterations\n";
}

TEST(FastForward, EqualsTickingAcrossA48HourStop) {
  // S14: 3 days at 100 ms in which a stop of delivery (a suspend or a high alarm's stop)
  // reaches its 48 h mark, with restarts before and after the mark, wall-clock jumps and
  // faults inside the stop and most often a resume after it: the risk events at the same
  // instants, the stop's start and its logged mark in the CoreState, bit for bit.
  std::uint64_t cycles = 0;
  std::uint64_t iterations = 0;
  const std::uint64_t marks0 = g_long_stops;
  const std::uint64_t ended0 = g_long_stops_ended;
  for (std::uint64_t seed = 1; seed <= kLongStopRuns; ++seed) {
    run_seed(seed, 0, cycles, iterations, true, false, true);
    if (::testing::Test::HasFatalFailure()) {
      std::cout << "fast-forward long-stop scenario seed " << seed << " FAILED\n";
      return;
    }
  }
  EXPECT_GE(g_long_stops - marks0, kLongStopRuns) << "a scenario's stop did not reach its 48 h mark";
  std::cout << "fast-forward: " << kLongStopRuns << " long-stop scenarios, " << g_long_stops - marks0
            << " 48 h marks, " << g_long_stops_ended - ended0 << " resumed after one\n";
}

TEST(FastForward, ReturnsEarlySoThatNoEventIsLost) {
  // Suspended for 60 days with three periodic doses a day: 180 periodic_skipped events,
  // more than half the core's buffer holds.  One advance() asks for all of it; fast_forward
  // returns each time half the buffer is pending, and the whole equals ticking (1 s cycles).
  TherapyPlan p = flex_plan(mg(8));
  p.catheter_volume = uL(10);
  p.periodic.push_back({hours(2), mg(0.1), minutes(5)});
  p.periodic.push_back({hours(9), mg(0.1), minutes(5)});
  p.periodic.push_back({hours(17), mg(0.1), minutes(5)});
  BoardParams b;
  b.prime_rate = mL_per_h(20);
  const Now start{mono_us(1'000'000), wall_us(kMidnight0922 + to_usec(hours(5)))};
  CoreRun tick(b, start, false, seconds(1));
  CoreRun fast(b, start, true, seconds(1));
  for (CoreRun* run : {&tick, &fast}) {
    start_infusing(*run, p);
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_TRUE(run->send({.kind = CommandKind::suspend}).ok());
  }
  const std::uint64_t calls0 = fast.calls;
  tick.advance(days(kSuspendDays) / seconds(1));
  fast.advance(days(kSuspendDays) / seconds(1));
  expect_same(tick, fast, "after the days suspended");
  std::size_t skipped = 0;
  for (const auto& e : fast.events) skipped += e.type == EventType::periodic_skipped ? 1 : 0;
  EXPECT_EQ(skipped, static_cast<std::size_t>(3 * kSuspendDays));
  EXPECT_GT(skipped, PumpCore::kEventCapacity / 2);
  EXPECT_GT(fast.calls - calls0, 1u);
  EXPECT_EQ(fast.core->events_dropped(), 0u);
}

/// Continuous basal at a low rate for `d`: the fast-forward's iterations and steps.
std::pair<std::uint64_t, std::uint64_t> basal_cost(Duration d) {
  TherapyPlan p = continuous_plan(mg_per_day(0.1), mg_per_mL(1), mg(1));  // 100 uL/day: 400 steps/day
  p.catheter_volume = uL(10);
  BoardParams b;
  b.prime_rate = mL_per_h(20);
  CoreRun run(b, {mono_us(1'000'000), wall_us(1'790'000'000'000'000)}, true);
  start_infusing(run, p);
  const std::uint64_t it0 = run.iterations;
  const std::uint64_t st0 = run.steps;
  run.advance(d / kPeriod);
  return {run.iterations - it0, run.steps - st0};
}

TEST(FastForward, NinetyDaysOfFlexWithEveryAllowedBolusCostsPerStep) {
  // Issue 19's preview case: flex basal, a periodic dose and every patient bolus the rules
  // allow (asked for again at each lockout's end), 90 days at 1 ms cycles.
  TherapyPlan p = flex_plan(mg(8));
  p.concentration = mg_per_mL(20);
  p.catheter_volume = uL(10);
  p.periodic.push_back({hours(8), mg(0.5), minutes(30)});
  p.patient_bolus = PatientBolusRule{mg(0.2), minutes(10), hours(3), 6};
  BoardParams b;
  b.prime_rate = mL_per_h(20);
  CoreRun run(b, {mono_us(1'000'000), wall_us(kMidnight0922 + to_usec(hours(5)))}, true);
  start_infusing(run, p);
  if (::testing::Test::HasFatalFailure()) return;
  const std::uint64_t it0 = run.iterations;
  const std::uint64_t st0 = run.steps;
  int given = 0;
  for (int i = 0; i < 90 * 8; ++i) {
    given += run.send({.kind = CommandKind::patient_bolus}).ok() ? 1 : 0;
    run.advance(hours(3) / kPeriod);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const std::uint64_t it = run.iterations - it0;
  const std::uint64_t steps = run.steps - st0;
  std::cout << "fast-forward, 90 days of flex with a periodic dose and " << given << " patient boluses: " << it
            << " iterations for " << steps << " steps (7,776,000,000 cycles)\n";
  EXPECT_EQ(run.core->state(), PumpState::infusing);
  EXPECT_GE(given, 90 * 6 - 1);
  EXPECT_LE(it, 4 * steps + 90 * kPerDay);
}

TEST(FastForward, CostGrowsWithEventsNotWithTime) {
  const auto [it1, steps1] = basal_cost(days(1));
  const auto [it30, steps30] = basal_cost(days(30));
  std::cout << "fast-forward cost: 1 day " << it1 << " iterations for " << steps1 << " steps; 30 days " << it30
            << " iterations for " << steps30 << " steps (86,400,000 and 2,592,000,000 cycles)\n";
  EXPECT_NEAR(static_cast<double>(steps1), 400, 2);
  EXPECT_NEAR(static_cast<double>(steps30), 12'000, 2);
  // A step is due, computed, and its encoder pulse seen in the next cycle: a few
  // iterations per step, plus a few per boundary (local midnight, the flow window).
  EXPECT_LE(it1, 4 * steps1 + kPerDay);
  EXPECT_LE(it30, 4 * steps30 + 30 * kPerDay);
  // Proportional to the events: 30 days cost about 30 times one day.
  EXPECT_LE(static_cast<double>(it30), 32.0 * static_cast<double>(it1));
  EXPECT_GE(static_cast<double>(it30), 25.0 * static_cast<double>(it1));
}

// ---- The exact image (issue 15, mid-run snapshots of the flight recorder) ---------------
// A core restored from an exact image (PumpCore::export_image, through its binary form,
// into a new core) ticks on bit for bit as the core it was taken from: the same scenarios
// as above, one run ticked straight through, the other replaced by its own image every few
// hundred to few thousand cycles (mid-bolus, mid-stretch, with alarms sounding, the flow
// window partly full, S1 holding back, the admixture's ledgers) and before and after every
// act; compared at every cut and at the end (expect_same), and the two images byte for
// byte.

/// `run`'s core replaced by a new one restored from its image, through the codec.
void reimage(CoreRun& run, const BoardParams& board) {
  auto im = std::make_unique<CoreImage>();
  ASSERT_TRUE(run.core->export_image(*im)) << "events pending at a cycle boundary";
  const auto bytes = encode_core_image(*im);
  std::string err;
  const auto back = decode_core_image(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), &err);
  ASSERT_TRUE(back) << err;
  run.core = std::make_unique<PumpCore>(board, Now{mono_us(0), wall_us(0)});
  run.core->restore_image(*back);
  auto again = std::make_unique<CoreImage>();
  ASSERT_TRUE(run.core->export_image(*again));
  ASSERT_TRUE(encode_core_image(*again) == bytes) << "the restored core's image differs from the one it was restored from";
}

void expect_same_image(CoreRun& a, CoreRun& b, const std::string& where) {
  expect_same(a, b, where);
  if (::testing::Test::HasFatalFailure()) return;
  auto x = std::make_unique<CoreImage>();
  auto y = std::make_unique<CoreImage>();
  ASSERT_TRUE(a.core->export_image(*x));
  ASSERT_TRUE(b.core->export_image(*y));
  ASSERT_TRUE(encode_core_image(*x) == encode_core_image(*y)) << where << ": the images differ";
}

std::uint64_t g_images = 0;

void run_image_seed(std::uint64_t seed, bool admix) {
  SCOPED_TRACE(::testing::Message() << "exact image scenario seed " << seed << (admix ? " (admixture)" : ""));
  const Scenario s = make_scenario(seed, false, admix);
  CoreRun ref(s.board, s.start, false, s.period);
  CoreRun img(s.board, s.start, false, s.period);
  const Steps budget{s.acts.size() % 3 == 0 ? 400 : 100'000'000};
  set_up(ref, s.plan, mL(15), budget);
  set_up(img, s.plan, mL(15), budget);
  if (::testing::Test::HasFatalFailure()) return;
  Rng r(seed + 77);
  const std::int64_t cut = r.irange(1000, 6000);
  auto advance = [&](std::int64_t n) {
    while (n > 0) {
      const std::int64_t k = std::min(n, cut);
      ref.advance(k);
      img.advance(k);
      n -= k;
      reimage(img, s.board);
      ++g_images;
      if (::testing::Test::HasFatalFailure()) return;
    }
  };
  const std::int64_t prime_cycles =
      static_cast<std::int64_t>((s.plan.catheter_volume / s.board.prime_rate).canonical_value()) / s.period.count() + 500;
  advance(prime_cycles / 2);  // mid-priming
  advance(prime_cycles - prime_cycles / 2);
  if (::testing::Test::HasFatalFailure()) return;
  for (CoreRun* run : {&ref, &img}) (void)run->send({.kind = CommandKind::start});
  std::int64_t at = 0;
  for (const auto& a : s.acts) {
    advance(a.cycle - at);
    if (::testing::Test::HasFatalFailure()) return;
    at = a.cycle;
    expect_same_image(ref, img, "before act " + std::to_string(a.kind) + " at cycle " + std::to_string(a.cycle));
    if (::testing::Test::HasFatalFailure()) return;
    act(ref, s, a);
    act(img, s, a);
    reimage(img, s.board);
    if (::testing::Test::HasFatalFailure()) return;
  }
  advance(s.horizon / s.period - at);
  if (::testing::Test::HasFatalFailure()) return;
  expect_same_image(ref, img, "at the end");
}

TEST(ExactImage, RestoredMidRunTicksOnBitForBit) {
  for (std::uint64_t seed = 1; seed <= kRuns / 3; ++seed) {
    run_image_seed(seed, false);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (std::uint64_t seed = 1; seed <= kAdmixRuns / 3; ++seed) {
    run_image_seed(seed, true);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::cout << "exact image: " << g_images << " mid-run restores, each ticked on bit for bit\n";
}

// The transient parts a restart drops, each live when the image is taken: a bolus running,
// a high alarm sounding (acknowledged: silenced), the flow window partly full with the
// encoder behind, an alarm test sounding, a refill session with a catheter-port injection.
TEST(ExactImage, CarriesWhatARestartDrops) {
  BoardParams board;
  board.prime_rate = mL_per_h(20);
  TherapyPlan p = continuous_plan(mg_per_day(2), mg_per_mL(1), mg(20));
  p.catheter_volume = uL(10);
  p.patient_bolus = PatientBolusRule{mg(0.05), minutes(10), hours(1), 4};
  const Now start{mono_us(5'000'000), wall_us(1'790'000'000'000'000)};
  CoreRun ref(board, start, false);
  CoreRun img(board, start, false);
  for (CoreRun* run : {&ref, &img}) start_infusing(*run, p);
  if (::testing::Test::HasFatalFailure()) return;
  auto both = [&](Command c) {
    const Reply x = ref.send(c);
    const Reply y = img.send(c);
    EXPECT_EQ(x.refusal, y.refusal);
  };
  auto step = [&](Duration d, const std::string& where) {
    ref.advance(d / kPeriod);
    img.advance(d / kPeriod);
    reimage(img, board);
    if (::testing::Test::HasFatalFailure()) return;
    ref.advance(1234);
    img.advance(1234);
    expect_same_image(ref, img, where);
  };
  // The encoder falls behind (a slipping motor): the flow window fills with a deviation.
  for (CoreRun* run : {&ref, &img}) run->plant.in.encoder_pulses = 0;
  step(minutes(3), "flow window partly full");
  if (::testing::Test::HasFatalFailure()) return;
  both({.kind = CommandKind::patient_bolus});
  step(minutes(2), "bolus running");
  if (::testing::Test::HasFatalFailure()) return;
  for (CoreRun* run : {&ref, &img}) run->plant.in.occlusion = true;
  step(seconds(2), "occlusion sounding");
  both({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion});
  step(seconds(30), "occlusion silenced");
  for (CoreRun* run : {&ref, &img}) run->plant.in.occlusion = false;
  both({.kind = CommandKind::acknowledge_alarm, .alarm = AlarmCode::occlusion});
  both({.kind = CommandKind::test_alarm});
  step(seconds(3), "alarm test sounding");
  both({.kind = CommandKind::begin_refill});
  for (CoreRun* run : {&ref, &img}) run->plant.in.occlusion = true;
  step(seconds(1), "refill session, catheter-port injection");
  if (::testing::Test::HasFatalFailure()) return;
  EXPECT_EQ(ref.core->state(), PumpState::refilling);
  EXPECT_TRUE(ref.core->status().alarms[static_cast<std::size_t>(AlarmCode::catheter_port_injection)].active);
  for (CoreRun* run : {&ref, &img}) run->plant.in.occlusion = false;
  step(minutes(20), "refill unfinished");
  EXPECT_TRUE(ref.core->status().alarms[static_cast<std::size_t>(AlarmCode::refill_unfinished)].active);
  // A restart (restore_state) of the same core does not tick on the same: the image is
  // what carries these (the step accumulator's fraction, the flow window, the sound).
  CoreRun restarted(board, ref.now, false);
  CoreState st;
  ref.core->export_state(st, ref.now);
  (void)restarted.core->restore_state(st, RestoreClock{ref.now, Duration{0}}, 0);
  auto x = std::make_unique<CoreImage>();
  auto y = std::make_unique<CoreImage>();
  restarted.drain();
  ASSERT_TRUE(ref.core->export_image(*x));
  ASSERT_TRUE(restarted.core->export_image(*y));
  EXPECT_FALSE(encode_core_image(*x) == encode_core_image(*y)) << "a restart keeps everything: nothing for the image to add";
}

TEST(ExactImage, IsRefusedWhileEventsArePending) {
  BoardParams board;
  const Now start{mono_us(5'000'000), wall_us(1'790'000'000'000'000)};
  PumpCore core(board, start);
  Command c;
  c.kind = CommandKind::load_prescription;  // refused: no plan, one command_refused event
  (void)core.apply(c, start);
  ASSERT_GT(core.events_pending(), 0U);
  auto im = std::make_unique<CoreImage>();
  im->runtime.budget = 4242;
  EXPECT_FALSE(core.export_image(*im));
  EXPECT_EQ(im->runtime.budget, 4242) << "nothing written";
  core.drain_events([](const Event&) {});
  EXPECT_TRUE(core.export_image(*im));
}

TEST(ExactImage, ABadImageIsRefusedByName) {
  BoardParams board;
  const Now start{mono_us(5'000'000), wall_us(1'790'000'000'000'000)};
  PumpCore core(board, start);
  auto im = std::make_unique<CoreImage>();
  ASSERT_TRUE(core.export_image(*im));
  const auto bytes = encode_core_image(*im);
  std::string text(bytes.begin(), bytes.end());
  std::string err;
  EXPECT_TRUE(decode_core_image(text, &err)) << err;
  EXPECT_FALSE(decode_core_image(text.substr(0, text.size() - 1), &err));
  EXPECT_NE(err.find("core image"), std::string::npos) << err;
  std::string newer = text;
  newer[0] = 9;
  EXPECT_FALSE(decode_core_image(newer, &err));
  EXPECT_NE(err.find("core image format 9"), std::string::npos) << err;
  EXPECT_FALSE(decode_core_image(text + "x", &err));
  EXPECT_NE(err.find("trailing"), std::string::npos) << err;
}

}  // namespace
}  // namespace thecal
