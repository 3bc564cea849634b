// Randomized property tests (issue 4 item 8): thousands of random prescriptions, bolus
// request patterns, refills, suspends, faults and wall-clock jumps over simulated days and
// weeks, with the invariants checked after every cycle against the harness's independent
// oracle (its own plug-flow catheter and exact rolling 24 h sum), never against the
// core's own ledger.  The seed is printed on failure; THECAL_SEED=<n> replays a run,
// THECAL_PROPERTY_RUNS=<n> changes the number of scenarios.
#include <cstdlib>
#include <random>

#include <gtest/gtest.h>

#include "control/pump_core.hpp"
#include "tests/control/core_harness.hpp"

namespace thecal {
namespace {

using namespace thecal::test;  // NOLINT(google-build-using-namespace)

std::uint64_t env_or(const char* name, std::uint64_t dflt) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : dflt;
}

struct Scenario {
  std::mt19937_64 rng;
  explicit Scenario(std::uint64_t seed) : rng(seed) {}
  double uni(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); }
  std::int64_t irange(std::int64_t a, std::int64_t b) { return std::uniform_int_distribution<std::int64_t>(a, b)(rng); }
  bool chance(double p) { return uni(0, 1) < p; }

  TherapyPlan plan(Harness& h) {
    static constexpr double kConc[] = {0.025, 0.5, 1, 2, 10, 20, 25};  // mg/mL
    TherapyPlan p = continuous_plan(MassRate{}, mg_per_mL(kConc[irange(0, 6)]));
    berlin(p);
    p.catheter_volume = uL(static_cast<double>(irange(40, 400)));
    const double uL_day = uni(40, 2500);  // basal volume per day at this concentration
    const Mass basal_day = p.concentration * uL(uL_day);
    if (chance(0.5)) {
      p.continuous_rate = MassRate::canonical(to_mcg(basal_day) / 86400e6);
    } else {
      p.basal_mode = BasalMode::flex;
      const auto n = irange(1, 6);
      std::int64_t start = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        p.flex_steps.push_back({minutes(start), MassRate::canonical(to_mcg(basal_day) * uni(0.2, 1.8) / 86400e6)});
        start += irange(1, (1440 - start) / (n - i + 1) + 1);
        if (start >= 1440) break;
      }
    }
    for (auto i = irange(0, 3); i > 0; --i) {
      p.periodic.push_back({minutes(irange(0, 1439)), p.concentration * uL(uni(1, 60)), minutes(irange(1, 120))});
    }
    if (chance(0.7)) {
      p.patient_bolus = PatientBolusRule{p.concentration * uL(uni(1, 40)), minutes(irange(1, 30)),
                                         minutes(irange(0, 240)), static_cast<std::uint32_t>(irange(1, 10))};
    }
    // max_daily_dose: at least the planned day (config validates that), up to 30 % more.
    Mass planned = mcg(0);
    if (p.basal_mode == BasalMode::continuous) {
      planned += p.continuous_rate * days(1);
    } else {
      for (std::size_t i = 0; i < p.flex_steps.size(); ++i) {
        const Duration end = i + 1 < p.flex_steps.size() ? p.flex_steps[i + 1].start : days(1);
        planned += p.flex_steps[i].rate * (end - p.flex_steps[i].start);
      }
    }
    for (const auto& d : p.periodic) planned += d.dose;
    if (p.patient_bolus) planned += p.patient_bolus->dose * static_cast<double>(p.patient_bolus->max_per_day);
    p.max_daily_dose = planned * uni(chance(0.3) ? 0.6 : 1.0, 1.3);  // sometimes tight: S1 must bind
    if (chance(0.2)) {
      p.phase = Phase::trial;
      p.trial_ends = h.now.wall + hours(irange(2, 24 * 10));
    }
    return p;
  }
};

struct Checker {
  const TherapyPlan* plan = nullptr;
  std::vector<MonoTime> patient_starts;
  std::uint64_t cycles = 0;
};

void check_cycle(Harness& h, Checker& c) {
  const Status& s = h.st();
  const double limit = to_mcg(c.plan->max_daily_dose);
  // S1, from the oracle's own tip masses.
  ASSERT_LE(h.truth.sum(to_usec(h.now.mono)), limit + 1e-6) << "S1 broken";
  // Motor only in states that allow it.
  if (h.out.steps > 0) {
    ASSERT_TRUE(motor_may_step(s.state)) << to_string(s.state);
  }
  ASSERT_EQ(h.out.motor_enable, motor_may_step(s.state));
  // Reservoir never negative.
  ASSERT_GE(to_uL(s.reservoir), 0.0);
  // S6: issued + dropped + pending = programmed, within one step.
  const double vps = to_uL(h.board.volume_per_step);
  const double lhs = static_cast<double>(s.steps_issued) * vps + to_uL(s.dropped_volume) + to_uL(s.pending_volume);
  ASSERT_NEAR(lhs, to_uL(s.programmed_volume), vps) << "S6 accounting";
  // The core's tip mass agrees with the independent oracle.
  ASSERT_NEAR(to_mcg(s.total_delivered_mass), h.tip_mass_total, 1e-6 * (1 + h.tip_mass_total));
  // The core's ledger never under-counts the truth.
  ASSERT_GE(to_mcg(s.delivered_24h) + 1e-6, h.truth.sum(to_usec(h.now.mono)));
  // A high alarm never coexists with delivery.
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (s.alarms[i].active && priority_of(static_cast<AlarmCode>(i)) == AlarmPriority::high) {
      ASSERT_FALSE(motor_may_step(s.state)) << to_string(static_cast<AlarmCode>(i));
    }
  }
  // Lockout and count, from the accepted patient boluses.
  for (const auto& e : h.events) {
    if (e.type != EventType::bolus_started || e.source != BolusSource::patient) continue;
    const auto& rule = *c.plan->patient_bolus;
    if (!c.patient_starts.empty()) {
      ASSERT_GE(e.mono - c.patient_starts.back(), rule.lockout) << "lockout broken";
    }
    c.patient_starts.push_back(e.mono);
    std::uint32_t n = 0;
    for (const auto& t : c.patient_starts) n += t > e.mono - days(1) ? 1 : 0;
    ASSERT_LE(n, rule.max_per_day) << "max_per_day broken";
  }
  h.events.clear();
}

