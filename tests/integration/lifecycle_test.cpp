// Over the implant's life (issue 11), through the real bus, the real thecald on the
// simulated pump and thecalctl: the refill check against a drifting pump over a simulated
// month, the battery from full through ERI to EOS and its replacement, and a pump
// replacement (export from a unit mid-therapy, import into a fresh one, try to overdose
// through it; bad documents refused whole).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kSim = "org.thecal.Simulator1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_text(const std::string& p, const std::string& t) { std::ofstream(p, std::ios::binary) << t; }

/// One pump: its own private bus (each unit owns org.thecal.Pump1 on it), the real thecald
/// with the example sim board file, the battery and sim settings given, and a client.
struct Unit {
  TempDir dir;
  std::optional<PrivateBus> bus;
  std::optional<Process> proc;
  std::optional<Client> client;
  std::string log;
  std::string config;

  explicit Unit(const std::string& battery = "", const std::string& sim_extra = "") {
    bus.emplace(dir.path());
    std::istringstream in(read_text(source_dir() + "/examples/thecald-sim.yaml"));
    std::ostringstream out;
    std::string line;
    bool in_battery = false;
    while (std::getline(in, line)) {
      if (in_battery && line.rfind("  ", 0) == 0) continue;
      in_battery = false;
      if (line.rfind("  prescription:", 0) == 0) line = "  prescription: " + dir.path() + "/prescription.yaml";
      else if (line.rfind("  drugs:", 0) == 0) line = "  drugs: " + source_dir() + "/config/drugs.yaml";
      else if (line.rfind("  state:", 0) == 0) line = "  state: " + dir.path() + "/state";
      else if (line.rfind("  time_scale:", 0) == 0) line = "  time_scale: 1" + (sim_extra.empty() ? "" : "\n" + sim_extra);
      else if (!battery.empty() && line.rfind("battery:", 0) == 0) {
        line = "battery:\n" + battery;
        in_battery = true;
      }
      out << line << "\n";
    }
    fs::create_directories(dir.path() + "/state");
    const std::string cfg = dir.path() + "/thecald.yaml";
    write_text(cfg, out.str());
    fs::permissions(cfg, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
    log = dir.path() + "/thecald.log";
    config = cfg;
    start();
  }
  /// Kills the daemon (SIGKILL: no clean stop) and starts it again on the same state dir.
  void crash_and_restart() { restart(SIGKILL); }
  /// Stops the daemon with `sig` and starts it again on the same state dir.
  void restart(int sig) {
    (void)proc->stop(sig, 5'000);
    proc.reset();
    start();
  }
  void start() {
    proc.emplace(std::vector<std::string>{thecald_path(), "--config", config, "--bus", bus->address()}, log);
    if (!client) client.emplace(bus->address());
    const bool up = wait_until(
        [&] {
          try {
            (void)client->get_string(kPump, "State");
            return true;
          } catch (...) {
            return false;
          }
        },
        10'000);
    if (!up) throw std::runtime_error("thecald did not come up:\n" + read_text(log));
  }
  ~Unit() {
    if (!proc) return;
    const int status = proc->stop(SIGTERM, 5'000);
    // S15 (issue 15 item 6): the unit's whole life, crashes included, replays exactly.
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      const auto r = run({THECAL_REPLAY_PATH, dir.path() + "/state/recorder"});
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
      std::printf("[ replay   ] %s", r.out.substr(0, r.out.find('\n') + 1).c_str());
    }
  }
  RunResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus->address()});
    return run(args);
  }
  Client& c() { return *client; }
  std::string state() { return client->get_string(kPump, "State"); }
  std::string daemon_log() { return read_text(log); }
  std::uint64_t wall() { return client->get_u64(kDiag, "WallClockUsec"); }
  /// ActiveAlarms codes, comma-separated.
  std::string alarms() {
    const auto r = ctl({"alarms"});
    return r.out;
  }
  bool has_alarm(const std::string& code) { return alarms().find(code) != std::string::npos; }
  /// Waits until `d_us` of simulated wall time have passed.
  bool sim_wait(std::uint64_t d_us, int timeout_ms) {
    const std::uint64_t end = wall() + d_us;
    return wait_until([&] { return wall() >= end; }, timeout_ms);
  }
  /// Load, fill, prime (fast), start.
  void infusing(const std::string& prescription_file) {
    auto r = ctl({"load", prescription_file});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
    ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
    ASSERT_EQ(ctl({"prime", "0.22 mL"}).exit_code, 0);
    ASSERT_TRUE(wait_until([&] { return client->get_bool(kPump, "CatheterPrimed") && state() == "idle"; }))
        << daemon_log();
    r = ctl({"start"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(state(), "infusing");
  }
};

struct RefillRecord {
  std::uint64_t t = 0;
  double filled = 0, withdrawn = 0, estimate = 0, pumped = 0, accuracy = 0;
  bool discrepancy = false;
};
/// GetRefillHistory (an extra member of org.thecal.Pump1): every refill's check.
std::vector<RefillRecord> refill_history(Client& c) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(c.bus(), "org.thecal.Pump1", "/org/thecal/Pump1", kPump, "GetRefillHistory", &e, &reply,
                             "t", std::uint64_t{0});
  sd_bus_error_free(&e);
  std::vector<RefillRecord> out;
  if (r < 0) return out;
  r = sd_bus_message_enter_container(reply, 'a', "(tdddddb)");
  RefillRecord x;
  int flag = 0;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tdddddb)", &x.t, &x.filled, &x.withdrawn, &x.estimate, &x.pumped,
                                            &x.accuracy, &flag)) > 0) {
    x.discrepancy = flag != 0;
    out.push_back(x);
  }
  sd_bus_message_unref(reply);
  return out;
}

