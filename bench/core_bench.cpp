// In-process benchmarks of the pure core: the control step (PumpCore::tick) at realistic
// states, and dosing accuracy (IEC 60601-2-24 trumpet curves, 30-day cumulative error)
// from the core driven in simulated time with the simulated plant.
#include "bench/core_bench.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>

#include "tests/support/alloc_counter.hpp"
#include "app/preview.hpp"
#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/pump_core.hpp"
#include "io/sim_plant.hpp"

namespace thecal::bench {
namespace {

// 2026-09-21 00:00:00 UTC: a fixed start, so runs are reproducible.
constexpr std::int64_t kStartWallUs = 1'789'948'800LL * 1'000'000;

struct Library {
  config::DaemonConfig daemon;
  config::DrugLibrary drugs;
};

Library load_library(const std::string& share) {
  auto dc = config::parse_daemon_config(slurp(share + "/examples/thecald-sim.yaml"), "thecald-sim.yaml");
  if (!dc.config) throw std::runtime_error("examples/thecald-sim.yaml does not parse");
  auto lib = config::load_drug_library(share + "/config/drugs.yaml");
  if (!lib.library) throw std::runtime_error("config/drugs.yaml does not load");
  return {*dc.config, *lib.library};
}

TherapyPlan load_plan(const Library& l, const std::string& file, WallTime now) {
  config::PrescriptionContext ctx{&l.drugs, l.daemon.board, now};
  auto p = config::parse_prescription(slurp(file), file, ctx);
  if (!p.plan) throw std::runtime_error(file + ": " + config::format_all(p.problems));
  return *p.plan;
}

/// The core and the simulated plant in one thread, as the dosing loop runs them.
struct Rig {
  BoardParams board;
  Now now{mono_us(1'000'000), wall_us(kStartWallUs)};
  std::unique_ptr<PumpCore> core;
  io::SimPlant plant;
  TherapyPlan plan;
  std::uint64_t next_id = 0;
  SensorInputs in;
  Actuation out;

  explicit Rig(const BoardParams& b) : board(b), core(std::make_unique<PumpCore>(b, now)), plant(b) {}

