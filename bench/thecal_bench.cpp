// thecal-bench: every performance target of SPEC section 7, each measured side by side with
// its reference in one run; results as JSON, plot data as .dat files (bench/run.sh plots
// them with gnuplot).
//
//   thecal-bench --share SRC --thecald PATH --baseline PATH --out FILE [--data-dir DIR]
//                [--seconds S] [--sections latency,dbus,footprint,startup,control,accuracy,recorder] ...
//
// (thecal-bench --help lists every option.)  Needs root: SCHED_FIFO, mlockall, stress-ng.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bench/common.hpp"
#include "bench/core_bench.hpp"

using namespace thecal::bench;

namespace {

struct Options {
  Paths paths;
  std::string out = "bench/results/latest.json";
  std::string data_dir;
  std::string label = "host";
  std::string note;
  double seconds = 10;          // latency: per side, per condition
  int rounds = 2;               // latency: turns each side takes
  int priority = 80;
  std::optional<int> cpu = 1;
  std::size_t dbus_calls = 2000;
  double dbus_seconds = 3;
  double footprint_seconds = 10;
  int starts = 5;
  std::size_t ticks = 100'000;
  double accuracy_days = 30;
  std::string stress = "--cpu 2 --io 1 --vm 1 --vm-bytes 128M";
  std::set<std::string> sections{"latency", "dbus", "footprint", "startup", "control", "accuracy", "preview", "recorder"};
};

void usage() {
  std::cout <<
      "thecal-bench: SPEC section 7 benchmarks, each against its reference, in one run\n\n"
      "  --share DIR             source tree (examples/, config/drugs.yaml, packaging/, scripts/, bench/)\n"
      "  --thecald PATH          the daemon to measure\n"
      "  --baseline PATH         bench-dbus-baseline (the minimal sd-bus server)\n"
      "  --dbus-daemon PATH, --cyclictest PATH, --stress-ng PATH   (default: from PATH)\n"
      "  --out FILE              results (JSON); default bench/results/latest.json\n"
      "  --data-dir DIR          plot data (.dat) go here (default: beside --out)\n"
      "  --label TEXT            host, guest, rpi4, ...   --note TEXT   free text into the results\n"
      "  --sections LIST         latency,dbus,footprint,startup,control,accuracy,preview,recorder (default: all)\n"
      "  --seconds S             latency: seconds per side and condition (default 10)\n"
      "  --rounds N              latency: the two sides alternate N times (default 2)\n"
      "  --priority N            SCHED_FIFO priority of both thecald's loop and cyclictest (80)\n"
      "  --cpu N|none            CPU both are pinned to (1)\n"
      "  --stress ARGS           stress-ng load (default: --cpu 2 --io 1 --vm 1 --vm-bytes 128M)\n"
      "  --dbus-calls N          round trips per measurement (2000)   --dbus-seconds S  throughput runs (3)\n"
      "  --footprint-seconds S   CPU share window (10)   --starts N   extra start-to-READY runs (5)\n"
      "  --ticks N               control step: ticks per state (100000)\n"
      "  --accuracy-days D       simulated days per prescription (30)\n";
}

Options parse(int argc, char** argv) {
  Options o;
  o.paths.work = "";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--share") o.paths.share = val();
    else if (a == "--thecald") o.paths.thecald = val();
    else if (a == "--baseline") o.paths.baseline = val();
    else if (a == "--dbus-daemon") o.paths.dbus_daemon = val();
    else if (a == "--cyclictest") o.paths.cyclictest = val();
    else if (a == "--stress-ng") o.paths.stress_ng = val();
    else if (a == "--out") o.out = val();
    else if (a == "--data-dir") o.data_dir = val();
    else if (a == "--label") o.label = val();
    else if (a == "--note") o.note = val();
    else if (a == "--seconds") o.seconds = std::stod(val());
    else if (a == "--rounds") o.rounds = std::max(1, std::stoi(val()));
    else if (a == "--priority") o.priority = std::stoi(val());
    else if (a == "--cpu") {
      const std::string v = val();
      if (v == "none") o.cpu.reset();
      else o.cpu = std::stoi(v);
    } else if (a == "--stress") o.stress = val();
    else if (a == "--dbus-calls") o.dbus_calls = std::stoul(val());
    else if (a == "--dbus-seconds") o.dbus_seconds = std::stod(val());
    else if (a == "--footprint-seconds") o.footprint_seconds = std::stod(val());
    else if (a == "--starts") o.starts = std::stoi(val());
    else if (a == "--ticks") o.ticks = std::stoul(val());
    else if (a == "--accuracy-days") o.accuracy_days = std::stod(val());
    else if (a == "--sections") {
      o.sections.clear();
      std::stringstream ss(val());
      std::string s;
      while (std::getline(ss, s, ',')) o.sections.insert(s);
    } else {
      throw std::runtime_error("unknown argument " + a + " (try --help)");
    }
  }
  if (o.paths.share.empty() || o.paths.thecald.empty() || o.paths.baseline.empty()) {
    throw std::runtime_error("--share, --thecald and --baseline are required (try --help)");
  }
  for (std::string* path : {&o.paths.share, &o.paths.thecald, &o.paths.baseline}) {
    char buf[PATH_MAX];
    if (realpath(path->c_str(), buf) == nullptr) throw std::runtime_error("no such file: " + *path);
    *path = buf;
  }
  if (o.data_dir.empty()) {
    const auto slash = o.out.rfind('/');
    o.data_dir = slash == std::string::npos ? "." : o.out.substr(0, slash);
  }
  return o;
}

