// PreviewPrescription (issue 19, SPEC S16): the preview's figures against the same core run
// cycle by cycle over the same inputs, and a preview changes nothing.
//
// The reference is the live core itself, driven on by this test's own loop: the candidate
// applied as the clinician would (LoadPrescription, or Suspend + Refill to capacity + Resume
// for another solution), then tick() at the loop period with an ideal plant, a patient
// bolus asked for at every cycle at which this test's own bookkeeping of the lockout, the
// count per 24 h and the running bolus allows one.  The preview runs on a copy exported
// before (app::run_preview: restore, fast_forward).  Each bucket must agree within one step
// volume (S16): tip mass, pump volume, reservoir and rolling 24 h at its end.
//
// Scenarios: the live pump infusing the continuous example with some history, each of the
// four examples as the candidate (same solution, flex, a concentration change with its
// bridge, a change of drug); and THECAL_PREVIEW_RUNS (default 12, 3 under sanitizers) randomized prescriptions
// (seeds 1..N, a failure prints its seed).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/preview.hpp"
#include "app/prescription_store.hpp"
#include "control/pump_core.hpp"
#include "tests/app/service_fixture.hpp"

namespace thecal {
namespace {

using test::clinician;

std::string read_example(const std::string& name) {
  std::ifstream f(std::string(THECAL_SOURCE_DIR) + "/examples/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr std::int64_t kWall0 = 1'790'000'000LL * 1'000'000 + 37'123'456;  // 2026-09-21, not on a boundary

// Sanitizers make the cycle-by-cycle reference ~40x slower: shorter runs there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr Duration kExampleHorizon = hours(26);
constexpr std::uint64_t kRandomRuns = 3;
#else
constexpr Duration kExampleHorizon = days(2);
constexpr std::uint64_t kRandomRuns = 12;
#endif

/// Per bucket, from the reference run.
struct RefBucket {
  double mass = 0, volume = 0, reservoir = 0, rolling = 0;
};

/// The live pump and this test's own driver loop (not the preview's code).
struct LivePump {
  BoardParams board;
  Now now{mono_us(5'000'000'000), wall_us(kWall0)};
  std::unique_ptr<PumpCore> core;
  IdealPlant plant;
  std::uint64_t id = 0;
  std::vector<Event> events;
  std::deque<MonoTime> starts;  // the patient boluses this driver started

  explicit LivePump(BoardParams b) : board(b), core(std::make_unique<PumpCore>(board, now)) {}

  Reply send(Command c) {
    c.id = ++id;
    c.caller = {1000, true};
    const Reply r = core->apply(c, now);
    core->drain_events([&](const Event& e) { events.push_back(e); });
    return r;
  }
  /// Whether this driver's own bookkeeping lets a patient bolus start at `t`.
  bool bolus_allowed(const TherapyPlan& p, MonoTime t) {
    if (!p.patient_bolus || core->state() != PumpState::infusing) return false;
    if (core->status().boluses[static_cast<std::size_t>(BolusSource::patient)].active) return false;
    while (!starts.empty() && t - starts.front() >= days(1)) starts.pop_front();
    if (!starts.empty() && t - starts.back() < p.patient_bolus->lockout) return false;
    return starts.size() < p.patient_bolus->max_per_day;
  }
  /// One cycle as the dosing loop runs it: commands at the cycle's time, then tick.
  void cycle(const TherapyPlan* bolus_plan) {
    now.mono += board.loop_period;
    now.wall += board.loop_period;
    if (bolus_plan != nullptr && bolus_allowed(*bolus_plan, now.mono)) {
      if (send({.kind = CommandKind::patient_bolus}).ok()) starts.push_back(now.mono);
    }
    Actuation out;
    core->tick(now, plant.in, out);
    plant.execute(out.steps, board.steps_per_encoder_pulse);
    core->drain_events([&](const Event& e) { events.push_back(e); });
  }
};

BoardParams test_board(Duration period) {
  BoardParams b;
  b.loop_period = period;
  return b;
}

app::PrescriptionStore store_for(const BoardParams& b) {
  return app::PrescriptionStore(test::shipped_drugs(), b, "/nonexistent/prescription.yaml");
}

/// Load `live_yaml`, fill, prime, start, then `history` of delivery with every bolus.
void make_live(LivePump& pump, const TherapyPlan& live, Duration history) {
  ASSERT_TRUE(pump.send({.kind = CommandKind::load_prescription, .plan = &live}).ok());
  ASSERT_TRUE(pump.send({.kind = CommandKind::refill, .volume = live.reservoir_capacity}).ok());
  ASSERT_TRUE(pump.send({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000'000}}).ok());
  ASSERT_TRUE(pump.send({.kind = CommandKind::prime, .volume = live.catheter_volume}).ok());
  for (int i = 0; i < 100'000 && pump.core->state() == PumpState::priming; ++i) pump.cycle(nullptr);
  ASSERT_EQ(pump.core->state(), PumpState::idle) << "prime left " << to_uL(pump.core->status().prime_left) << " uL, steps "
                                                  << pump.core->status().steps_issued << ", events " << pump.events.size()
                                                  << ", last " << to_string(pump.events.back().type);
  ASSERT_TRUE(pump.send({.kind = CommandKind::start}).ok());
  const std::int64_t n = history / pump.board.loop_period;
  for (std::int64_t i = 0; i < n; ++i) pump.cycle(&live);
  ASSERT_EQ(pump.core->state(), PumpState::infusing);
}

/// The candidate as the clinician applies it (the test's own rule, SPEC 4).
void apply_candidate(LivePump& pump, const TherapyPlan& cand) {
  const TherapyPlan& cur = *pump.core->plan();
  // Another solution: the primary drug or its concentration, or any admixture drug's.
  bool other = !(cur.drug == cand.drug) || cur.concentration != cand.concentration ||
               cur.admixture.size() != cand.admixture.size();
  for (std::size_t i = 0; !other && i < cur.admixture.size(); ++i) {
    bool found = false;
    for (const auto& y : cand.admixture) {
      found = found || (y.name == cur.admixture[i].name && y.concentration == cur.admixture[i].concentration);
    }
    other = !found;
  }
  if (other) {
    const Volume estimate = pump.core->status().reservoir;
    ASSERT_TRUE(pump.send({.kind = CommandKind::suspend}).ok());
    ASSERT_TRUE(pump.send({.kind = CommandKind::refill, .plan = &cand, .volume = cand.reservoir_capacity,
                           .withdrawn = estimate}).ok());
    ASSERT_TRUE(pump.send({.kind = CommandKind::resume}).ok());
  } else {
    ASSERT_TRUE(pump.send({.kind = CommandKind::load_prescription, .plan = &cand}).ok());
  }
}

std::size_t count(const std::vector<Event>& ev, EventType t) {
  std::size_t n = 0;
  for (const auto& e : ev) n += e.type == t ? 1 : 0;
  return n;
}

/// Preview of `cand` on the live pump's state, then the live pump run cycle by cycle:
/// every bucket within one step volume.
void expect_preview_matches(LivePump& pump, const TherapyPlan& cand, bool boluses, Duration horizon, Duration bucket) {
  CoreState copy;
  pump.core->export_state(copy, pump.now);
  app::PreviewRequest req;
  req.plan = &cand;
  req.with_patient_boluses = boluses;
  req.horizon = horizon;
  req.bucket = bucket;
  const auto got = app::run_preview(pump.board, copy, req);
  ASSERT_TRUE(got.ok()) << got.error->message;
  const auto& pv = got.value;

  // The reference: the same core, cycle by cycle.
  const std::size_t ev0 = pump.events.size();
  apply_candidate(pump, cand);
  if (::testing::Test::HasFatalFailure()) return;
  const Duration period = pump.board.loop_period;
  const std::int64_t total = horizon / period;
  const std::int64_t nb = (horizon.count() + bucket.count() - 1) / bucket.count();
  std::vector<RefBucket> ref;
  double m0 = to_mcg(pump.core->status().total_delivered_mass);
  double v0 = to_uL(pump.core->status().total_pumped_volume);
  std::int64_t n = 0;
  for (std::int64_t k = 0; k < nb; ++k) {
    const std::int64_t end = std::min(total, ((k + 1) * bucket.count()) / period.count());
    for (; n < end; ++n) pump.cycle(boluses ? &cand : nullptr);
    const Status& s = pump.core->status();
    ref.push_back({to_mcg(s.total_delivered_mass) - m0, to_uL(s.total_pumped_volume) - v0, to_uL(s.reservoir),
                   to_mcg(s.delivered_24h)});
    m0 = to_mcg(s.total_delivered_mass);
    v0 = to_uL(s.total_pumped_volume);
  }

  ASSERT_EQ(pv.buckets.size(), ref.size());
  const double step = to_uL(pump.board.volume_per_step);
  const double cmax = std::max(to_mcg_per_mL(copy.reservoir_conc), to_mcg_per_mL(cand.concentration)) / 1000.0;
  const double step_mass = step * cmax + 1e-6;
  double mass_ref = 0, mass_pv = 0;
  for (std::size_t k = 0; k < ref.size(); ++k) {
    SCOPED_TRACE("bucket " + std::to_string(k));
    const auto& b = pv.buckets[k];
    EXPECT_EQ(to_usec(b.start), to_usec(copy.wall) + static_cast<std::int64_t>(k) * bucket.count());
    EXPECT_NEAR(to_mcg(b.tip_mass), ref[k].mass, step_mass);
    EXPECT_NEAR(to_uL(b.pump_volume), ref[k].volume, step + 1e-9);
    EXPECT_NEAR(to_uL(b.reservoir_end), ref[k].reservoir, step + 1e-9);
    EXPECT_NEAR(to_mcg(b.rolling_24h_end), ref[k].rolling, step_mass);
    mass_ref += ref[k].mass;
    mass_pv += to_mcg(b.tip_mass);
  }
  // Something was delivered (but for a change of drug: the catheter's morphine at the new
  // drug's tiny mass rate is nearly nothing for years), and the totals agree within a step.
  if (copy.plan->drug == cand.drug) {
    EXPECT_GT(mass_ref, 0.0);
  }
  EXPECT_NEAR(mass_pv, mass_ref, step_mass);
  const std::vector<Event> after(pump.events.begin() + static_cast<std::ptrdiff_t>(ev0), pump.events.end());
  std::size_t pv_boluses = 0;
  for (const auto& e : pv.events) pv_boluses += e.type == "bolus_started" ? 1 : 0;
  EXPECT_EQ(pv_boluses, count(after, EventType::bolus_started));
  EXPECT_LE(pv.boluses_taken, pv_boluses);  // bolus_started also counts the periodic doses
  if (boluses && cand.patient_bolus) {
    EXPECT_GE(pv.boluses_taken, 1u);
  }
}

TEST(Preview, EqualsTheCoreRunCycleByCycleOnEachExample) {
  const BoardParams board = test_board(msec(100));
  const auto store = store_for(board);
  const WallTime at = wall_us(kWall0);
  std::string problems;
  const auto live = store.compile(read_example("prescription-flex.yaml"), at, &problems);
  ASSERT_TRUE(live) << problems;
  const char* only = std::getenv("THECAL_PREVIEW_EXAMPLE");  // NOLINT(concurrency-mt-unsafe)
  for (const char* name : {"prescription-continuous.yaml", "prescription-flex.yaml", "prescription-trial.yaml",
                           "prescription-ziconotide.yaml"}) {
    if (only != nullptr && std::string(only) != name) continue;
    SCOPED_TRACE(name);
    const auto cand = store.compile(read_example(name), at, &problems);
    ASSERT_TRUE(cand) << problems;
    LivePump pump(board);
    make_live(pump, *live, hours(7));
    if (HasFatalFailure()) return;
    expect_preview_matches(pump, *cand, true, kExampleHorizon, hours(1));
    if (HasFatalFailure()) return;
  }
}

// Issue 16: a change of an admixture drug's concentration alone is another solution: the
// preview applies it as a refill (LoadPrescription would refuse it in a filled reservoir),
// and its figures equal the core's run cycle by cycle after that refill.
TEST(Preview, AChangeOfTheAdmixtureAloneIsPreviewedAsARefill) {
  const BoardParams board = test_board(msec(100));
  const auto store = store_for(board);
  const WallTime at = wall_us(kWall0);
  std::string problems;
  std::string text = read_example("prescription-admixture.yaml");
  const auto live = store.compile(text, at, &problems);
  ASSERT_TRUE(live) << problems;
  const std::string from = "concentration: 7.5 mg/mL, max_daily_dose: 4 mg";
  ASSERT_NE(text.find(from), std::string::npos);
  text.replace(text.find(from), from.size(), "concentration: 5 mg/mL, max_daily_dose: 3 mg");
  const auto cand = store.compile(text, at, &problems);
  ASSERT_TRUE(cand) << problems;
  LivePump pump(board);
  make_live(pump, *live, hours(3));
  if (HasFatalFailure()) return;
  // LoadPrescription refuses it on this filled reservoir (the core's own rule) ...
  {
    LivePump other(board);
    make_live(other, *live, hours(1));
    if (HasFatalFailure()) return;
    EXPECT_EQ(other.send({.kind = CommandKind::load_prescription, .plan = &*cand}).refusal, Refusal::invalid_state);
  }
  // ... and the preview shows it as the refill it needs.
  expect_preview_matches(pump, *cand, true, days(2), hours(1));
}

/// A random valid prescription (morphine): continuous or flex, maybe periodic doses and a
/// patient bolus, the daily limit above the planned daily mass.
std::string random_yaml(std::mt19937_64& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int conc = std::array<int, 4>{1, 2, 5, 10}[static_cast<std::size_t>(pick(0, 3))];
  std::ostringstream y;
  y << "version: 1\npatient: RANDOM\nphase: maintenance\ndrug:\n  name: morphine\n  concentration: " << conc
    << " mg/mL\nreservoir:\n  capacity: " << pick(10, 20) << " mL\n  low_alarm: 2 mL\ncatheter:\n  volume: 0.22 mL\n"
    << "timezone: Europe/Berlin\nbasal:\n";
  double daily = 0;
  if (pick(0, 1) == 0) {
    const double rate = pick(2, 30) / 10.0;  // 0.2 .. 3 mg/day
    y << "  mode: continuous\n  rate: " << rate << " mg/day\n";
    daily += rate;
  } else {
    y << "  mode: flex\n  steps:\n";
    int h = 0;
    const int nsteps = pick(2, 5);
    double sum = 0;
    for (int i = 0; i < nsteps; ++i) {
      const double rate = pick(2, 30) / 10.0;
      const int next = i + 1 == nsteps ? 24 : pick(h + 1, 24 - (nsteps - i - 1));
      y << "    - { start: \"" << (h < 10 ? "0" : "") << h << ":" << (i == 0 ? "00" : "30") << "\", rate: " << rate
        << " mg/day }\n";
      sum += rate;
      h = next;
    }
    daily += sum;  // an upper bound of the basal's daily mass
  }
  if (pick(0, 1) == 1) {
    const double dose = pick(1, 5) / 20.0;
    y << "  periodic:\n    - { at: \"" << pick(0, 23) << ":15\", dose: " << dose << " mg, duration: " << pick(10, 60)
      << " min }\n";
    daily += dose;
  }
  if (pick(0, 2) != 0) {
    const double dose = pick(1, 4) / 20.0;
    const int max = pick(2, 6);
    y << "patient_bolus:\n  dose: " << dose << " mg\n  duration: " << pick(5, 30) << " min\n  lockout: " << pick(1, 4)
      << " h\n  max_per_day: " << max << "\n";
    daily += dose * max;
  }
  y << "limits:\n  max_daily_dose: " << std::min(15.0, std::ceil(daily * 1.2 + 0.5)) << " mg\n";
  return y.str();
}

TEST(Preview, EqualsTheCoreRunCycleByCycleOnRandomPrescriptions) {
  const char* env = std::getenv("THECAL_PREVIEW_RUNS");  // NOLINT(concurrency-mt-unsafe): before any thread
  const std::uint64_t runs = env != nullptr ? std::strtoull(env, nullptr, 10) : kRandomRuns;
  const BoardParams board = test_board(msec(200));
  const auto store = store_for(board);
  const WallTime at = wall_us(kWall0);
  std::uint64_t tested = 0;
  for (std::uint64_t seed = 1; tested < runs && seed < runs * 20; ++seed) {
    std::mt19937_64 rng(seed);
    std::string problems;
    const std::string a = random_yaml(rng);
    const std::string b = random_yaml(rng);
    const auto live = store.compile(a, at, &problems);
    const auto cand = live ? store.compile(b, at, &problems) : nullptr;
    // The generator can draw a rate the motor cannot reach: such a pair is not a scenario.
    if (!live || !cand) continue;
    ++tested;
    SCOPED_TRACE("seed " + std::to_string(seed) + "\nlive:\n" + a + "candidate:\n" + b);
    LivePump pump(board);
    make_live(pump, *live, hours(static_cast<int>(1 + seed % 9)));
    if (HasFatalFailure()) return;
    const bool boluses = seed % 3 != 0;
    const Duration bucket = minutes(std::array<int, 4>{1, 15, 60, 170}[seed % 4]);
    expect_preview_matches(pump, *cand, boluses, hours(20 + static_cast<int>(seed % 20)), bucket);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(tested, runs) << "the generator gave too few valid prescriptions";
}

TEST(Preview, ShowsAStopReaching48HoursWhereTheCoreRunCycleByCycleLogsIt) {
  // S14 in the preview: a pump suspended for 40 h, previewed unchanged for a day, shows the
  // stop's 48 h mark at the instant the live core, ticked on, logs it.
  const BoardParams board = test_board(seconds(1));
  LivePump pump(board);
  {
    const auto store = store_for(board);
    std::string problems;
    const auto live = store.compile(read_example("prescription-continuous.yaml"), wall_us(kWall0), &problems);
    ASSERT_TRUE(live) << problems;
    make_live(pump, *live, hours(1));
    if (HasFatalFailure()) return;
  }
  ASSERT_TRUE(pump.send({.kind = CommandKind::suspend}).ok());
  const WallTime mark = pump.now.wall + hours(48);
  for (std::int64_t i = 0; i < hours(40) / board.loop_period; ++i) pump.cycle(nullptr);
  CoreState copy;
  pump.core->export_state(copy, pump.now);
  app::PreviewRequest req;
  req.horizon = days(1);
  req.bucket = hours(1);
  const auto got = app::run_preview(pump.board, copy, req);
  ASSERT_TRUE(got.ok()) << got.error->message;
  std::vector<app::PreviewEvent> shown;
  for (const auto& e : got.value.events) {
    if (e.type == "risk_event") shown.push_back(e);
  }
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0].when, mark);
  EXPECT_NE(shown[0].detail.find("delivery stopped for 48.0 h and still stopped (suspended)"), std::string::npos)
      << shown[0].detail;
  // The reference: the live core, cycle by cycle over the same day.
  const std::size_t ev0 = pump.events.size();
  for (std::int64_t i = 0; i < days(1) / board.loop_period; ++i) pump.cycle(nullptr);
  std::vector<Event> logged;
  for (std::size_t i = ev0; i < pump.events.size(); ++i) {
    if (pump.events[i].type == EventType::risk_event) logged.push_back(pump.events[i]);
  }
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].index, kRiskLongStop);
  EXPECT_EQ(logged[0].when, shown[0].when);
}

TEST(Preview, RefusesWhatLoadPrescriptionWouldRefuseAndChecksItsLimits) {
  const BoardParams board = test_board(msec(100));
  const auto store = store_for(board);
  std::string problems;
  const auto live = store.compile(read_example("prescription-continuous.yaml"), wall_us(kWall0), &problems);
  ASSERT_TRUE(live) << problems;
  LivePump pump(board);
  make_live(pump, *live, hours(1));
  CoreState copy;
  pump.core->export_state(copy, pump.now);
  app::PreviewRequest req;
  req.horizon = days(1);
  req.bucket = hours(1);
  // The catheter volume cannot change while infusing: the same error LoadPrescription gets.
  TherapyPlan other = *live;
  other.catheter_volume = uL(300);
  req.plan = &other;
  auto r = app::run_preview(pump.board, copy, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, app::ErrorCode::invalid_state);
  EXPECT_NE(r.error->message.find("catheter"), std::string::npos) << r.error->message;
  // Limits: 0 < horizon <= 180 days, bucket >= 1 min, at most 100,000 buckets.
  const std::uint64_t d180 = to_usec(days(180));
  EXPECT_EQ(app::check_preview_limits(0, 60'000'000)->code, app::ErrorCode::out_of_range);
  EXPECT_TRUE(app::check_preview_limits(d180, 60'000'000).has_value());  // 259,200 buckets
  EXPECT_FALSE(app::check_preview_limits(d180, d180 / 100'000).has_value());
  EXPECT_TRUE(app::check_preview_limits(d180, d180 / 100'000 - 1).has_value());
  EXPECT_TRUE(app::check_preview_limits(d180 + 1, 3'600'000'000).has_value());
  EXPECT_FALSE(app::check_preview_limits(d180, 3'600'000'000).has_value());
  EXPECT_TRUE(app::check_preview_limits(3'600'000'000, 59'999'999).has_value());
  EXPECT_TRUE(app::check_preview_limits(3'600'000'000, 0).has_value());
  EXPECT_FALSE(app::check_preview_limits(3'600'000'000, 60'000'000).has_value());
  // Cancelled (shutdown): InvalidState, no figures.
  req.plan = nullptr;
  const std::atomic<bool> cancelled{true};
  r = app::run_preview(pump.board, copy, req, &cancelled);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, app::ErrorCode::invalid_state);
  EXPECT_TRUE(r.value.buckets.empty());
  // Without a prescription loaded and none given: nothing to preview.
  LivePump empty(board);
  CoreState none;
  empty.core->export_state(none, empty.now);
  req.plan = nullptr;
  r = app::run_preview(empty.board, none, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, app::ErrorCode::invalid_state);
}

}  // namespace
}  // namespace thecal