  Reply send(Command c) {
    c.id = ++next_id;
    c.caller = {0, true};
    Reply r = core->apply(c, now);
    core->drain_events([](const Event&) {});
    return r;
  }
  void must(Command c, const char* what) {
    const Reply r = send(c);
    if (!r.ok()) throw std::runtime_error(std::string(what) + " refused: " + r.message.c_str());
  }
  /// One cycle of the dosing loop: read, tick, write.
  void cycle(Duration dt) {
    now.mono += dt;
    now.wall += dt;
    in = plant.read(now.mono);
    core->tick(now, in, out);
    plant.write(out, now.mono);
    core->drain_events([](const Event&) {});
  }
  void run(Duration d, Duration dt) {
    const MonoTime end = now.mono + d;
    while (now.mono < end) cycle(dt);
  }
  /// Load, fill 20 mL, grant a large journal budget, prime, start.
  void ready(const TherapyPlan& p, bool start = true) {
    plan = p;
    must({.kind = CommandKind::load_prescription, .plan = &plan}, "load");
    must({.kind = CommandKind::refill, .volume = mL(20)}, "refill");
    must({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000'000}}, "grant_budget");
    must({.kind = CommandKind::prime, .volume = plan.catheter_volume}, "prime");
    for (int i = 0; i < 100'000 && !(core->status().catheter_primed && core->state() == PumpState::idle); ++i) {
      cycle(seconds(1));
    }
    if (core->state() != PumpState::idle) throw std::runtime_error("priming did not finish");
    if (start) must({.kind = CommandKind::start}, "start");
  }
};

std::int64_t thread_minflt(std::int64_t* major) {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  *major = ru.ru_majflt;
  return ru.ru_minflt;
}

struct StateDef {
  const char* name;
  const char* what;
  std::function<void(Rig&)> setup;
};

std::vector<StateDef> states(const Library& lib, const std::string& share) {
  auto plan = [lib, share](const char* f) {
    return load_plan(lib, share + "/examples/" + f, wall_us(kStartWallUs));
  };
  const TherapyPlan flex = plan("prescription-flex.yaml");
  const TherapyPlan cont = plan("prescription-continuous.yaml");
  return {
      {"idle", "no prescription, motor off", [](Rig&) {}},
      {"priming", "priming the catheter at the prime rate",
       [flex](Rig& r) {
         r.plan = flex;
         r.must({.kind = CommandKind::load_prescription, .plan = &r.plan}, "load");
         r.must({.kind = CommandKind::refill, .volume = mL(20)}, "refill");
         r.must({.kind = CommandKind::grant_budget, .steps = Steps{1'000'000'000}}, "grant_budget");
         r.must({.kind = CommandKind::prime, .volume = r.plan.catheter_volume}, "prime");
       }},
      {"infusing_continuous", "continuous basal 1.5 mg/day", [cont](Rig& r) { r.ready(cont); }},
      {"infusing_flex_patient_bolus", "flex basal + a patient bolus in progress",
       [flex](Rig& r) {
         r.ready(flex);
         r.run(minutes(5), seconds(1));
         r.must({.kind = CommandKind::patient_bolus}, "patient bolus");
       }},
      {"infusing_flex_clinician_bolus", "flex basal + patient bolus + clinician bolus 0.2 mg over 2 min",
       [flex](Rig& r) {
         r.ready(flex);
         r.run(minutes(5), seconds(1));
         r.must({.kind = CommandKind::patient_bolus}, "patient bolus");
         r.must({.kind = CommandKind::clinician_bolus, .dose = mcg(200), .duration = minutes(2)}, "clinician bolus");
       }},
      {"stopped_high_alarm", "occlusion: stopped, high alarm sounding",
       [flex](Rig& r) {
         r.ready(flex);
         r.run(minutes(1), seconds(1));
         r.plant.inject(io::SimFault::occlusion, true);
         r.run(seconds(2), msec(1));
       }},
  };
}

}  // namespace

Json control_step_bench(const std::string& share, std::size_t ticks, int priority, const std::string& gbench_out) {
  const Library lib = load_library(share);
  const auto defs = states(lib, share);
  Json out = Json::object();
  out["method"] =
      "each state is set up on a fresh PumpCore + SimPlant (the daemon's simulated backend) in simulated time; "
      "then `ticks` cycles of 1 ms are run, each PumpCore::tick timed alone with clock_gettime(CLOCK_MONOTONIC) "
      "(timer overhead reported separately, not subtracted); heap calls counted by interposed malloc/free, page "
      "faults by getrusage(RUSAGE_THREAD), both over the timed cycles only; the timed thread runs SCHED_FIFO at "
      "the loop's priority with mlockall, as the dosing thread does (Google Benchmark runs after, as SCHED_OTHER)";
  out["ticks_per_state"] = static_cast<std::uint64_t>(ticks);
  out["heap_counting"] = test::heap_counting_available();
  // Timer overhead: an empty pair of clock reads.
  {
    std::vector<double> v;
    v.reserve(100'000);
    for (int i = 0; i < 100'000; ++i) {
      const std::int64_t a = mono_ns();
      const std::int64_t b = mono_ns();
      v.push_back(static_cast<double>(b - a));
    }
    out["timer_overhead"] = sample_summary(v, "ns");
  }
  // Run as the dosing thread does: SCHED_FIFO at the loop's priority, memory locked, so the
  // figures are the code's, not the scheduler's.
  const bool locked = mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
  sched_param sp{};
  sp.sched_priority = priority;
  const bool rt = priority > 0 && pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
  out["sched_fifo_priority"] = rt ? priority : 0;
  out["mlockall"] = locked;
  Json st = Json::object();
  double worst_p999 = 0;
  double worst_max = 0;
  std::uint64_t heap_total = 0;
  std::int64_t faults_total = 0;
  for (const auto& d : defs) {
    Rig r(lib.daemon.board);
    d.setup(r);
    for (int i = 0; i < 2000; ++i) r.cycle(msec(1));  // warm the caches and every page
    // Written by index into storage touched beforehand: the timed loop takes no page fault
    // of the benchmark's own.
    std::vector<double> tick_ns(ticks, 0.0);
    std::vector<double> cycle_ns(ticks, 0.0);
    std::int64_t maj0 = 0;
    std::int64_t maj1 = 0;
    const std::int64_t min0 = thread_minflt(&maj0);
    test::count_every_thread();
    for (std::size_t i = 0; i < ticks; ++i) {
      r.now.mono += msec(1);
      r.now.wall += msec(1);
      const std::int64_t a = mono_ns();
      r.in = r.plant.read(r.now.mono);
      const std::int64_t b = mono_ns();
      r.core->tick(r.now, r.in, r.out);
      const std::int64_t c = mono_ns();
      r.plant.write(r.out, r.now.mono);
      r.core->drain_events([](const Event&) {});
      const std::int64_t e = mono_ns();
      tick_ns[i] = static_cast<double>(c - b);
      cycle_ns[i] = static_cast<double>(e - a);
    }
    test::stop_counting();
    const std::uint64_t heap = test::heap_calls();
    const std::int64_t min1 = thread_minflt(&maj1);
    Json j = Json::object();
    j["what"] = d.what;
    j["final_state"] = std::string(to_string(r.core->state()));
    j["tick"] = sample_summary(tick_ns, "ns");
    j["cycle_read_tick_write"] = sample_summary(cycle_ns, "ns");
    j["heap_calls"] = heap;
    j["minor_faults"] = min1 - min0;
    j["major_faults"] = maj1 - maj0;
    std::vector<double> t = tick_ns;
    worst_p999 = std::max(worst_p999, percentile(t, 0.999));
    worst_max = std::max(worst_max, t.back());
    heap_total += heap;
    faults_total += (min1 - min0) + (maj1 - maj0);
    st[d.name] = std::move(j);
    const double p50 = percentile(tick_ns, 0.5);
    const double p999 = percentile(tick_ns, 0.999);
    std::fprintf(stderr, "thecal-bench: control step %-32s p50 %.0f ns, p99.9 %.0f ns, max %.0f ns, heap %llu, faults %lld\n",
                 d.name, p50, p999, tick_ns.back(),
                 static_cast<unsigned long long>(heap), static_cast<long long>(min1 - min0 + maj1 - maj0));
  }
  sp.sched_priority = 0;
  (void)pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
  out["states"] = std::move(st);
  out["worst_p999_ns"] = worst_p999;
  out["worst_max_ns"] = worst_max;
  out["heap_calls_total"] = heap_total;
  out["page_faults_total"] = faults_total;
  out["in_the_daemon"] =
      "tests/daemon/loop_rt_test.cpp runs the real DosingLoop (SCHED_FIFO) with the core and the sim plant through "
      "commands, boluses, an occlusion and its acknowledgement, and asserts zero heap calls and zero page faults in "
      "the dosing thread after start";

  // Google Benchmark: the same states, the same 1 ms cycles, the whole cycle (plant read,
  // PumpCore::tick, plant write, events drained) per iteration; pausing the timer around
  // the plant would cost more than the tick itself.
  if (!gbench_out.empty()) {
    for (const auto& d : defs) {
      benchmark::RegisterBenchmark((std::string("cycle_read_tick_write/") + d.name).c_str(), [&lib, d](benchmark::State& s) {
        Rig r(lib.daemon.board);
        d.setup(r);
        for (int i = 0; i < 2000; ++i) r.cycle(msec(1));
        for (auto _ : s) {
          r.now.mono += msec(1);
          r.now.wall += msec(1);
          r.in = r.plant.read(r.now.mono);
          r.core->tick(r.now, r.in, r.out);
          r.plant.write(r.out, r.now.mono);
          r.core->drain_events([](const Event&) {});
          benchmark::DoNotOptimize(r.out);
        }
      })->Iterations(static_cast<benchmark::IterationCount>(ticks))->Unit(benchmark::kNanosecond);
    }
    std::string a0 = "thecal-bench";
    std::string a1 = "--benchmark_out=" + gbench_out;
    std::string a2 = "--benchmark_out_format=json";
    std::string a3 = "--benchmark_repetitions=3";
    std::string a4 = "--benchmark_report_aggregates_only=true";
    char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
    int argc = 5;
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::ClearRegisteredBenchmarks();
    const std::string text = slurp(gbench_out);
    if (!text.empty()) out["google_benchmark"] = Json::raw(text);
  }
  return out;
}

// ---- dosing accuracy ------------------------------------------------------------------------
namespace {

/// The programmed volume integral, from the prescription alone (not from the core): basal
/// rate by local time of day (flex steps, the plan's UTC offset table) plus periodic doses.
class Oracle {
 public:
  explicit Oracle(const TherapyPlan& p) : p_(p) {}
  /// uL programmed in [w, w + dt) (dt small against any schedule change: 1 s).
  double volume_ul(std::int64_t wall_us_now, std::int64_t dt_us) {
    const std::int64_t mid = wall_us_now + dt_us / 2;
    const std::int64_t local = mid + to_usec(offset(mid));
    constexpr std::int64_t kDay = 86'400'000'000LL;
    const std::int64_t tod = ((local % kDay) + kDay) % kDay;
    double mcg_per_us = 0;
    if (p_.basal_mode == BasalMode::continuous) {
      mcg_per_us = p_.continuous_rate.canonical_value();
    } else {
      for (const auto& s : p_.flex_steps) {
        if (to_usec(s.start) <= tod) mcg_per_us = s.rate.canonical_value();
      }
    }
    for (const auto& d : p_.periodic) {
      const std::int64_t a = to_usec(d.at);
      const std::int64_t b = a + to_usec(d.duration);
      const bool in = (tod >= a && tod < b) || (b > kDay && tod < b - kDay);
      if (in) mcg_per_us += to_mcg(d.dose) / static_cast<double>(to_usec(d.duration));
    }
    return mcg_per_us * static_cast<double>(dt_us) / p_.concentration.canonical_value();
  }

 private:
  Duration offset(std::int64_t w) {
    const auto& t = p_.utc_offsets;
    if (t.empty()) return Duration{0};
    while (i_ + 1 < t.size() && to_usec(t[i_ + 1].from) <= w) ++i_;
    return t[i_].offset;
  }
  const TherapyPlan& p_;
  std::size_t i_ = 0;
};

struct Sample {
  double t_min;       // since the start of therapy
  double delivered;   // uL the plant really pumped since the start
  double steps_ul;    // steps issued x volume per step
  double programmed;  // the oracle's integral, uL
};

Json trumpet(const std::vector<Sample>& s, double from_min, double to_min, std::string* dat) {
  Json out = Json::object();
  out["analysis_period_min"] = Json::array();
  out["analysis_period_min"].push(from_min);
  out["analysis_period_min"].push(to_min);
  constexpr double kS = 0.5;  // sampling interval, min
  auto at = [&](double t) -> const Sample& {
    const auto i = static_cast<std::size_t>(std::llround(t / kS));
    return s.at(std::min(i, s.size() - 1));
  };
  const Sample& a = at(from_min);
  const Sample& b = at(to_min);
  const double prog = b.programmed - a.programmed;
  out["programmed_ul"] = prog;
  out["delivered_ul"] = b.delivered - a.delivered;
  out["mean_error_percent"] = prog > 0 ? 100.0 * ((b.delivered - a.delivered) - prog) / prog : 0.0;
  Json w = Json::array();
  for (const double p : {2.0, 5.0, 11.0, 19.0, 31.0}) {
    double emax = -1e300;
    double emin = 1e300;
    for (double t = from_min; t + p <= to_min + 1e-9; t += kS) {
      const Sample& x = at(t);
      const Sample& y = at(t + p);
      const double pv = y.programmed - x.programmed;
      if (pv <= 0) continue;
      const double e = 100.0 * ((y.delivered - x.delivered) - pv) / pv;
      emax = std::max(emax, e);
      emin = std::min(emin, e);
    }
    Json j = Json::object();
    j["window_min"] = p;
    j["ep_max_percent"] = emax;
    j["ep_min_percent"] = emin;
    w.push(std::move(j));
    if (dat != nullptr) {
      char line[128];
      std::snprintf(line, sizeof line, "%g %.4f %.4f\n", p, emax, emin);
      *dat += line;
    }
  }
  out["windows"] = std::move(w);
  return out;
}

}  // namespace

Json accuracy_bench(const std::string& share, double days, const std::string& data_dir) {
  const Library lib = load_library(share);
  Json out = Json::object();
  out["method"] =
      "each example prescription is loaded into PumpCore with the simulated plant (io::SimPlant), filled, primed "
      "and started at 2026-09-21T00:00Z, then run in 1 s cycles of simulated time; every 30 s the plant's true "
      "delivered volume is sampled against the programmed integral computed from the prescription alone (basal "
      "by local time in its time zone, plus periodic doses), independent of the core. Trumpet curve per "
      "IEC 60601-2-24: sampling interval 0.5 min, observation windows 2, 5, 11, 19, 31 min, "
      "Ep = 100 x (delivered - programmed) / programmed in each window; over the second hour (the standard's "
      "analysis period) and over hours 1 to 25.";
  out["days"] = days;
  Json per = Json::object();
  double worst_steps = 0;
  double worst_counting = 0;
  for (const char* name : {"continuous", "flex", "trial", "ziconotide"}) {
    const std::string file = share + "/examples/prescription-" + name + ".yaml";
    Rig r(lib.daemon.board);
    const TherapyPlan plan = load_plan(lib, file, r.now.wall);
    r.ready(plan, false);
    // Start therapy at the next whole minute of wall time, so the windows line up.
    const std::int64_t w = to_usec(r.now.wall);
    r.run(Duration{60'000'000 - w % 60'000'000}, Duration{60'000'000 - w % 60'000'000});
    r.must({.kind = CommandKind::start}, "start");
    Oracle oracle(r.plan);
    const double vps = to_uL(lib.daemon.board.volume_per_step);
    const double d0 = r.plant.true_delivered_ul();
    const std::uint64_t s0 = r.core->status().steps_issued;
    const double drop0 = to_uL(r.core->status().dropped_volume);
    double prog = 0;
    std::vector<Sample> samples;
    samples.push_back({0, 0, 0, 0});
    const auto total_s = static_cast<std::int64_t>(days * 86400);
    double max_err_steps = 0;
    double min_err_steps = 0;
    double max_cnt_steps = 0;
    double min_cnt_steps = 0;
    std::string series;
    for (std::int64_t sec = 1; sec <= total_s; ++sec) {
      prog += oracle.volume_ul(to_usec(r.now.wall), 1'000'000);
      r.cycle(seconds(1));
      if (sec % 30 == 0) {
        const Status& s = r.core->status();
        Sample x{static_cast<double>(sec) / 60.0, r.plant.true_delivered_ul() - d0,
                 static_cast<double>(s.steps_issued - s0) * vps, prog};
        const double err = (x.steps_ul - x.programmed) / vps;
        max_err_steps = std::max(max_err_steps, err);
        min_err_steps = std::min(min_err_steps, err);
        // S6 counts what S1 or a stop dropped as programmed-but-never-stepped.
        const double cnt = err + (to_uL(s.dropped_volume) - drop0) / vps;
        max_cnt_steps = std::max(max_cnt_steps, cnt);
        min_cnt_steps = std::min(min_cnt_steps, cnt);
        samples.push_back(x);
        if (sec % 3600 == 0) {
          char line[128];
          std::snprintf(line, sizeof line, "%.4f %.4f %.4f\n", static_cast<double>(sec) / 86400.0, err, cnt);
          series += line;
        }
      }
    }
    const Sample& last = samples.back();
    const Status& s = r.core->status();
    Json j = Json::object();
    j["prescription"] = std::string("examples/prescription-") + name + ".yaml";
    j["final_state"] = std::string(to_string(r.core->state()));
    j["programmed_ul"] = last.programmed;
    j["delivered_ul"] = last.delivered;
    j["steps_issued"] = s.steps_issued - s0;
    j["cumulative_error_steps"] = (last.steps_ul - last.programmed) / vps;
    j["error_steps_max"] = max_err_steps;
    j["error_steps_min"] = min_err_steps;
    j["counting_error_steps_max"] = max_cnt_steps;
    j["counting_error_steps_min"] = min_cnt_steps;
    j["core_dropped_ul"] = to_uL(s.dropped_volume) - drop0;
    j["core_steps_dropped"] = s.steps_dropped;
    j["daily_limit_alarm_active"] = s.alarms[static_cast<std::size_t>(AlarmCode::daily_limit)].active;
    j["daily_limit_hold_now"] = s.daily_limit_hold;
    std::string dat_hour;
    std::string dat_day;
    if (days * 24 * 60 >= 120) j["trumpet_second_hour"] = trumpet(samples, 60, 120, &dat_hour);
    if (days * 24 * 60 >= 25 * 60) j["trumpet_hours_1_to_25"] = trumpet(samples, 60, 25 * 60, &dat_day);
    if (!data_dir.empty()) {
      spit(data_dir + "/trumpet-" + name + ".dat", dat_hour);
      spit(data_dir + "/trumpet-day-" + name + ".dat", dat_day);
      spit(data_dir + "/cumulative-" + name + ".dat", series);
    }
    worst_steps = std::max({worst_steps, std::fabs(max_err_steps), std::fabs(min_err_steps)});
    worst_counting = std::max({worst_counting, std::fabs(max_cnt_steps), std::fabs(min_cnt_steps)});
    std::fprintf(stderr, "thecal-bench: accuracy %-10s %.1f days: %.3f steps at the end (range %.3f .. %.3f)\n", name, days,
                 (last.steps_ul - last.programmed) / vps, min_err_steps, max_err_steps);
    per[name] = std::move(j);
  }
  out["prescriptions"] = std::move(per);
  out["worst_abs_error_steps"] = worst_steps;
  out["worst_abs_counting_error_steps"] = worst_counting;
  out["error_definitions"] =
      "error_steps: (steps issued x volume per step - the prescription's integral) / volume per step, sampled "
      "every 30 s; counting_error_steps: the same plus what the core dropped on purpose (S1 daily-limit hold, "
      "stops), which is the identity S6 is about";
  return out;
}

Json preview_bench(const std::string& share) {
  const Library lib = load_library(share);
  Rig r(lib.daemon.board);
  const TherapyPlan plan = load_plan(lib, share + "/examples/prescription-flex.yaml", r.now.wall);
  r.ready(plan);
  r.run(hours(5), seconds(1));  // some history: the ledger and the lockout are not empty
  CoreState live;
  r.core->export_state(live, r.now);
  Json out = Json::object();
  out["method"] =
      "app::run_preview (restore a copy of the core's exported state, PumpCore::fast_forward at the board's 1 ms loop "
      "period) of examples/prescription-flex.yaml (flex basal, a periodic dose, every allowed patient bolus taken "
      "as soon as allowed) on a pump that has infused it for 5 h; 15 min buckets as thecalctl asks; wall time of "
      "one call, best of 3 (one run for 180 days)";
  out["target_s_90_days"] = 1.0;
  Json runs = Json::object();
  double ninety = 0;
  for (const int d : {1, 30, 90, 180}) {
    app::PreviewRequest req;
    req.with_patient_boluses = true;
    req.horizon = days(d);
    req.bucket = minutes(15);
    double best = 1e300;
    app::Outcome<app::PreviewResult> res;
    for (int k = 0; k < (d == 180 ? 1 : 3); ++k) {
      const double t0 = now_s();
      res = app::run_preview(lib.daemon.board, live, req);
      best = std::min(best, now_s() - t0);
      if (!res.ok()) throw std::runtime_error("preview refused: " + res.error->message);
    }
    Json j = Json::object();
    j["seconds"] = best;
    j["iterations"] = static_cast<double>(res.value.iterations);
    j["patient_boluses"] = static_cast<double>(res.value.boluses_taken);
    j["events"] = static_cast<double>(res.value.events.size());
    j["buckets"] = static_cast<double>(res.value.buckets.size());
    j["simulated_cycles"] = static_cast<double>(days(d) / lib.daemon.board.loop_period);
    j["us_per_iteration"] = 1e6 * best / std::max(1.0, static_cast<double>(res.value.iterations));
    runs[std::to_string(d)] = std::move(j);
    if (d == 90) ninety = best;
  }
  out["days"] = std::move(runs);
  out["ninety_days_s"] = ninety;
  out["target_met"] = ninety < 1.0;
  return out;
}

}  // namespace thecal::bench