void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "thecal-bench: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

Json environment(const Options& o) {
  Json e = Json::object();
  utsname u{};
  uname(&u);
  e["label"] = o.label;
  e["kernel"] = std::string(u.release) + " " + u.version;
  e["machine"] = u.machine;
  e["preempt_rt"] = std::string(u.version).find("PREEMPT_RT") != std::string::npos ||
                    slurp("/sys/kernel/realtime").find('1') != std::string::npos;
  e["cpus_online"] = static_cast<std::int64_t>(sysconf(_SC_NPROCESSORS_ONLN));
  std::istringstream ci(slurp("/proc/cpuinfo"));
  std::string line;
  while (std::getline(ci, line)) {
    if (line.rfind("model name", 0) == 0) {
      e["cpu_model"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  e["loadavg_at_start"] = first_line(slurp("/proc/loadavg"));
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  e["date"] = buf;
  if (!o.note.empty()) e["note"] = o.note;
  return e;
}

// ---- cyclictest -------------------------------------------------------------------------------
Histogram run_cyclictest(const Options& o, double seconds, const std::string& log_path, Json& info) {
  std::vector<std::string> argv{o.paths.cyclictest, "-m", "-p", std::to_string(o.priority), "-i", "1000", "-t", "1",
                                "-h", std::to_string(kHistUs), "-q", "-D", std::to_string(static_cast<int>(std::ceil(seconds)))};
  if (o.cpu) {
    argv.emplace_back("-a");
    argv.emplace_back(std::to_string(*o.cpu));
  }
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  info["command"] = cmd;
  const auto [code, text] = run_capture(argv, seconds + 60);
  spit(log_path, text);
  if (code != 0) throw std::runtime_error("cyclictest failed (" + std::to_string(code) + "): " + text.substr(0, 400));
  Histogram h;
  h.counts.assign(kHistUs, 0);
  std::istringstream in(text);
  std::string line;
  double max_us = -1;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      long long v = 0;
      if (std::sscanf(line.c_str(), "# Max Latencies: %lld", &v) == 1) max_us = static_cast<double>(v);
      if (std::sscanf(line.c_str(), "# Histogram Overflows: %lld", &v) == 1) h.overflow = static_cast<std::uint64_t>(v);
      continue;
    }
    unsigned long long bin = 0;
    unsigned long long n = 0;
    if (std::sscanf(line.c_str(), "%llu %llu", &bin, &n) == 2 && bin < h.counts.size()) h.counts[bin] += n;
  }
  if (h.overflow > 0) h.overflow_max_us = max_us;
  info["reported_max_us"] = max_us;
  return h;
}

// ---- D-Bus load: pipelined asynchronous Get calls -------------------------------------------
struct Flood {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> errors{0};
  std::thread th;
  double seconds = 0;

  void start(const std::string& address, const char* dest, const char* path, const char* iface, const char* prop,
             int window) {
    th = std::thread([=, this] {
      Bus b(address);
      int inflight = 0;
      struct Ctx {
        Flood* f;
        int* inflight;
      } ctx{this, &inflight};
      auto cb = [](sd_bus_message* m, void* ud, sd_bus_error*) -> int {
        auto* c = static_cast<Ctx*>(ud);
        --*c->inflight;
        if (sd_bus_message_is_method_error(m, nullptr) != 0) c->f->errors.fetch_add(1, std::memory_order_relaxed);
        else c->f->done.fetch_add(1, std::memory_order_relaxed);
        return 0;
      };
      const double t0 = now_s();
      while (!stop.load(std::memory_order_relaxed)) {
        while (inflight < window) {
          if (sd_bus_call_method_async(b.get(), nullptr, dest, path, "org.freedesktop.DBus.Properties", "Get", cb, &ctx,
                                       "ss", iface, prop) < 0) {
            errors.fetch_add(1);
            break;
          }
          ++inflight;
        }
        int r = 0;
        while ((r = sd_bus_process(b.get(), nullptr)) > 0) {
        }
        if (r < 0) break;
        if (inflight >= window) (void)sd_bus_wait(b.get(), 100'000);
      }
      while (inflight > 0 && sd_bus_process(b.get(), nullptr) >= 0) (void)sd_bus_wait(b.get(), 100'000);
      seconds = now_s() - t0;
    });
  }
  void finish() {
    stop.store(true);
    if (th.joinable()) th.join();
  }
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(done.load()) / seconds : 0; }
};

std::string hist_dat(const Histogram& ref, const Histogram& dut) {
  std::size_t top = 0;
  for (std::size_t i = 0; i < std::max(ref.counts.size(), dut.counts.size()); ++i) {
    const std::uint64_t a = i < ref.counts.size() ? ref.counts[i] : 0;
    const std::uint64_t b = i < dut.counts.size() ? dut.counts[i] : 0;
    if (a + b > 0) top = i;
  }
  // Only the non-empty bins and the empty bin right after each (which ends a step in the
  // plot): the histograms reach 69 ms in 1 us bins, and the guest sends this file over its
  // serial console, where tens of thousands of empty rows stalled the port.
  std::string s = "# us cyclictest thecald (empty bins left out, except the first after a non-empty one)\n";
  bool previous = false;
  for (std::size_t i = 0; i <= top + 1; ++i) {
    const std::uint64_t a = i < ref.counts.size() ? ref.counts[i] : 0;
    const std::uint64_t b = i < dut.counts.size() ? dut.counts[i] : 0;
    const bool now = a + b > 0;
    if (now || previous) s += std::to_string(i) + " " + std::to_string(a) + " " + std::to_string(b) + "\n";
    previous = now;
  }
  return s;
}

double ratio(double a, double b) { return b > 0 ? a / b : (a > 0 ? INFINITY : 1.0); }

struct Context {
  Options o;
  std::string work;
  std::unique_ptr<PrivateBus> bus;
  std::unique_ptr<Child> baseline;
  std::vector<double> ready_s;  // every thecald start of the run
  int daemon_no = 0;

  std::unique_ptr<Daemon> daemon(const DaemonOptions& d) {
    const std::string dir = work + "/thecald-" + std::to_string(++daemon_no);
    mkdir(dir.c_str(), 0755);
    auto p = std::make_unique<Daemon>(o.paths, dir, bus->address(), d);
    ready_s.push_back(*p->ready_s());
    return p;
  }
  DaemonOptions dopt() const {
    DaemonOptions d;
    d.priority = o.priority;
    d.cpu = o.cpu;
    return d;
  }
};

// ---- section: wake-up latency -------------------------------------------------------------
Json latency_section(Context& c) {
  const Options& o = c.o;
  Json out = Json::object();
  out["method"] =
      "for each condition, cyclictest (the reference) and the real thecald take turns (rounds of cyclictest then "
      "thecald, the same time each), with the same SCHED_FIFO priority, period (1 ms, absolute clock_nanosleep "
      "on CLOCK_MONOTONIC), CPU affinity and mlockall, under one continuous load (stress-ng runs through all "
      "rounds; the D-Bus flood targets the baseline server during cyclictest's turns and thecald during its "
      "own). thecald runs on the sim backend, infusing examples/prescription-flex.yaml at time scale 1, and is "
      "SIGSTOPped during cyclictest's turns; its histogram (1 us bins below 4.096 ms, 64 us bins up to 69.632 ms, "
      "counted at their last microsecond) is read from "
      "org.thecal.Diagnostics1.LatencyHistogram 0.3 s after each SIGCONT and at the end of its turn, and the "
      "differences are summed. cyclictest runs with -h 69632 (1 us bins to 69.632 ms). Percentiles: upper edge of the "
      "1 us bin holding the rank (both sides alike); max: the highest non-empty bin (floor us). A/A control: every "
      "round ends with a second cyclictest turn (B) as long as the others, so each round is A, thecald, B; B against "
      "A (ratio_cyclictest_b_to_a, aa_band) is the machine's own spread between two runs of the same program in "
      "this run, and a thecald ratio within that band cannot be told from noise.";
  out["seconds_per_side"] = o.seconds;
  out["rounds"] = o.rounds;
  out["priority"] = o.priority;
  out["cpu"] = o.cpu ? Json(*o.cpu) : Json("none");
  out["period_us"] = 1000;
  Json conds = Json::object();
  bool all_met = true;
  for (const std::string cond : {"idle", "stress", "dbus_flood"}) {
    log("latency: %s: %d rounds of cyclictest A, thecald, cyclictest B, %.0f s each in all", cond.c_str(), o.rounds,
        o.seconds);
    Json cj = Json::object();
    Json ref_info = Json::object();
    Histogram ref;
    ref.counts.assign(kHistUs, 0);
    // The A/A control: a second cyclictest turn after thecald's in every round (A, thecald,
    // B), so the machine's own noise between two runs of the same reference is measured in
    // the same run, interleaved like the real comparison.
    Histogram ref_b;
    ref_b.counts.assign(kHistUs, 0);
    Json ref_b_info = Json::object();
    Json aa_rounds = Json::array();
    Histogram dut;
    dut.counts.assign(kHistUs, 0);
    Json dut_info = Json::object();
    // thecald is set up once per condition and stopped (SIGSTOP) while cyclictest runs, so
    // the two never share the CPU; the first cycles after each SIGCONT are left out.
    auto d = c.daemon(c.dopt());
    Bus b(c.bus->address());
    start_therapy(b, o.paths, "prescription-flex.yaml");
    std::unique_ptr<Child> stress;
    if (cond == "stress") {
      std::vector<std::string> a{o.paths.stress_ng};
      std::stringstream ss(o.stress);
      std::string w;
      while (ss >> w) a.push_back(w);
      a.insert(a.end(), {"--timeout", std::to_string(static_cast<int>(2 * o.seconds + 60 * o.rounds)) + "s", "--quiet"});
      stress = std::make_unique<Child>(a, c.work + "/stress-ng.log");
      sleep_s(1);
    }
    const double part = std::ceil(o.seconds / o.rounds);  // cyclictest -D takes whole seconds
    double ref_flood = 0;
    double dut_flood = 0;
    std::uint64_t overruns = 0;
    std::uint64_t cycles = 0;
    std::uint64_t flood_errors = 0;
    // One cyclictest turn (thecald stopped), added into `into`; returns the turn's histogram.
    const auto reference_turn = [&](Histogram& into, Json& info, const char* tag) {
      Flood flood;
      if (cond == "dbus_flood") {
        flood.start(c.bus->address(), kBaseName, kBasePath, kBaseIface, "State", 16);
        sleep_s(0.3);
      }
      Histogram h = run_cyclictest(o, part, c.work + "/cyclictest-" + cond + tag + ".log", info);
      flood.finish();
      ref_flood += flood.rate() / (2.0 * o.rounds);
      for (std::size_t i = 0; i < h.counts.size(); ++i) into.counts[i] += h.counts[i];
      into.overflow += h.overflow;
      into.overflow_max_us = std::max(into.overflow_max_us, h.overflow_max_us);
      return h;
    };
    for (int round = 0; round < o.rounds; ++round) {
      kill(d->pid(), SIGSTOP);
      const Histogram a = reference_turn(ref, ref_info, "");
      kill(d->pid(), SIGCONT);
      {
        Flood flood;
        if (cond == "dbus_flood") flood.start(c.bus->address(), kPumpName, kPumpPath, kPumpIface, "State", 16);
        sleep_s(0.3);
        const Histogram h0 = b.latency_histogram();
        const std::uint64_t ov0 = b.get_u64(kDiagIface, "Overruns");
        const std::uint64_t cy0 = b.get_u64(kDiagIface, "LoopCycles");
        sleep_s(part);
        const Histogram h1 = b.latency_histogram();
        const std::uint64_t ov1 = b.get_u64(kDiagIface, "Overruns");
        const std::uint64_t cy1 = b.get_u64(kDiagIface, "LoopCycles");
        flood.finish();
        dut_flood += flood.rate() / o.rounds;
        flood_errors += flood.errors.load();
        const Histogram h = h1.minus(h0);
        for (std::size_t i = 0; i < h.counts.size(); ++i) dut.counts[i] += h.counts[i];
        dut.overflow += h.overflow;
        // The daemon's histogram ends at 69.632 ms and its max is since start (which includes
        // the SIGSTOP gaps): an overflow in this turn is known only as ">= 69632 us".
        if (h.overflow > 0) dut.overflow_max_us = static_cast<double>(kHistUs);
        overruns += ov1 - ov0;
        cycles += cy1 - cy0;
      }
      kill(d->pid(), SIGSTOP);
      const Histogram bh = reference_turn(ref_b, ref_b_info, "-b");
      kill(d->pid(), SIGCONT);
      Json ar = Json::object();
      ar["p999"] = ratio(bh.quantile_us(0.999), a.quantile_us(0.999));
      ar["max"] = ratio(bh.max_us(), a.max_us());
      aa_rounds.push(std::move(ar));
    }
    if (stress) stress->stop(SIGTERM, 10);
    ref_info["rounds"] = o.rounds;
    dut_info["rounds"] = o.rounds;
    if (cond == "dbus_flood") {
      ref_info["flood_target"] = "the minimal sd-bus baseline server (org.thecal.BenchBaseline)";
      ref_info["flood_calls_per_s"] = ref_flood;
      dut_info["flood_target"] = "thecald (Properties.Get org.thecal.Pump1.State, 16 calls in flight)";
      dut_info["flood_calls_per_s"] = dut_flood;
      dut_info["flood_errors"] = flood_errors;
    }
    dut_info["realtime_scheduling"] = b.get_bool(kDiagIface, "RealtimeScheduling");
    dut_info["overruns"] = overruns;
    dut_info["loop_cycles"] = cycles;
    dut_info["control_step_max_ns"] = b.get_u64(kDiagIface, "ControlStepMaxNs");
    dut_info["state_at_end"] = b.get_string(kPumpIface, "State");
    d->stop();
    Json rj = ref.summary();
    Json dj = dut.summary();
    dj["max_is_lower_bound"] = dut.overflow > 0;
    cj["cyclictest"] = rj;
    cj["cyclictest_run"] = ref_info;
    cj["thecald"] = dj;
    cj["thecald_run"] = dut_info;
    Json r = Json::object();
    r["p50"] = ratio(dut.quantile_us(0.5), ref.quantile_us(0.5));
    r["p99"] = ratio(dut.quantile_us(0.99), ref.quantile_us(0.99));
    r["p999"] = ratio(dut.quantile_us(0.999), ref.quantile_us(0.999));
    r["max"] = ratio(dut.max_us(), ref.max_us());
    const bool met = ratio(dut.quantile_us(0.999), ref.quantile_us(0.999)) <= 1.25 &&
                     ratio(dut.max_us(), ref.max_us()) <= 1.25;
    all_met = all_met && met;
    cj["ratio_thecald_to_cyclictest"] = r;
    cj["target_met"] = met;
    // The A/A band: cyclictest's second turns against its first, the same statistics.  A
    // thecald ratio inside [1/band, band] cannot be told from the machine's noise.
    Json aa = Json::object();
    aa["p50"] = ratio(ref_b.quantile_us(0.5), ref.quantile_us(0.5));
    aa["p99"] = ratio(ref_b.quantile_us(0.99), ref.quantile_us(0.99));
    aa["p999"] = ratio(ref_b.quantile_us(0.999), ref.quantile_us(0.999));
    aa["max"] = ratio(ref_b.max_us(), ref.max_us());
    aa["per_round"] = std::move(aa_rounds);
    cj["cyclictest_b"] = ref_b.summary();
    cj["ratio_cyclictest_b_to_a"] = aa;
    const auto band = [](double x) { return x >= 1.0 ? x : (x > 0 ? 1.0 / x : INFINITY); };
    const double band_p999 = band(ratio(ref_b.quantile_us(0.999), ref.quantile_us(0.999)));
    const double band_max = band(ratio(ref_b.max_us(), ref.max_us()));
    cj["aa_band"] = Json::object();
    cj["aa_band"]["p999"] = band_p999;
    cj["aa_band"]["max"] = band_max;
    log("latency: %s: thecald/cyclictest p99.9 %.2fx (A/A band %.2fx), max %.2fx (A/A band %.2fx)%s", cond.c_str(),
        ratio(dut.quantile_us(0.999), ref.quantile_us(0.999)), band_p999, ratio(dut.max_us(), ref.max_us()), band_max,
        band_p999 > 1.25 || band_max > 1.25 ? ": the A/A band is wider than the 1.25x target, this run cannot decide it"
                                            : "");
    spit(o.data_dir + "/latency-" + cond + ".dat", hist_dat(ref, dut));
    log("latency: %s: cyclictest p50/p99/p99.9/max %.0f/%.0f/%.0f/%.0f us; thecald %.0f/%.0f/%.0f/%.0f us", cond.c_str(),
        ref.quantile_us(0.5), ref.quantile_us(0.99), ref.quantile_us(0.999), ref.max_us(), dut.quantile_us(0.5),
        dut.quantile_us(0.99), dut.quantile_us(0.999), dut.max_us());
    conds[cond] = std::move(cj);
  }
  out["conditions"] = std::move(conds);
  out["target"] = "p99.9 and max within 1.25x of cyclictest's, same machine, same load, same run";
  out["target_met"] = all_met;
  return out;
}

// ---- section: D-Bus -------------------------------------------------------------------------
struct Target {
  const char* name;
  const char* dest;
  const char* path;
  const char* iface;
};

std::vector<double> round_trips(sd_bus* bus, const Target& t, bool method, std::size_t n) {
  std::vector<double> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n + 100; ++i) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = nullptr;
    const std::int64_t a = mono_ns();
    int r = 0;
    if (method) {
      r = sd_bus_call_method(bus, t.dest, t.path, t.iface, "GetEvents", &e, &reply, "tu", static_cast<std::uint64_t>(0), 1U);
    } else {
      r = sd_bus_call_method(bus, t.dest, t.path, "org.freedesktop.DBus.Properties", "Get", &e, &reply, "ss", t.iface,
                             "State");
    }
    if (r >= 0 && !method) {
      const char* s = nullptr;
      r = sd_bus_message_read(reply, "v", "s", &s);
    } else if (r >= 0) {
      r = sd_bus_message_skip(reply, "a(tsss)");
    }
    const std::int64_t b = mono_ns();
    sd_bus_message_unref(reply);
    if (r < 0) {
      const std::string msg = e.message != nullptr ? e.message : std::strerror(-r);
      sd_bus_error_free(&e);
      throw std::runtime_error(std::string(t.name) + (method ? " GetEvents: " : " Get State: ") + msg);
    }
    if (i >= 100) v.push_back(static_cast<double>(b - a) / 1000.0);  // the first 100 warm up
  }
  return v;
}