constexpr std::uint64_t kHour = 3600ULL * 1'000'000;
constexpr std::uint64_t kDay = 24 * kHour;

// ---- 1. the refill check ----------------------------------------------------------------

// 0.6 mg/day at 1 mg/mL: 18 mL in a month, within the 20 mL reservoir.
constexpr const char* kMonthPrescription = R"(version: 1
patient: BENCH-LIFE
phase: maintenance
drug:
  name: morphine
  concentration: 1 mg/mL
reservoir:
  capacity: 20 mL
  low_alarm: 1 mL
catheter:
  volume: 0.22 mL
timezone: Europe/Berlin
basal:
  mode: continuous
  rate: 0.6 mg/day
limits:
  max_daily_dose: 1 mg
)";

// Issue 14 item 10, as a new user found it: 1.2 mg/day continuous, a refill that doubles
// the concentration, the world at 20000x.  The journal's fsyncs take real time while the
// reservations are sized in simulated time; the simulated world must wait for them rather
// than drop programmed steps (it lost 14 % of its delivery to budget_exhausted before).
TEST(Lifecycle, AtTimeScale20000TheMassAtTheTipIsThePrescriptionThroughAConcentrationChange) {
  Unit u("", "");
  const std::string rx = u.dir.path() + "/rx.yaml";
  std::string text = kMonthPrescription;
  text.replace(text.find("rate: 0.6 mg/day"), 16, "rate: 1.2 mg/day");
  text.replace(text.find("max_daily_dose: 1 mg"), 20, "max_daily_dose: 2 mg");
  write_text(rx, text);
  std::string doubled = text;
  doubled.replace(doubled.find("concentration: 1 mg/mL"), 22, "concentration: 2 mg/mL");
  const std::string rx2 = u.dir.path() + "/rx2.yaml";
  write_text(rx2, doubled);
  ASSERT_NO_FATAL_FAILURE(u.infusing(rx));
  ASSERT_EQ(u.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(u.sim_wait(2 * kDay, 120'000));
  // The refill with the doubled concentration, in one call (withdraw what is left).
  ASSERT_EQ(u.ctl({"suspend"}).exit_code, 0);
  char left[64];
  std::snprintf(left, sizeof left, "%.2f uL", u.c().get_double(kPump, "ReservoirUl"));
  auto r = u.ctl({"refill", "--withdrawn", left, "20 mL", "--prescription", rx2});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  ASSERT_EQ(u.ctl({"resume"}).exit_code, 0);
  // Through the bridge and a day after it: the rolling 24 h at the tip is the prescribed
  // 1.2 mg within one step's mass (0.5 mcg at 2 mg/mL) and one 20 s cycle at each edge.
  ASSERT_TRUE(u.sim_wait(3 * kDay, 180'000));
  ASSERT_EQ(u.ctl({"time-scale", "1"}).exit_code, 0);
  const double d24 = u.c().get_double(kPump, "Delivered24hMcg");
  int exhausted = 0;
  for (const auto& e : u.c().events()) exhausted += e.type == "budget_exhausted" ? 1 : 0;
  EXPECT_EQ(exhausted, 0) << "no step budget ran out on a healthy disk";
  EXPECT_NEAR(d24, 1200.0, 0.5 + 2 * 1200.0 * 20.0 / 86'400.0);
  EXPECT_NEAR(u.c().get_double(kPump, "ConcentrationMcgPerMl"), 2000.0, 1e-9);
}

TEST(Lifecycle, RefillCheckFindsADriftingPumpAfterASimulatedMonth) {
  // Two pumps side by side: one pumps 5 % more than commanded (within the check's
  // tolerance: only the accuracy shows it), one 40 % less (beyond it: the alarm).
  Unit over("", "  pump_drift: 5 %");
  Unit under("", "  pump_drift: -40 %");
  const std::string rx = over.dir.path() + "/month.yaml";
  write_text(rx, kMonthPrescription);
  ASSERT_NO_FATAL_FAILURE(over.infusing(rx));
  ASSERT_NO_FATAL_FAILURE(under.infusing(rx));
  EXPECT_TRUE(std::isnan(over.c().get_double(kPump, "RefillAccuracyPercent")));
  for (Unit* u : {&over, &under}) ASSERT_EQ(u->ctl({"time-scale", "20000"}).exit_code, 0);
  const std::uint64_t start = under.wall();
  ASSERT_TRUE(wait_until([&] { return over.wall() >= start + 30 * kDay && under.wall() >= start + 30 * kDay; }, 400'000))
      << "a simulated month did not pass";
  struct Expect {
    Unit* u;
    double drift;
    bool alarm;
  };
  for (const Expect& x : {Expect{&over, 5.0, false}, Expect{&under, -40.0, true}}) {
    Unit& u = *x.u;
    ASSERT_EQ(u.ctl({"time-scale", "1"}).exit_code, 0);
    ASSERT_EQ(u.ctl({"suspend"}).exit_code, 0);
    const double truth = u.c().get_double(kSim, "TrueDeliveredUl");
    const double estimate = u.c().get_double(kPump, "ReservoirUl");
    const double commanded = 20000.0 - estimate;
    // The whole month, at 20000x, on whatever host (issue 14 item 10): the commanded volume is
    // the priming plus the prescription's integral from Start to Suspend (simulated times
    // from the event log), within one step and a loop cycle at each edge; the simulated world
    // waits for the journal's grants instead of dropping programmed steps.
    std::uint64_t t_start = 0, t_suspend = 0;
    int exhausted = 0;
    for (const auto& e : u.c().events()) {
      if (e.type == "started") t_start = e.time_us;
      if (e.type == "suspended") t_suspend = e.time_us;
      exhausted += e.type == "budget_exhausted" ? 1 : 0;
    }
    ASSERT_GT(t_suspend, t_start);
    const double days = static_cast<double>(t_suspend - t_start) / 86'400e6;
    EXPECT_GE(days, 30.0);
    EXPECT_EQ(exhausted, 0) << "no step budget ran out on a healthy disk";
    EXPECT_NEAR(commanded, 220.0 + 600.0 * days, 0.25 + 2 * 600.0 * 20.0 / 86'400.0) << "days " << days;
    EXPECT_NEAR(truth, commanded * (1.0 + x.drift / 100.0), 2.0);
    // The clinician withdraws what is really left and measures it.
    char withdrawn[64];
    std::snprintf(withdrawn, sizeof withdrawn, "%.1f uL", 20000.0 - truth);
    const auto r = u.ctl({"refill", "--withdrawn", withdrawn, "20 mL"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const double accuracy = u.c().get_double(kPump, "RefillAccuracyPercent");
    EXPECT_NEAR(accuracy, 100.0 + x.drift, 0.1);
    EXPECT_EQ(u.has_alarm("refill_discrepancy"), x.alarm) << u.alarms();
    if (x.alarm) {
      // The alarm itself carries both figures (ActiveAlarms, as thecalctl alarms shows it).
      const std::string shown = u.alarms();
      char est[32];
      char measured[32];
      std::snprintf(est, sizeof est, "estimate %.1f uL", estimate);
      std::snprintf(measured, sizeof measured, "measured %.1f uL", 20000.0 - truth);
      EXPECT_NE(shown.find(est), std::string::npos) << shown;
      EXPECT_NE(shown.find(measured), std::string::npos) << shown;
    }
    // The event log has the refill with both figures, the tolerance and the accuracy.
    bool found = false;
    for (const auto& e : u.c().events()) {
      if (e.type != "refill" || e.detail.find("estimate") == std::string::npos) continue;
      found = true;
      char est[32];
      std::snprintf(est, sizeof est, "%.1f uL", estimate);
      EXPECT_NE(e.detail.find(est), std::string::npos) << e.detail;
      EXPECT_NE(e.detail.find(withdrawn), std::string::npos) << e.detail;
      EXPECT_NE(e.detail.find("accuracy"), std::string::npos) << e.detail;
      EXPECT_EQ(e.detail.find("DISCREPANCY") != std::string::npos, x.alarm) << e.detail;
      EXPECT_EQ(e.who, "uid=0");
    }
    EXPECT_TRUE(found);
    // And the refill history: the first fill (nothing to check) and this one.
    const auto hist = refill_history(u.c());
    ASSERT_EQ(hist.size(), 2u);
    EXPECT_TRUE(std::isnan(hist[0].accuracy));
    EXPECT_NEAR(hist[1].withdrawn, 20000.0 - truth, 0.1);
    EXPECT_NEAR(hist[1].estimate, estimate, 1e-6);
    EXPECT_NEAR(hist[1].pumped, commanded, 1e-6);
    EXPECT_NEAR(hist[1].accuracy, accuracy, 1e-9);
    EXPECT_EQ(hist[1].discrepancy, x.alarm);
    // And `thecalctl status` shows the accuracy.
    const auto st = u.ctl({"status"});
    EXPECT_NE(st.out.find("Refill accuracy"), std::string::npos) << st.out;
  }
}

// ---- 2. battery replacement -----------------------------------------------------------

TEST(Lifecycle, BatteryFromFullThroughEriToEosThenReplacedAndTherapyResumes) {
  // 20 mAh at 1 mAh/h: ERI (15 %) after about 17 h, EOS (5 %) after about 19 h.
  Unit u("  capacity: 20 mAh\n  use_per_step: 0.05 mAs\n  use_per_hour: 1 mAh\n  eri: 15 %\n  eos: 5 %\n");
  EXPECT_GT(u.c().get_double(kPump, "BatteryPercent"), 99.9);
  ASSERT_NO_FATAL_FAILURE(u.infusing(source_dir() + "/examples/prescription-flex.yaml"));
  // While delivering: refused with a name, nothing changes.
  const double before = u.c().get_double(kPump, "BatteryPercent");
  ASSERT_LT(before, 100.0);
  auto r = u.ctl({"battery-replaced"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("org.thecal.Pump1.Error.InvalidState"), std::string::npos) << r.err;
  EXPECT_EQ(u.state(), "infusing");
  EXPECT_LE(u.c().get_double(kPump, "BatteryPercent"), before);
  // Drain it: ERI, then EOS with the motor stopped.
  ASSERT_EQ(u.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return u.has_alarm("battery_eri"); }, 30'000)) << u.alarms();
  ASSERT_TRUE(wait_until([&] { return u.state() == "end_of_service"; }, 30'000)) << u.state();
  EXPECT_TRUE(u.has_alarm("battery_eos"));
  EXPECT_LE(u.c().get_double(kPump, "BatteryPercent"), 5.0);
  const double pumped = u.c().get_double(kSim, "TrueDeliveredUl");
  ASSERT_TRUE(u.sim_wait(6 * kHour, 10'000));
  EXPECT_DOUBLE_EQ(u.c().get_double(kSim, "TrueDeliveredUl"), pumped) << "the motor must stop at EOS";
  EXPECT_EQ(u.c().call(kPump, "Resume", ""), "org.thecal.Pump1.Error.InvalidState");
  // Replace it: full, ERI/EOS cleared, suspended, logged with the uid.
  ASSERT_EQ(u.ctl({"time-scale", "1"}).exit_code, 0);
  r = u.ctl({"battery-replaced"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(u.state(), "suspended");
  EXPECT_GT(u.c().get_double(kPump, "BatteryPercent"), 99.9);
  EXPECT_FALSE(u.has_alarm("battery_eri")) << u.alarms();
  EXPECT_FALSE(u.has_alarm("battery_eos")) << u.alarms();
  bool logged = false;
  for (const auto& e : u.c().events()) logged = logged || (e.type == "battery_replaced" && e.who == "uid=0");
  EXPECT_TRUE(logged);
  // Therapy resumes and the motor turns again.
  r = u.ctl({"resume"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(u.state(), "infusing");
  ASSERT_EQ(u.ctl({"time-scale", "3600"}).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return u.c().get_double(kSim, "TrueDeliveredUl") > pumped + 1.0; }, 20'000));
}

// ---- start-up, as the first client sees it ----------------------------------------------

namespace {
std::string start_log(Unit& u) {
  std::string out;
  for (const auto& e : u.c().events()) out += e.type + " " + e.who + " " + e.detail + "\n";
  return out;
}
}  // namespace

TEST(Lifecycle, TheFirstClientSeesTheWholeStartNotAHalfStartedPump) {
  // The harness reads State the moment the bus name appears: by then the start's events,
  // the restart alarm and the restored state must all be there (a client that snapshots
  // the pump right away must not see it change by itself a moment later).
  Unit u;
  std::string log = start_log(u);
  EXPECT_NE(log.find("journal_created pump"), std::string::npos) << log;
  EXPECT_NE(log.find("daemon_started pump"), std::string::npos) << log;
  EXPECT_NE(log.find("alarm_raised pump restart"), std::string::npos) << log;
  EXPECT_TRUE(u.has_alarm("restart")) << u.alarms();
  ASSERT_NO_FATAL_FAILURE(u.infusing(source_dir() + "/examples/prescription-flex.yaml"));
  const std::string id = u.c().get_string(kPump, "PrescriptionId");
  ASSERT_FALSE(id.empty());
  for (int i = 0; i < 3; ++i) {
    u.crash_and_restart();
    EXPECT_EQ(u.c().get_string(kPump, "PrescriptionId"), id) << "restart " << i;
    EXPECT_EQ(u.state(), "infusing") << "restart " << i;
    EXPECT_TRUE(u.has_alarm("restart")) << "restart " << i << ": " << u.alarms();
    log = start_log(u);
    std::size_t starts = 0;
    for (std::size_t p = log.find("daemon_started"); p != std::string::npos; p = log.find("daemon_started", p + 1)) ++starts;
    EXPECT_EQ(starts, static_cast<std::size_t>(i + 2)) << log;
  }
}

TEST(Lifecycle, ACrashRightAfterPrimingOverCountsAtMostAFewSteps) {
  // S7: after a crash the unconfirmed remainder of the last reservation counts as pumped.
  // The reservations made while priming are sized for the prime rate (1 mL/h: 10 min is
  // 667 steps); once priming is done, what is left of them must not stay outstanding, or a
  // crash right after priming would count ~100 uL (1 mg of morphine at 10 mg/mL) as given.
  Unit u;
  ASSERT_EQ(u.ctl({"load", source_dir() + "/examples/prescription-flex.yaml"}).exit_code, 0);
  ASSERT_EQ(u.ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
  ASSERT_EQ(u.ctl({"time-scale", "3600"}).exit_code, 0);
  ASSERT_EQ(u.ctl({"prime", "0.22 mL"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return u.c().get_bool(kPump, "CatheterPrimed") && u.state() == "idle"; }));
  ASSERT_EQ(u.ctl({"time-scale", "1"}).exit_code, 0);
  const double before = u.c().get_double(kPump, "ReservoirUl");
  EXPECT_NEAR(before, 20000.0 - 220.0, 0.3);
  u.crash_and_restart();
  const double after = u.c().get_double(kPump, "ReservoirUl");
  EXPECT_LE(after, before) << "S7: never under-count";
  EXPECT_GE(after, before - 8 * 0.25) << "more than 8 steps counted as pumped after a crash right after priming" << u.daemon_log();
}

// ---- 3. pump replacement ----------------------------------------------------------------

struct Snapshot {
  std::string state, id;
  double delivered = 0, reservoir = 0;
  std::uint32_t boluses = 0;
  std::size_t events = 0;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snap(Unit& u) {
  Snapshot s;
  s.state = u.state();
  s.id = u.c().get_string(kPump, "PrescriptionId");
  s.delivered = u.c().get_double(kPump, "Delivered24hMcg");
  s.reservoir = u.c().get_double(kPump, "ReservoirUl");
  s.boluses = u.c().get_u32(kPump, "PatientBolusesToday");
  for (const auto& e : u.c().events()) s.events += e.type == "command_refused" ? 0 : 1;  // refusals are recorded
  return s;
}
std::ostream& operator<<(std::ostream& o, const Snapshot& s) {
  return o << s.state << " id=" << s.id << " 24h=" << s.delivered << " res=" << s.reservoir << " pb=" << s.boluses
           << " ev=" << s.events;
}

std::string sha256_of(const std::string& text, const std::string& dir) {
  const std::string p = dir + "/sha-input";
  write_text(p, text);
  const auto r = run({"/usr/bin/sha256sum", p});
  return r.out.substr(0, 64);
}
/// The document with its last line's checksum recomputed (for edits that must get past it).
std::string reseal(const std::string& doc, const std::string& dir) {
  std::string body = doc.substr(0, doc.rfind("document-sha256: "));
  return body + "document-sha256: " + sha256_of(body, dir) + "\n";
}

TEST(Lifecycle, PumpReplacementKeepsEveryLimitAndBadDocumentsAreRefusedWhole) {
  Unit a;
  ASSERT_NO_FATAL_FAILURE(a.infusing(source_dir() + "/examples/prescription-flex.yaml"));
  // Four patient boluses, 3 h apart (the lockout), then a clinician bolus close to the limit.
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      ASSERT_TRUE(wait_until([&] { return a.ctl({"bolus"}).exit_code == 0; }, 20'000)) << "bolus " << i;
    } else {
      ASSERT_EQ(a.ctl({"bolus"}).exit_code, 0);
    }
  }
  ASSERT_EQ(a.ctl({"time-scale", "60"}).exit_code, 0);
  EXPECT_EQ(a.c().get_u32(kPump, "PatientBolusesToday"), 4u);
  ASSERT_TRUE(wait_until([&] { return !a.c().get_bool(kPump, "BolusActive"); }, 30'000));
  const double room = 3000.0 - a.c().get_double(kPump, "Delivered24hMcg");
  char dose[32];
  std::snprintf(dose, sizeof dose, "%.0f mcg", room - 120.0);
  auto r = a.ctl({"clinician-bolus", dose, "--over", "10 min"});
  ASSERT_EQ(r.exit_code, 0) << r.err << " dose " << dose;
  ASSERT_EQ(a.ctl({"time-scale", "600"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return !a.c().get_bool(kPump, "BolusActive"); }, 30'000));
  ASSERT_EQ(a.ctl({"time-scale", "1"}).exit_code, 0);
  // What the first unit refuses now.
  EXPECT_EQ(a.c().call(kPump, "RequestBolus", ""), "org.thecal.Pump1.Error.LockoutActive");
  EXPECT_EQ(a.c().call(kPump, "ClinicianBolus", "dt", 200.0, std::uint64_t{600'000'000}),
            "org.thecal.Pump1.Error.DailyLimitReached");
  // Export mid-therapy: not while it can still deliver (what it pumped afterwards would
  // be missing from the new unit's ledger), so suspended until Resume.
  const std::string file = a.dir.path() + "/therapy.export";
  r = a.ctl({"export", file});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("org.thecal.Pump1.Error.InvalidState"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(file));
  ASSERT_EQ(a.ctl({"suspend"}).exit_code, 0);
  const double a_delivered = a.c().get_double(kPump, "Delivered24hMcg");
  r = a.ctl({"export", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string doc = read_text(file);
  ASSERT_EQ(doc.rfind("THECAL THERAPY EXPORT\n", 0), 0u) << doc.substr(0, 200);
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::others_read, fs::perms::none);
  EXPECT_EQ(a.state(), "suspended");
  bool exported_logged = false;
  for (const auto& e : a.c().events()) exported_logged = exported_logged || (e.type == "therapy_exported" && e.who == "uid=0");
  EXPECT_TRUE(exported_logged);

  // The new unit.
  Unit b;
  // Bad documents first: each refused whole with its name, nothing changes.
  const Snapshot fresh = snap(b);
  auto import_text = [&](const std::string& text) {
    const std::string p = b.dir.path() + "/bad.export";
    write_text(p, text);
    return b.ctl({"import", p});
  };
  struct Bad {
    const char* what;
    std::string text;
    const char* error;
  };
  std::string flipped = doc;
  flipped[doc.size() / 2] = flipped[doc.size() / 2] == 'A' ? 'B' : 'A';
  std::string future = doc;
  future.replace(future.find("format: 1\n"), 10, "format: 2\n");
  std::string mismatched = doc;
  const auto idpos = mismatched.find("prescription-id: ") + 17;
  mismatched[idpos] = mismatched[idpos] == '0' ? '1' : '0';
  const std::vector<Bad> bads = {
      {"corrupt", flipped, "org.thecal.Pump1.Error.InvalidDocument"},
      {"truncated", doc.substr(0, doc.size() / 2), "org.thecal.Pump1.Error.InvalidDocument"},
      {"empty", "", "org.thecal.Pump1.Error.InvalidDocument"},
      {"future version", reseal(future, b.dir.path()), "org.thecal.Pump1.Error.InvalidDocument"},
      {"mismatched", reseal(mismatched, b.dir.path()), "org.thecal.Pump1.Error.InvalidDocument"},
  };
  for (const auto& bad : bads) {
    r = import_text(bad.text);
    EXPECT_EQ(r.exit_code, 5) << bad.what << ": " << r.err;
    EXPECT_NE(r.err.find(bad.error), std::string::npos) << bad.what << ": " << r.err;
    EXPECT_EQ(snap(b), fresh) << bad.what;
  }

  std::size_t refusals = 0;
  for (const auto& e : b.c().events()) refusals += e.type == "command_refused" && e.who == "uid=0" ? 1 : 0;
  EXPECT_EQ(refusals, bads.size());
  EXPECT_NE(import_text(bads[3].text).err.find("newer"), std::string::npos);
  // A unit that is not fresh: the old one itself (infusing, with history).
  const Snapshot a_before = snap(a);
  r = a.ctl({"import", file});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("org.thecal.Pump1.Error.InvalidState"), std::string::npos) << r.err;
  Snapshot a_after = snap(a);
  a_after.delivered = a_before.delivered;  // minute buckets may leave the window meanwhile
  EXPECT_EQ(a_after, a_before);

  // The real import.
  r = b.ctl({"import", file});
  ASSERT_EQ(r.exit_code, 0) << r.err << b.daemon_log();
  EXPECT_EQ(b.state(), "idle");
  EXPECT_EQ(b.c().get_string(kPump, "PrescriptionId"), a.c().get_string(kPump, "PrescriptionId"));
  EXPECT_EQ(b.c().get_u32(kPump, "PatientBolusesToday"), 4u);
  EXPECT_GE(b.c().get_double(kPump, "Delivered24hMcg"), a_delivered - 1e-6);
  EXPECT_DOUBLE_EQ(b.c().get_double(kPump, "ReservoirUl"), 0.0);
  EXPECT_TRUE(b.c().get_bool(kPump, "CatheterPrimed"));
  bool imported_logged = false, old_events = false;
  for (const auto& e : b.c().events()) {
    imported_logged = imported_logged || (e.type == "therapy_imported" && e.who == "uid=0" &&
                                          e.detail.find("suspended there") != std::string::npos);
    old_events = old_events || (e.type == "therapy_exported" && e.detail.rfind("[replaced unit]", 0) == 0);
  }
  EXPECT_TRUE(imported_logged);
  EXPECT_TRUE(old_events);
  // Durable: killed right after the import, the unit comes back with it.
  b.crash_and_restart();
  EXPECT_EQ(b.state(), "idle");
  EXPECT_EQ(b.c().get_string(kPump, "PrescriptionId"), a.c().get_string(kPump, "PrescriptionId"));
  EXPECT_EQ(b.c().get_u32(kPump, "PatientBolusesToday"), 4u);
  EXPECT_GE(b.c().get_double(kPump, "Delivered24hMcg"), a_delivered - 1e-6);
  imported_logged = false;
  for (const auto& e : b.c().events()) imported_logged = imported_logged || e.type == "therapy_imported";
  EXPECT_TRUE(imported_logged);
  // A second import is refused: the unit now holds a therapy.
  const Snapshot imported = snap(b);
  r = b.ctl({"import", file});
  EXPECT_NE(r.err.find("org.thecal.Pump1.Error.InvalidState"), std::string::npos) << r.err;
  EXPECT_EQ(snap(b), imported);

  // Refill (withdrawn 0 on a new unit), start, and try to overdose through it.
  ASSERT_EQ(b.ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
  r = b.ctl({"start"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(b.c().call(kPump, "RequestBolus", ""), "org.thecal.Pump1.Error.LockoutActive");
  EXPECT_EQ(b.c().call(kPump, "ClinicianBolus", "dt", 200.0, std::uint64_t{600'000'000}),
            "org.thecal.Pump1.Error.DailyLimitReached");
  // Past the lockout the count still holds.
  ASSERT_EQ(b.ctl({"time-scale", "3600"}).exit_code, 0);
  ASSERT_TRUE(b.sim_wait(3 * kHour + 5 * 60'000'000ULL, 20'000));
  EXPECT_EQ(b.c().call(kPump, "RequestBolus", ""), "org.thecal.Pump1.Error.BolusLimitReached");
  // Basal is held back at the daily limit, the first unit's deliveries counted.
  ASSERT_TRUE(wait_until([&] { return b.has_alarm("daily_limit"); }, 30'000)) << b.alarms();
  const double b_own_mcg = b.c().get_double(kSim, "TrueDeliveredUl") * 10.0;  // 10 mg/mL
  EXPECT_LT(b_own_mcg, 300.0);
  EXPECT_LE(b.c().get_double(kPump, "Delivered24hMcg"), 3000.0 + 1e-6);
  ASSERT_EQ(b.ctl({"time-scale", "1"}).exit_code, 0);
}

// Issue 16: export and import carry the admixture, and thecalctl shows it on both sides:
// bupivacaine's own limit and its rolling 24 h mass arrive on the new unit.
TEST(Lifecycle, ExportAndImportCarryTheAdmixture) {
  Unit a;
  ASSERT_NO_FATAL_FAILURE(a.infusing(source_dir() + "/examples/prescription-admixture.yaml"));
  ASSERT_EQ(a.ctl({"bolus"}).exit_code, 0);
  ASSERT_TRUE(a.sim_wait(3 * kHour, 20'000));
  ASSERT_EQ(a.ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(a.ctl({"suspend"}).exit_code, 0);
  const auto before = a.c().drugs();
  ASSERT_EQ(before.size(), 2u);
  ASSERT_GT(before[1].delivered, 50.0);  // the bolus (75 mcg of bupivacaine) and 3 h of basal
  const std::string file = a.dir.path() + "/therapy.export";
  auto r = a.ctl({"export", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Admixture: bupivacaine, 7.5 mg/mL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("of 4 mg limit"), std::string::npos) << r.out;
  Unit b;
  r = b.ctl({"import", file});
  ASSERT_EQ(r.exit_code, 0) << r.err << b.daemon_log();
  EXPECT_NE(r.out.find("Admixture: bupivacaine"), std::string::npos) << r.out;
  const auto after = b.c().drugs();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].name, "morphine");
  EXPECT_EQ(after[1].name, "bupivacaine");
  EXPECT_EQ(after[1].limit, 4000.0);
  EXPECT_GE(after[1].delivered, before[1].delivered - 1e-6);
  EXPECT_LE(after[1].delivered, before[1].delivered + 1e-6);
}

// Issue 16 remainder: Drugs right after an import, a restart and a first Load, before any
// Refill: every drug at the prescription's concentration (examples/prescription-admixture:
// morphine 10 mg/mL, bupivacaine 7.5 mg/mL), read at once, not after some delay.
TEST(Lifecycle, DrugsShowsThePrescriptionsConcentrationsAtOnceAfterImportRestartAndLoad) {
  constexpr double kMorphine = 10'000.0, kBupi = 7'500.0;  // mcg/mL, as the example writes them
  auto expect_solution = [](Unit& u, const std::string& when) {
    const auto d = u.c().drugs();
    ASSERT_EQ(d.size(), 2u) << when;
    EXPECT_EQ(d[0].name, "morphine") << when;
    EXPECT_DOUBLE_EQ(d[0].conc, kMorphine) << when;
    EXPECT_DOUBLE_EQ(u.c().get_double(kPump, "ConcentrationMcgPerMl"), kMorphine) << when;
    EXPECT_EQ(d[1].name, "bupivacaine") << when;
    EXPECT_DOUBLE_EQ(d[1].conc, kBupi) << when;
    EXPECT_DOUBLE_EQ(d[1].limit, 4000.0) << when;
  };
  const std::string example = source_dir() + "/examples/prescription-admixture.yaml";
  Unit a;
  ASSERT_NO_FATAL_FAILURE(a.infusing(example));
  ASSERT_TRUE(a.sim_wait(kHour, 20'000));
  ASSERT_EQ(a.ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(a.ctl({"suspend"}).exit_code, 0);
  const std::string file = a.dir.path() + "/therapy.export";
  ASSERT_EQ(a.ctl({"export", file}).exit_code, 0);

  Unit b;
  auto r = b.ctl({"import", file});
  ASSERT_EQ(r.exit_code, 0) << r.err << b.daemon_log();
  ASSERT_DOUBLE_EQ(b.c().get_double(kPump, "ReservoirUl"), 0.0);
  ASSERT_NO_FATAL_FAILURE(expect_solution(b, "right after the import"));
  // thecalctl status shows it too.
  r = b.ctl({"status"});
  EXPECT_NE(r.out.find("bupivacaine, 7.5 mg/mL"), std::string::npos) << r.out;
  for (const int sig : {SIGKILL, SIGTERM}) {
    b.restart(sig);
    ASSERT_NO_FATAL_FAILURE(expect_solution(b, "right after a restart by signal " + std::to_string(sig)));
  }
  // The first Refill fills it with that solution: nothing moves.
  ASSERT_EQ(b.ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(expect_solution(b, "after the first refill"));
  b.restart(SIGKILL);
  ASSERT_NO_FATAL_FAILURE(expect_solution(b, "filled, right after a restart"));

  // A fresh unit: a first Load, before any Refill, shows the same; and after a restart.
  Unit c;
  ASSERT_EQ(c.ctl({"load", example}).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(expect_solution(c, "after a first load"));
  c.restart(SIGKILL);
  ASSERT_NO_FATAL_FAILURE(expect_solution(c, "loaded, right after a restart"));
}

}  // namespace
}  // namespace thecal::test
