// The flight recorder through the real daemon (SPEC S15, issue 15 items 2, 3, 5, 6): the flex
// example with boluses, a fault and a SIGKILL in the middle, the recording pulled with
// thecalctl and replayed by thecal-replay (it must match); GetRecording's argument errors;
// the event log and the delivery history across a restart.
#include <signal.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/journal_keeper.hpp"
#include "io/atomic_file.hpp"
#include "io/journal.hpp"
#include "io/recording.hpp"
#include "io/sim_plant.hpp"
#include "replay/replay.hpp"
#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";
constexpr std::uint64_t kHour = 3600ULL * 1'000'000;
constexpr std::uint64_t kDay = 24 * kHour;

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// One pump on its own private bus, with a state directory that survives restarts.
struct Pump {
  TempDir dir;
  std::optional<PrivateBus> bus;
  std::optional<Process> proc;
  std::optional<Client> client;
  std::string config;
  std::string log;

  Pump() {
    bus.emplace(dir.path());
    std::istringstream in(read_text(source_dir() + "/examples/thecald-sim.yaml"));
    std::ostringstream out;
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("  prescription:", 0) == 0) line = "  prescription: " + dir.path() + "/prescription.yaml";
      else if (line.rfind("  drugs:", 0) == 0) line = "  drugs: " + source_dir() + "/config/drugs.yaml";
      else if (line.rfind("  state:", 0) == 0) line = "  state: " + dir.path() + "/state";
      else if (line.rfind("  time_scale:", 0) == 0) line = "  time_scale: 1";
      out << line << "\n";
    }
    fs::create_directories(dir.path() + "/state");
    config = dir.path() + "/thecald.yaml";
    std::ofstream(config) << out.str();
    fs::permissions(config, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
    log = dir.path() + "/thecald.log";
    start();
  }
  ~Pump() {
    if (proc) (void)proc->stop(SIGTERM, 5'000);
  }
  void start() {
    proc.emplace(std::vector<std::string>{thecald_path(), "--config", config, "--bus", bus->address()}, log);
    if (!client) client.emplace(bus->address());
    const bool up = wait_until([&] {
      try {
        (void)client->get_string(kPump, "State");
        return true;
      } catch (...) {
        return false;
      }
    });
    if (!up) throw std::runtime_error("thecald did not come up:\n" + read_text(log));
  }
  void restart(int sig) {
    (void)proc->stop(sig, 5'000);
    proc.reset();
    start();
  }
  RunResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus->address()});
    return run(args);
  }
  std::string state() { return client->get_string(kPump, "State"); }
  std::uint64_t wall() { return client->get_u64(kDiag, "WallClockUsec"); }
  bool sim_wait(std::uint64_t d_us, int timeout_ms = 20'000) {
    const std::uint64_t end = wall() + d_us;
    return wait_until([&] { return wall() >= end; }, timeout_ms);
  }
  void infusing(const std::string& example = "prescription-flex.yaml") {
    auto r = ctl({"load", source_dir() + "/examples/" + example});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
    ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
    ASSERT_EQ(ctl({"prime", "0.22 mL"}).exit_code, 0);
    ASSERT_TRUE(wait_until([&] { return client->get_bool(kPump, "CatheterPrimed") && state() == "idle"; }))
        << read_text(log);
    r = ctl({"start"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  /// Pulls the last `span` of recording into FILE and replays it; returns thecal-replay's result.
  RunResult record_and_replay(const std::string& span, const std::string& name) {
    return record_and_replay("now-" + span, "now", name);
  }
  /// The same for the window FROM..TO (thecalctl's time forms).
  RunResult record_and_replay(const std::string& from, const std::string& to, const std::string& name) {
    const std::string file = dir.path() + "/" + name;
    auto r = ctl({"recording", from, to, file});
    if (r.exit_code != 0) return r;
    return run({THECAL_REPLAY_PATH, file, "--plot", file + ".svg"});
  }
};

TEST(Recorder, TheFlexExampleWithBolusesAFaultAndASigkillReplaysExactly) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  const std::uint64_t first_wall = p.wall();
  ASSERT_TRUE(p.sim_wait(3 * kHour));
  auto r = p.ctl({"clinician-bolus", "0.05 mg", "--over", "10 min"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = p.ctl({"bolus"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(p.sim_wait(kHour));
  ASSERT_EQ(p.ctl({"fault", "occlusion", "on"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return p.state() == "stopped"; }));
  ASSERT_EQ(p.ctl({"fault", "occlusion", "off"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"ack", "occlusion"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"resume"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(2 * kHour));
  // A crash in the middle: the recording goes on in a second run after the restart.
  const std::uint64_t kill_wall = p.wall();
  p.restart(SIGKILL);
  ASSERT_TRUE(wait_until([&] { return p.state() == "infusing"; })) << read_text(p.log);
  ASSERT_EQ(p.ctl({"time-scale", "7200"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(6 * kHour));
  r = p.ctl({"bolus"});  // refused (lockout) or granted: either way an input
  // The simulator's wall clock starts again from the real one at the restart, so the killed
  // run's records lie hours ahead of the second run's start: the window is asked by both
  // runs' own clocks, or "now-2d now" may cut the killed run short (docs/recorder.md).
  const std::uint64_t to = std::max(kill_wall, p.wall()) + kHour;
  const RunResult rep = p.record_and_replay(std::to_string(first_wall - kHour), std::to_string(to), "month.rec");
  EXPECT_EQ(rep.exit_code, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("MATCH"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("2 run(s)"), std::string::npos) << rep.out;
  EXPECT_TRUE(fs::file_size(p.dir.path() + "/month.rec.svg") > 1000);
}

/// µs since the epoch of thecal-replay --list's ISO time ("2026-11-30T12:00:00.000000Z").
std::uint64_t iso_us(const std::string& s) {
  std::tm tm{};
  int us = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec, &us) != 7) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::uint64_t>(timegm(&tm)) * 1'000'000 + static_cast<std::uint64_t>(us);
}

// Issue 15 items 1 and 2 over one long run: a segment a day of pump time, each from an
// exact snapshot; a window in the middle starts at the last snapshot at or before `from`
// (at most one segment early, not at the run's start) and replays to MATCH.
TEST(Recorder, ALongRunRotatesDailyAndAWindowInTheMiddleStartsAtItsSnapshot) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  const std::uint64_t t0 = p.wall();
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(kDay + 12 * kHour, 60'000));
  ASSERT_EQ(p.ctl({"bolus"}).exit_code, 0);  // an input in the middle of the window
  ASSERT_TRUE(p.sim_wait(2 * kDay, 60'000));
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  std::size_t segments = 0;
  for (const auto& e : fs::directory_iterator(p.dir.path() + "/state/recorder")) segments += e.path().extension() == ".rec";
  EXPECT_GE(segments, 4U) << "one run of 3.5 days: its start and a snapshot a day";

  const std::uint64_t from = t0 + kDay + 6 * kHour;
  const std::uint64_t to = from + kDay;
  const std::string file = p.dir.path() + "/middle.rec";
  auto r = p.ctl({"recording", std::to_string(from), std::to_string(to), file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const RunResult rep = run({THECAL_REPLAY_PATH, file});
  EXPECT_EQ(rep.exit_code, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("MATCH"), std::string::npos) << rep.out;
  const RunResult list = run({THECAL_REPLAY_PATH, file, "--list"});
  ASSERT_EQ(list.exit_code, 0) << list.out << list.err;
  const std::string first = list.out.substr(0, list.out.find('\n'));
  EXPECT_NE(first.find("snapshot at cycle"), std::string::npos) << first;
  const std::uint64_t begins = iso_us(first);
  EXPECT_LE(begins, from) << first;
  EXPECT_GE(begins, from - kDay) << first;
  // The whole run is 3.5 days; the window's file holds at most its day and one segment.
  const std::uint64_t whole = fs::file_size(file);
  std::uint64_t all = 0;
  for (const auto& e : fs::directory_iterator(p.dir.path() + "/state/recorder")) all += fs::file_size(e.path());
  EXPECT_LT(whole, all) << "the window is not the whole run";
}

TEST(Recorder, GetRecordingRefusesBadWindowsAndANewPumpGivesItsStart) {
  Pump p;
  const std::uint64_t now = p.wall();
  EXPECT_EQ(p.client->call(kPump, "GetRecording", "tt", now, now - 1), "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_EQ(p.client->call(kPump, "GetRecording", "tt", now - 32 * kDay, now), "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_EQ(p.client->call(kPump, "GetRecording", "tt", now - 31 * kDay, now), "");
  auto r = p.ctl({"recording", "now", "now-1h", p.dir.path() + "/x.rec"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("OutOfRange"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(p.dir.path() + "/x.rec"));
  r = p.ctl({"recording", "yesterday", "now", p.dir.path() + "/x.rec"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const RunResult rep = p.record_and_replay("1h", "new.rec");
  EXPECT_EQ(rep.exit_code, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("1 run(s)"), std::string::npos) << rep.out;

  // thecal-replay's exit codes on damaged files (docs/recorder.md).
  const std::string good = read_text(p.dir.path() + "/new.rec");
  ASSERT_GT(good.size(), 200U);
  auto replay_of = [&](const std::string& bytes) {
    const std::string f = p.dir.path() + "/damaged.rec";
    std::ofstream(f, std::ios::binary) << bytes;
    return run({THECAL_REPLAY_PATH, f});
  };
  auto r5 = replay_of(good.substr(0, good.size() - 3));  // torn: the end record cut
  EXPECT_EQ(r5.exit_code, 5) << r5.out << r5.err;
  EXPECT_NE(r5.out.find("INCOMPLETE"), std::string::npos) << r5.out;
  std::string flipped = good;
  const std::size_t late = good.size() - 40;  // inside the last record before the end record
  flipped[late] = static_cast<char>(flipped[late] ^ 0x40);
  r5 = replay_of(flipped);
  EXPECT_EQ(r5.exit_code, 5) << r5.out << r5.err;
  EXPECT_NE(r5.out.find("bad checksum"), std::string::npos) << r5.out;
  flipped = good;
  flipped[40] = static_cast<char>(flipped[40] ^ 0x40);  // inside the start record: no run
  auto r4 = replay_of(flipped);
  EXPECT_EQ(r4.exit_code, 4) << r4.out << r4.err;
  EXPECT_NE(r4.err.find("bad checksum in record 0"), std::string::npos) << r4.err;
  r4 = replay_of("not a recording at all");
  EXPECT_EQ(r4.exit_code, 4) << r4.out << r4.err;
  const auto r3 = run({THECAL_REPLAY_PATH, p.dir.path() + "/missing.rec"});
  EXPECT_EQ(r3.exit_code, 3) << r3.out << r3.err;
  EXPECT_EQ(run({THECAL_REPLAY_PATH}).exit_code, 3);
}

/// The mass in [from, to) in one bucket: GetDeliveryHistory, or GetDrugDeliveryHistory of
/// `drug`; -1 on an error.
double history_mcg(Pump& p, const char* drug, std::uint64_t from, std::uint64_t to) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int rc = drug == nullptr
               ? sd_bus_call_method(p.client->bus(), "org.thecal.Pump1", "/org/thecal/Pump1", kPump,
                                    "GetDeliveryHistory", &e, &reply, "ttt", from, to, to - from)
               : sd_bus_call_method(p.client->bus(), "org.thecal.Pump1", "/org/thecal/Pump1", kPump,
                                    "GetDrugDeliveryHistory", &e, &reply, "sttt", drug, from, to, to - from);
  sd_bus_error_free(&e);
  double mcg = -1;
  if (rc < 0) return mcg;
  rc = sd_bus_message_enter_container(reply, 'a', "(tdd)");
  std::uint64_t s = 0;
  double m = 0, v = 0;
  mcg = 0;
  while (rc >= 0 && (rc = sd_bus_message_read(reply, "(tdd)", &s, &m, &v)) > 0) mcg += m;
  sd_bus_message_unref(reply);
  return mcg;
}

TEST(Recorder, EventsAndDeliveryHistorySurviveACrashAndACleanRestart) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  ASSERT_TRUE(p.sim_wait(2 * kHour));
  ASSERT_EQ(p.ctl({"clinician-bolus", "0.05 mg", "--over", "10 min"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(kHour));
  const std::uint64_t t = p.wall();
  auto total = [&](std::uint64_t from, std::uint64_t to) { return history_mcg(p, nullptr, from, to); };
  const double before = total(t - 4 * kHour, t);
  ASSERT_GT(before, 50.0);  // the bolus's 50 mcg and the basal
  auto has = [&](const std::string& type, const std::string& detail_part) {
    for (const auto& e : p.client->events()) {
      if (e.type == type && e.detail.find(detail_part) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(has("bolus_started", "clinician"));
  for (const int sig : {SIGKILL, SIGTERM}) {
    p.restart(sig);
    EXPECT_TRUE(has("bolus_started", "clinician")) << "after signal " << sig;
    EXPECT_TRUE(has("prescription_loaded", "")) << "after signal " << sig;
    const double after = total(t - 4 * kHour, t);
    // What was delivered before the restart is all there (a crash may add the minute in
    // flight at most).
    EXPECT_GE(after, before - 1e-6) << "after signal " << sig;
    EXPECT_LE(after, before + 1.0) << "after signal " << sig;
  }
}

// Issue 16: each drug's own history (GetDrugDeliveryHistory) is kept on disk like the
// primary's: after a SIGKILL and after a clean stop, what was delivered before is all there.
TEST(Recorder, EachDrugsDeliveryHistorySurvivesACrashAndACleanRestart) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing("prescription-admixture.yaml"));
  ASSERT_TRUE(p.sim_wait(2 * kHour));
  ASSERT_EQ(p.ctl({"clinician-bolus", "0.05 mg", "--over", "10 min"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(kHour));
  const std::uint64_t t = p.wall();
  auto total = [&](const char* drug, std::uint64_t from, std::uint64_t to) { return history_mcg(p, drug, from, to); };
  const double morphine = total("morphine", t - 4 * kHour, t);
  const double bupi = total("bupivacaine", t - 4 * kHour, t);
  ASSERT_GT(morphine, 50.0);  // the bolus's 50 mcg and the basal
  // Bupivacaine in the ratio of the solution, 7.5 : 10 (the catheter was primed with it).
  ASSERT_NEAR(bupi, 0.75 * morphine, 1e-6 + 1e-9 * morphine);
  for (const int sig : {SIGKILL, SIGTERM}) {
    p.restart(sig);
    // What was delivered before the restart is all there (a crash may add the minute in
    // flight at most: 1.5 mg/day is about 1 mcg a minute).
    const double m = total("morphine", t - 4 * kHour, t);
    const double b = total("bupivacaine", t - 4 * kHour, t);
    EXPECT_GE(m, morphine - 1e-6) << "after signal " << sig;
    EXPECT_LE(m, morphine + 1.0) << "after signal " << sig;
    EXPECT_GE(b, bupi - 1e-6) << "after signal " << sig;
    EXPECT_LE(b, bupi + 1.0) << "after signal " << sig;
  }
  // The file is there beside the primary's.
  EXPECT_TRUE(fs::exists(p.dir.path() + "/state/delivery-history-drugs"));
}

/// The journal's highest reservation R (cumulative steps the loop may issue) and the size G
/// of the reservation that holds it (docs/journal.md).
struct Reserved {
  std::uint64_t reserved = 0;
  std::uint64_t size = 0;
};
Reserved read_reservation(const std::string& path) {
  Reserved d;
  const auto bytes = io::read_file(path);
  if (!bytes) return d;
  for (const auto& r : io::scan_journal(*bytes).records) {
    if (r.type != io::RecordType::reserve) continue;
    const auto rr = app::decode_reserve_payload(r.payload);
    if (rr && rr->reserved >= d.reserved) d = {rr->reserved, rr->size};
  }
  return d;
}

// SPEC S15: "a crash loses at most what S7's outstanding reservation also covers".  The real
// daemon at 20,000x with boluses and a change of concentration, killed with SIGKILL at a
// moment set by the loop's cycle count, restarted; the recording of the killed run, pulled
// with thecalctl and replayed, is compared with the ground truth this test keeps: the acts
// it got a reply for, and the steps the simulated plant really pumped (its truth file,
// which survives the kill).
TEST(Recorder, ACrashLosesAtMostWhatTheOutstandingReservationCovers) {
  Pump p;
  const std::uint64_t first_wall = p.wall();
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(2 * kHour));
  // The acts the pump answered: each must be in the recording of the run that is killed.
  int clinician = 0;
  int patient = 0;
  auto r = p.ctl({"clinician-bolus", "0.05 mg", "--over", "10 min"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ++clinician;
  r = p.ctl({"bolus"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ++patient;
  ASSERT_TRUE(p.sim_wait(kHour));
  // A change of concentration (10 -> 20 mg/mL): the line still holds the old solution.
  std::string yaml = read_text(source_dir() + "/examples/prescription-flex.yaml");
  const std::string from = "concentration: 10 mg/mL";
  yaml.replace(yaml.find(from), from.size(), "concentration: 20 mg/mL");
  const double left = p.client->get_double(kPump, "ReservoirUl");
  ASSERT_EQ(p.client->call(kPump, "Refill", "dds", left, 20000.0, yaml.c_str()), "") << read_text(p.log);
  ASSERT_TRUE(wait_until([&] { return p.state() == "infusing"; })) << read_text(p.log);
  ASSERT_TRUE(p.sim_wait(kHour / 2));
  r = p.ctl({"clinician-bolus", "0.05 mg", "--over", "10 min"});  // during the bridge
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ++clinician;
  // Killed a few hundred cycles later, while the bolus runs.
  const std::uint64_t until = p.client->get_u64(kDiag, "LoopCycles") + 237;
  ASSERT_TRUE(wait_until([&] { return p.client->get_u64(kDiag, "LoopCycles") >= until; }));
  const std::uint64_t kill_wall = p.wall();
  ASSERT_EQ(::kill(p.proc->pid(), SIGKILL), 0);
  (void)p.proc->stop(SIGKILL, 5'000);
  p.proc.reset();
  const std::string state = p.dir.path() + "/state";
  const auto truth = io::SimPlant::read_truth_file(state + "/sim-plant-truth");
  ASSERT_TRUE(truth);
  const Reserved disk = read_reservation(state + "/journal");
  ASSERT_GT(disk.size, 0U);

  p.start();
  ASSERT_TRUE(wait_until([&] { return p.state() == "infusing"; })) << read_text(p.log);
  // The window by the killed run's own (simulated) wall clock: a restarted simulator's clock
  // starts again at the real time, hours before where the killed run's had got to, so
  // "now-2d .. now" would cut the killed run at the restart's "now" (docs/recorder.md).
  const std::string file = p.dir.path() + "/crash.rec";
  auto got = p.ctl({"recording", std::to_string(first_wall - kHour), std::to_string(kill_wall + kHour), file});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  const RunResult rep = run({THECAL_REPLAY_PATH, file});
  ASSERT_EQ(rep.exit_code, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("MATCH"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("2 run(s)"), std::string::npos) << rep.out;

  // The killed run alone: its start, every input it kept, replayed as far as it goes.
  const io::Scan all = io::scan_recording(read_text(p.dir.path() + "/crash.rec"));
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < all.records.size(); ++i) {
    if (all.records[i].kind == io::RecKind::start) starts.push_back(i);
  }
  ASSERT_EQ(starts.size(), 2U) << run({THECAL_REPLAY_PATH, p.dir.path() + "/crash.rec", "--list"}).out;
  io::Scan killed;
  killed.records.assign(all.records.begin() + static_cast<std::ptrdiff_t>(starts[0]),
                        all.records.begin() + static_cast<std::ptrdiff_t>(starts[1]));
  const replay::Result run1 = replay::replay(killed);
  ASSERT_FALSE(run1.divergence) << run1.divergence->input << ": " << run1.divergence->what;
  EXPECT_TRUE(run1.violations.empty()) << run1.violations[0].rule << " " << run1.violations[0].what;
  // Every act the test got a reply for is in it.
  int rec_clinician = 0;
  int rec_patient = 0;
  int rec_refills_20 = 0;
  for (const auto& x : killed.records) {
    if (x.kind != io::RecKind::command || x.reply.refusal != Refusal::none) continue;
    rec_clinician += x.cmd.kind == CommandKind::clinician_bolus ? 1 : 0;
    rec_patient += x.cmd.kind == CommandKind::patient_bolus ? 1 : 0;
    rec_refills_20 += x.cmd.kind == CommandKind::refill && x.plan && x.plan->concentration == mg_per_mL(20) ? 1 : 0;
  }
  EXPECT_EQ(rec_clinician, clinician);
  EXPECT_EQ(rec_patient, patient);
  EXPECT_EQ(rec_refills_20, 1);

  // Steps: what the replay of the killed run reproduces, what the plant really pumped, what
  // the journal's recovery counted as delivered (the next run's start state).
  const std::uint64_t replayed = all.records[starts[0]].state->steps_issued + run1.steps;
  const std::uint64_t counted = all.records[starts[1]].state->steps_issued;
  EXPECT_EQ(counted, disk.reserved);            // the recovery counts the whole reservation (S7)
  EXPECT_LE(replayed, *truth);                  // the recording claims nothing the plant did not do
  EXPECT_LE(*truth, counted);                   // S7: never under-counted
  EXPECT_LE(counted - replayed, disk.size);     // S15: the steps the recording lacks are within
                                                // the outstanding reservation, which S7 counts
  std::printf("[ crash loss ] plant %llu steps, recording replays %llu (lacks %llu), journal counts %llu; "
              "reservation %llu steps: the recording lacks %llu steps the reservation covers\n",
              static_cast<unsigned long long>(*truth), static_cast<unsigned long long>(replayed),
              static_cast<unsigned long long>(*truth - replayed), static_cast<unsigned long long>(counted),
              static_cast<unsigned long long>(disk.size), static_cast<unsigned long long>(counted - replayed));
}

}  // namespace
}  // namespace thecal::test