double sequential_rate(sd_bus* bus, const Target& t, double seconds) {
  std::uint64_t n = 0;
  const double t0 = now_s();
  while (now_s() - t0 < seconds) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = nullptr;
    if (sd_bus_call_method(bus, t.dest, t.path, "org.freedesktop.DBus.Properties", "Get", &e, &reply, "ss", t.iface,
                           "State") >= 0) {
      ++n;
    }
    sd_bus_message_unref(reply);
    sd_bus_error_free(&e);
  }
  return static_cast<double>(n) / (now_s() - t0);
}

Json dbus_section(Context& c) {
  const Options& o = c.o;
  Json out = Json::object();
  out["method"] =
      "one sd-bus client connection on the private system-like bus (the project's policy file) measures, "
      "alternately against thecald (infusing, sim backend) and the minimal sd-bus baseline server "
      "(bench/dbus_baseline.cpp): sequential Properties.Get(State) and GetEvents(0, 1) round trips (100 warm-up "
      "calls dropped), then sustained calls/s: sequential, and pipelined with 16 Get calls in flight";
  out["calls_per_measurement"] = static_cast<std::uint64_t>(o.dbus_calls);
  auto d = c.daemon(c.dopt());
  Bus b(c.bus->address());
  start_therapy(b, o.paths, "prescription-flex.yaml");
  const Target targets[] = {{"thecald", kPumpName, kPumpPath, kPumpIface}, {"baseline", kBaseName, kBasePath, kBaseIface}};
  Json res = Json::object();
  Json tj[2] = {Json::object(), Json::object()};
  for (int i = 0; i < 2; ++i) tj[i]["property_read"] = sample_summary(round_trips(b.get(), targets[i], false, o.dbus_calls), "us");
  for (int i = 0; i < 2; ++i) tj[i]["method_call"] = sample_summary(round_trips(b.get(), targets[i], true, o.dbus_calls), "us");
  for (int i = 0; i < 2; ++i) tj[i]["sequential_calls_per_s"] = sequential_rate(b.get(), targets[i], o.dbus_seconds);
  for (int i = 0; i < 2; ++i) {
    Flood f;
    f.start(c.bus->address(), targets[i].dest, targets[i].path, targets[i].iface, "State", 16);
    sleep_s(o.dbus_seconds);
    f.finish();
    tj[i]["pipelined_calls_per_s"] = f.rate();
    tj[i]["pipelined_errors"] = f.errors.load();
  }
  for (int i = 0; i < 2; ++i) {
    log("dbus: %s: %s", targets[i].name, tj[i].dump().c_str());
    res[targets[i].name] = std::move(tj[i]);
  }
  res["thecald_state_at_end"] = b.get_string(kPumpIface, "State");
  d->stop();
  out["results"] = std::move(res);
  out["target"] = "property read round trip p99 < 1 ms; >= 5,000 calls/s sustained";
  return out;
}