void run_scenario(std::uint64_t seed, Duration horizon, Duration cycle) {
  SCOPED_TRACE(::testing::Message() << "seed=" << seed << " (replay: THECAL_SEED=" << seed << " THECAL_PROPERTY_RUNS=1)");
  Scenario r(seed);
  Harness h;
  const TherapyPlan plan = r.plan(h);
  TherapyPlan plan2 = plan;  // a refill at another concentration
  plan2.concentration = plan.concentration * (r.chance(0.5) ? 2.0 : 0.5);
  Checker c;
  c.plan = &plan;
  h.ready(plan);
  if (::testing::Test::HasFatalFailure()) return;
  const MonoTime end = h.now.mono + horizon;
  bool faulted = false;
  MonoTime fault_until{};
  const double per_cycle = to_seconds(cycle) / 3600.0;  // probabilities below are per hour
  while (h.now.mono < end) {
    // Programming acts, at random.
    if (plan.patient_bolus && r.chance(1.5 * per_cycle)) (void)h.send({.kind = CommandKind::patient_bolus}, false, 2000);
    if (r.chance(0.05 * per_cycle)) {
      (void)h.send({.kind = CommandKind::clinician_bolus, .dose = plan.concentration * uL(r.uni(1, 100)),
                    .duration = minutes(r.irange(1, 120))});
    }
    if (r.chance(0.05 * per_cycle)) (void)h.send({.kind = CommandKind::cancel_bolus}, false);
    if (r.chance(0.05 * per_cycle)) {
      (void)h.send({.kind = CommandKind::suspend, .duration = r.chance(0.5) ? minutes(r.irange(1, 300)) : Duration{0}});
    }
    if (h.core->state() == PumpState::suspended && r.chance(0.5 * per_cycle)) (void)h.send({.kind = CommandKind::resume});
    if (r.chance(0.02 * per_cycle) || h.st().reservoir < mL(1)) {
      (void)h.send({.kind = CommandKind::suspend});
      const bool conc = r.chance(0.5);
      (void)h.send({.kind = CommandKind::refill,
                    .plan = conc ? (h.core->plan()->concentration == plan.concentration ? &plan2 : &plan) : nullptr,
                    .volume = mL(r.uni(5, 20)),
                    .withdrawn = h.st().reservoir});
      (void)h.send({.kind = CommandKind::resume});
    }
    // Faults and clocks.
    if (!faulted && r.chance(0.03 * per_cycle)) {
      faulted = true;
      switch (r.irange(0, 4)) {
        case 0: h.in.occlusion = true; break;
        case 1: h.in.disconnect = true; break;
        case 2: h.in.driver_fault = true; break;
        case 3: h.encoder_works = false; break;
        default: h.in.low_battery = true; break;
      }
      fault_until = h.now.mono + minutes(r.irange(1, 240));
    }
    if (faulted && h.now.mono >= fault_until) {
      faulted = false;
      h.in = SensorInputs{.encoder_pulses = h.in.encoder_pulses};
      h.encoder_works = true;
      for (std::size_t i = 0; i < kAlarmCount; ++i) {
        if (h.st().alarms[i].active) (void)h.send({.kind = CommandKind::acknowledge_alarm, .alarm = static_cast<AlarmCode>(i)});
      }
      (void)h.send({.kind = CommandKind::resume});
    }
    Duration jump{0};
    if (r.chance(0.02 * per_cycle)) {
      jump = Duration{r.irange(-to_usec(days(3)), to_usec(days(3)))};
    }
    h.cycle(cycle, jump);
    check_cycle(h, c);
    if (::testing::Test::HasFatalFailure()) return;
    ++c.cycles;
  }
}

#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kScale = 10;  // sanitizers are ~10x slower: fewer scenarios
#else
constexpr std::uint64_t kScale = 1;
#endif

TEST(Property, RandomTherapiesKeepEveryInvariant) {
  const std::uint64_t base = env_or("THECAL_SEED", std::random_device{}());
  const std::uint64_t runs = env_or("THECAL_PROPERTY_RUNS", 2000 / kScale);
  std::cout << "property base seed " << base << ", " << runs << " scenarios\n";
  for (std::uint64_t i = 0; i < runs; ++i) {
    // Most scenarios run 12-36 h at 5 s or 20 s cycles; one in fifty runs two weeks.
    const std::uint64_t seed = base + i;
    const Duration horizon = i % 50 == 0 ? days(14) : hours(static_cast<std::int64_t>(12 + (seed % 25)));
    run_scenario(seed, horizon, seed % 2 == 0 ? seconds(5) : seconds(20));
    if (HasFatalFailure()) return;
  }
}

TEST(Property, FineCyclesKeepEveryInvariant) {
  const std::uint64_t base = env_or("THECAL_SEED", std::random_device{}()) + 1'000'000;
  const std::uint64_t runs = env_or("THECAL_PROPERTY_RUNS", 100 / kScale);
  std::cout << "property (1 s cycles) base seed " << base << ", " << runs << " scenarios\n";
  for (std::uint64_t i = 0; i < runs; ++i) {
    run_scenario(base + i, hours(6), seconds(1));
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace thecal