// ---- section: footprint, journal ------------------------------------------------------------
struct ProcCpu {
  double utime_s = 0;
  double stime_s = 0;
};
/// CPU time of every thread of `pid` in seconds, from /proc/PID/task/*/schedstat (ns
/// resolution; the first field is time spent on a CPU).  -1 if unavailable.
double schedstat_s(pid_t pid, std::map<std::string, double>* per_thread = nullptr) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  std::vector<std::string> tids;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') tids.emplace_back(e->d_name);
  }
  closedir(d);
  double total = 0;
  bool any = false;
  for (const auto& tid : tids) {
    const std::string s = slurp(dir + "/" + tid + "/schedstat");
    if (s.empty()) continue;
    total += std::stod(s) / 1e9;
    any = true;
    if (per_thread != nullptr) {
      std::string comm = slurp(dir + "/" + tid + "/comm");
      comm = comm.substr(0, comm.find('\n'));
      (*per_thread)[comm + " (" + tid + ")"] = std::stod(s) / 1e9;
    }
  }
  return any ? total : -1;
}

ProcCpu proc_cpu(pid_t pid) {
  const std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto p = s.rfind(')');
  ProcCpu c;
  if (p == std::string::npos) return c;
  std::istringstream in(s.substr(p + 2));
  std::string f;
  std::vector<std::string> fields;
  while (in >> f) fields.push_back(f);
  // After "pid (comm) ": state is field 3, utime 14, stime 15 (1-based in proc(5)).
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (fields.size() > 13) {
    c.utime_s = std::stod(fields[11]) / hz;
    c.stime_s = std::stod(fields[12]) / hz;
  }
  return c;
}
double status_kib(pid_t pid, const char* key) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::strlen(key) + 1));
  }
  return 0;
}

Json footprint_section(Context& c) {
  const Options& o = c.o;
  Json out = Json::object();
  out["method"] =
      "a fresh thecald (sim backend, 1 kHz loop) infusing examples/prescription-flex.yaml at time scale 1, no D-Bus "
      "client after set-up: CPU share = CPU time of all its threads over the window (/proc/PID/task/*/schedstat, ns; "
      "utime + stime from /proc/PID/stat in clock ticks as a cross-check) / window length (100 % = one core); VmRSS and VmHWM from /proc/PID/status at the end; JournalWrites (Diagnostics1) over the window";
  auto d = c.daemon(c.dopt());
  Bus b(c.bus->address());
  start_therapy(b, o.paths, "prescription-flex.yaml");
  const std::uint64_t jw_start = b.get_u64(kDiagIface, "JournalWrites");
  sleep_s(1);
  const pid_t pid = d->pid();
  const ProcCpu a = proc_cpu(pid);
  std::map<std::string, double> ta;
  std::map<std::string, double> tz;
  const double sa = schedstat_s(pid, &ta);
  const double t0 = now_s();
  const std::uint64_t jw0 = b.get_u64(kDiagIface, "JournalWrites");
  sleep_s(o.footprint_seconds);
  const ProcCpu z = proc_cpu(pid);
  const double sz = schedstat_s(pid, &tz);
  const double t1 = now_s();
  const std::uint64_t jw1 = b.get_u64(kDiagIface, "JournalWrites");
  const double cpu_ticks = 100.0 * ((z.utime_s + z.stime_s) - (a.utime_s + a.stime_s)) / (t1 - t0);
  const double cpu = sa >= 0 && sz >= 0 ? 100.0 * (sz - sa) / (t1 - t0) : cpu_ticks;
  out["window_s"] = t1 - t0;
  out["cpu_percent_of_one_core"] = cpu;
  out["cpu_percent_from_stat_ticks"] = cpu_ticks;
  Json per = Json::object();
  for (const auto& [name, v] : tz) per[name] = 100.0 * (v - (ta.count(name) != 0 ? ta[name] : 0.0)) / (t1 - t0);
  out["cpu_percent_per_thread"] = std::move(per);
  out["cpu_user_s"] = z.utime_s - a.utime_s;
  out["cpu_system_s"] = z.stime_s - a.stime_s;
  out["clock_ticks_per_s"] = static_cast<std::int64_t>(sysconf(_SC_CLK_TCK));
  out["vm_rss_kib"] = status_kib(pid, "VmRSS:");
  out["vm_hwm_kib"] = status_kib(pid, "VmHWM:");
  out["vm_lck_kib"] = status_kib(pid, "VmLck:");
  out["threads"] = status_kib(pid, "Threads:");
  out["state_at_end"] = b.get_string(kPumpIface, "State");
  Json j = Json::object();
  j["journal_writes_after_start"] = jw_start;
  j["journal_writes_in_window"] = jw1 - jw0;
  j["per_minute"] = static_cast<double>(jw1 - jw0) * 60.0 / (t1 - t0);
  // S7: a reservation is written and fsynced before the loop may deliver, so a thecald with
  // the journal counts at least one write once therapy has started.  None at all means this
  // build has no journal yet: the figure is pending, not zero.
  const bool has_journal = jw1 > 0;
  j["status"] = has_journal ? "measured" : "pending";
  if (!has_journal) {
    j["why"] =
        "this thecald counts no journal write at all, not even the reservation S7 requires before delivery: "
        "the crash-safe journal (S7) is not in this build, so fsyncs/min at steady basal cannot be measured yet";
  }
  // A minute of real time holds about one reservation, so the window above can only say 0,
  // 1 or 2.  The average is measured over simulated hours instead: reservations are sized in
  // the pump's (simulated) time, so fsyncs per simulated minute at a high time scale are
  // what a pump at time scale 1 writes per real minute.  Everything is counted: reservations,
  // event flushes, checkpoints, compactions.
  {
    constexpr double kScale = 3600;  // a simulated hour per real second: the 60 s window is 2.5 days
    b.set_time_scale(kScale);
    sleep_s(0.5);
    const std::uint64_t w0 = b.get_u64(kDiagIface, "WallClockUsec");
    const std::uint64_t f0 = b.get_u64(kDiagIface, "JournalWrites");
    sleep_s(o.footprint_seconds);
    const std::uint64_t w1 = b.get_u64(kDiagIface, "WallClockUsec");
    const std::uint64_t f1 = b.get_u64(kDiagIface, "JournalWrites");
    b.set_time_scale(1);
    const double sim_min = static_cast<double>(w1 - w0) / 60e6;
    Json s = Json::object();
    s["time_scale"] = kScale;
    s["simulated_minutes"] = sim_min;
    s["journal_writes"] = f1 - f0;
    s["per_simulated_minute"] = sim_min > 0 ? static_cast<double>(f1 - f0) / sim_min : -1.0;
    s["state_at_end"] = b.get_string(kPumpIface, "State");
    j["steady_basal_simulated"] = std::move(s);
    j["target"] = "<= 1 fsync/min average at steady basal (S7)";
  }
  out["journal"] = std::move(j);
  // The reference: what waking up 1000 times a second costs on this machine at all.
  {
    std::vector<std::string> argv{o.paths.cyclictest, "-m", "-p", std::to_string(o.priority), "-i", "1000", "-t", "1", "-q",
                                  "-D", std::to_string(static_cast<int>(o.footprint_seconds + 3))};
    if (o.cpu) {
      argv.emplace_back("-a");
      argv.emplace_back(std::to_string(*o.cpu));
    }
    Child ct(argv, c.work + "/cyclictest-cpu.log");
    sleep_s(1);
    const double ca = schedstat_s(ct.pid());
    const double u0 = now_s();
    sleep_s(o.footprint_seconds);
    const double cz = schedstat_s(ct.pid());
    const double u1 = now_s();
    ct.stop(SIGINT, 10);
    Json r = Json::object();
    r["what"] = "cyclictest, same priority, period and CPU, over the same window length: the cost of the 1 kHz wake-up alone";
    r["cpu_percent_of_one_core"] = ca >= 0 && cz >= 0 ? 100.0 * (cz - ca) / (u1 - u0) : -1.0;
    out["reference_cyclictest"] = std::move(r);
  }
  log("footprint: CPU %.2f %% of one core, VmRSS %.0f KiB, VmHWM %.0f KiB", cpu, status_kib(pid, "VmRSS:"),
      status_kib(pid, "VmHWM:"));
  d->stop();
  return out;
}

Json startup_section(Context& c) {
  const Options& o = c.o;
  Json out = Json::object();
  out["method"] =
      "thecald (sim backend) is started under an sd_notify listener of thecal-bench's own (NOTIFY_SOCKET = a "
      "datagram socket): time from just before fork+exec to the READY=1 datagram. Dedicated runs start with "
      "examples/prescription-flex.yaml stored (loaded and checked at start); every other start of this run "
      "(no stored prescription) is listed too";
  std::vector<double> dedicated;
  for (int i = 0; i < o.starts; ++i) {
    DaemonOptions d = c.dopt();
    d.prescription = o.paths.share + "/examples/prescription-flex.yaml";
    auto p = c.daemon(d);
    dedicated.push_back(*p->ready_s() * 1000.0);
    p->stop();
  }
  std::vector<double> all;
  for (double s : c.ready_s) all.push_back(s * 1000.0);
  out["with_stored_prescription"] = sample_summary(dedicated, "ms");
  out["all_starts_of_this_run"] = sample_summary(all, "ms");
  out["target"] = "start to READY=1 < 200 ms";
  log("startup: %s", out["with_stored_prescription"].dump().c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Context c;
    c.o = parse(argc, argv);
    const Options& o = c.o;
    mkdir(o.data_dir.c_str(), 0755);
    char tmpl[] = "/tmp/thecal-bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    c.work = tmpl;
    c.o.paths.work = c.work;
    chmod(c.work.c_str(), 0755);
    Json root = Json::object();
    root["spec"] = "SPEC section 7, issue 10";
    root["environment"] = environment(o);
    const bool needs_bus = o.sections.count("latency") + o.sections.count("dbus") + o.sections.count("footprint") +
                               o.sections.count("startup") > 0;
    if (needs_bus) {
      c.bus = std::make_unique<PrivateBus>(o.paths, c.work);
      c.baseline = std::make_unique<Child>(std::vector<std::string>{o.paths.baseline, c.bus->address()}, c.work + "/baseline.log");
      Bus probe(c.bus->address());
      for (int i = 0; i < 200; ++i) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int has = 0;
        sd_bus_message* reply = nullptr;
        if (sd_bus_call_method(probe.get(), "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &e, &reply, "s", kBaseName) >= 0) {
          sd_bus_message_read(reply, "b", &has);
        }
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
        if (has != 0) break;
        sleep_s(0.025);
      }
    }
    Json results = Json::object();
    bool failed = false;
    auto section = [&](const char* name, auto&& f) {
      if (o.sections.count(name) == 0) return;
      const double t0 = now_s();
      try {
        results[name] = f();
      } catch (const std::exception& e) {
        log("%s: FAILED: %s", name, e.what());
        failed = true;
        Json j = Json::object();
        j["error"] = e.what();
        results[name] = std::move(j);
      }
      log("%s: %.1f s", name, now_s() - t0);
    };
    section("latency", [&] { return latency_section(c); });
    section("dbus", [&] { return dbus_section(c); });
    section("footprint", [&] { return footprint_section(c); });
    section("startup", [&] { return startup_section(c); });
    section("control", [&] { return control_step_bench(o.paths.share, o.ticks, o.priority, c.work + "/gbench.json"); });
    section("accuracy", [&] { return accuracy_bench(o.paths.share, o.accuracy_days, o.data_dir); });
    section("preview", [&] { return preview_bench(o.paths.share); });
    section("recorder", [&] { return recorder_bench(o.paths.share, 30.0); });
    root["results"] = std::move(results);
    root["environment"]["loadavg_at_end"] = first_line(slurp("/proc/loadavg"));
    c.baseline.reset();
    c.bus.reset();
    spit(o.out, root.dump() + "\n");
    log("wrote %s", o.out.c_str());
    (void)run_capture({"rm", "-rf", c.work}, 30);
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thecal-bench: %s\n", e.what());
    return 1;
  }
}
