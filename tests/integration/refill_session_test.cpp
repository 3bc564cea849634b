// Issue 17 through the real daemon on the real bus: ReviseCatheter and CatheterVolumeUl,
// the refill session (BeginRefill, CancelRefill, Refill ending it, catheter_port_injection
// from the simulator's pressure-high input, refill_unfinished), TestAlarm, the solution's
// stability (SolutionExpiresUsec, solution_expired), the risk events, a restart in a
// session, and thecalctl's revise-catheter, test-alarm and guided refill.
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";
constexpr const char* kSim = "org.thecal.Simulator1";
constexpr const char* kInvalidState = "org.thecal.Pump1.Error.InvalidState";
constexpr const char* kOutOfRange = "org.thecal.Pump1.Error.OutOfRange";
constexpr std::uint64_t kHourUs = 3'600'000'000ULL;
constexpr std::uint64_t kDayUs = 24 * kHourUs;

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_text(const std::string& p, const std::string& t) { std::ofstream(p, std::ios::binary) << t; }

/// One pump on its own private bus; `drugs`: another drug library (default: the shipped one).
struct Pump {
  TempDir dir;
  std::optional<PrivateBus> bus;
  std::optional<Process> proc;
  std::optional<Client> client;
  std::string log, config;

  explicit Pump(const std::string& drugs = "") {
    bus.emplace(dir.path());
    std::istringstream in(read_text(source_dir() + "/examples/thecald-sim.yaml"));
    std::ostringstream out;
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("  prescription:", 0) == 0) line = "  prescription: " + dir.path() + "/prescription.yaml";
      else if (line.rfind("  drugs:", 0) == 0) line = "  drugs: " + (drugs.empty() ? source_dir() + "/config/drugs.yaml" : drugs);
      else if (line.rfind("  state:", 0) == 0) line = "  state: " + dir.path() + "/state";
      else if (line.rfind("  time_scale:", 0) == 0) line = "  time_scale: 1";
      out << line << "\n";
    }
    fs::create_directories(dir.path() + "/state");
    config = dir.path() + "/thecald.yaml";
    write_text(config, out.str());
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
  /// A clean stop (SIGTERM) and a start on the same state directory.
  void restart() {
    ASSERT_EQ(proc->stop(SIGTERM, 10'000), 0) << read_text(log);
    proc.reset();
    start();
  }
  RunResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus->address()});
    return run(args);
  }
  /// thecalctl with `input` on its stdin.
  RunResult ctl_with_input(const std::string& input, const std::string& args) {
    return run({"/bin/sh", "-c",
                "printf '" + input + "' | " + thecalctl_path() + " --address '" + bus->address() + "' " + args});
  }
  Client& c() { return *client; }
  std::string state() { return client->get_string(kPump, "State"); }
  std::string alarms() { return ctl({"alarms"}).out; }
  bool has_alarm(const std::string& code) { return alarms().find(code) != std::string::npos; }
  std::uint64_t wall() { return client->get_u64(kDiag, "WallClockUsec"); }
  bool sim_wait(std::uint64_t d_us, int timeout_ms) {
    const std::uint64_t end = wall() + d_us;
    return wait_until([&] { return wall() >= end; }, timeout_ms);
  }
  std::vector<Client::Event> logged(const std::string& type) {
    std::vector<Client::Event> out;
    for (const auto& e : client->events()) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }
  /// Load, fill, prime (fast) and start.
  void infusing(const std::string& prescription = "prescription-continuous.yaml", const char* fill = "20 mL") {
    auto r = ctl({"load", source_dir() + "/examples/" + prescription});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(ctl({"refill", "--withdrawn", "0 mL", fill}).exit_code, 0);
    ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
    ASSERT_EQ(ctl({"prime", "0.22 mL"}).exit_code, 0);
    ASSERT_TRUE(wait_until([&] { return c().get_bool(kPump, "CatheterPrimed") && state() == "idle"; })) << read_text(log);
    ASSERT_EQ(ctl({"time-scale", "1"}).exit_code, 0);
    r = ctl({"start"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(state(), "infusing");
  }
};

/// Records PropertiesChanged names (and string values) on the pump's object.
struct Changes {
  std::vector<std::string> seen;
  sd_bus_slot* slot = nullptr;
  static int on(sd_bus_message* m, void* userdata, sd_bus_error* /*e*/) {
    auto* self = static_cast<Changes*>(userdata);
    const char* iface = nullptr;
    if (sd_bus_message_read(m, "s", &iface) < 0) return 0;
    if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0) return 0;
    while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
      const char* name = nullptr;
      if (sd_bus_message_read(m, "s", &name) < 0) return 0;
      std::string entry = name;
      const char* contents = nullptr;
      if (sd_bus_message_peek_type(m, nullptr, &contents) < 0) return 0;
      if (std::string(contents) == "s") {
        if (sd_bus_message_enter_container(m, 'v', "s") < 0) return 0;
        const char* v = nullptr;
        if (sd_bus_message_read(m, "s", &v) < 0) return 0;
        entry += std::string("=") + v;
        (void)sd_bus_message_exit_container(m);
      } else if (std::string(contents) == "d") {
        if (sd_bus_message_enter_container(m, 'v', "d") < 0) return 0;
        double v = 0;
        if (sd_bus_message_read(m, "d", &v) < 0) return 0;
        entry += "=" + std::to_string(v);
        (void)sd_bus_message_exit_container(m);
      } else if (sd_bus_message_skip(m, "v") < 0) {
        return 0;
      }
      self->seen.push_back(entry);
      (void)sd_bus_message_exit_container(m);
    }
    return 0;
  }
  explicit Changes(sd_bus* bus) {
    EXPECT_GE(sd_bus_add_match(bus, &slot,
                               "type='signal',path='/org/thecal/Pump1',interface='org.freedesktop.DBus.Properties',"
                               "member='PropertiesChanged'",
                               on, this),
              0);
  }
  ~Changes() { sd_bus_slot_unref(slot); }
  bool saw(sd_bus* bus, const std::string& what, int timeout_ms = 5'000) {
    return wait_until(
        [&] {
          while (sd_bus_process(bus, nullptr) > 0) {
          }
          for (const auto& s : seen) {
            if (s.rfind(what, 0) == 0) return true;
          }
          return false;
        },
        timeout_ms);
  }
};

TEST(DaemonCatheterRevision, ReviseCatheterByLengthPrimeStartAndRestartWithTheVolumeKept) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  Changes changes(p.c().bus());
  EXPECT_DOUBLE_EQ(p.c().get_double(kPump, "CatheterVolumeUl"), 220.0);
  // Not while infusing: InvalidState, nothing changed.
  auto r = p.ctl({"revise-catheter", "117 uL"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find(kInvalidState), std::string::npos) << r.err;
  EXPECT_EQ(p.state(), "infusing");
  EXPECT_DOUBLE_EQ(p.c().get_double(kPump, "CatheterVolumeUl"), 220.0);
  // A disconnect alarm stops the pump; the catheter is revised to a shorter one.
  ASSERT_EQ(p.c().call(kSim, "InjectFault", "sb", "disconnect", 1), "");
  ASSERT_TRUE(wait_until([&] { return p.state() == "stopped"; }));
  ASSERT_EQ(p.c().call(kSim, "InjectFault", "sb", "disconnect", 0), "");
  // Bad volumes: OutOfRange, nothing changed.
  for (const double v : {0.0, -1.0, 2000.5, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_EQ(p.c().call(kPump, "ReviseCatheter", "d", v), kOutOfRange) << v;
  }
  EXPECT_EQ(p.state(), "stopped");
  EXPECT_TRUE(p.c().get_bool(kPump, "CatheterPrimed"));
  EXPECT_EQ(p.ctl({"revise-catheter", "--length", "45cm"}).exit_code, 2);  // usage: needs --per-cm
  r = p.ctl({"revise-catheter", "--length", "45cm", "--per-cm", "2.6uL"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("117.0 uL"), std::string::npos) << r.out;
  EXPECT_NEAR(p.c().get_double(kPump, "CatheterVolumeUl"), 117.0, 1e-9);
  EXPECT_TRUE(changes.saw(p.c().bus(), "CatheterVolumeUl=117")) << ::testing::PrintToString(changes.seen);
  EXPECT_FALSE(p.c().get_bool(kPump, "CatheterPrimed"));
  EXPECT_EQ(p.state(), "idle");
  const auto revised = p.logged("catheter_revised");
  ASSERT_EQ(revised.size(), 1u);
  EXPECT_EQ(revised[0].who, "uid=0");
  EXPECT_NE(revised[0].detail.find("220.0 uL -> 117.0 uL"), std::string::npos) << revised[0].detail;
  // Start is refused until primed.
  EXPECT_EQ(p.c().call(kPump, "AcknowledgeAlarm", "s", "disconnect"), "");
  EXPECT_EQ(p.c().call(kPump, "Start", ""), kInvalidState);
  // Priming fills the new volume; no drug at the tip meanwhile.
  const double tip_before = p.c().get_double(kPump, "Delivered24hMcg");
  ASSERT_EQ(p.ctl({"time-scale", "3600"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"prime", "117 uL"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return p.c().get_bool(kPump, "CatheterPrimed") && p.state() == "idle"; }));
  EXPECT_LE(p.c().get_double(kPump, "Delivered24hMcg"), tip_before);
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"start"}).exit_code, 0);
  // A restart keeps the revised catheter, full, and the therapy goes on.
  ASSERT_NO_FATAL_FAILURE(p.restart());
  EXPECT_NEAR(p.c().get_double(kPump, "CatheterVolumeUl"), 117.0, 1e-9);
  EXPECT_TRUE(p.c().get_bool(kPump, "CatheterPrimed"));
  EXPECT_EQ(p.state(), "infusing");
  // A stale prescription (0.22 mL) cannot undo the revision.
  r = p.ctl({"load", source_dir() + "/examples/prescription-continuous.yaml"});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("revised catheter"), std::string::npos) << r.err;
}

TEST(DaemonRefillSession, BeginOverfillPortInjectionThenRefillLeavesThePumpStopped) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  Changes changes(p.c().bus());
  ASSERT_EQ(p.c().call(kPump, "BeginRefill", ""), "");
  EXPECT_EQ(p.state(), "refilling");
  EXPECT_TRUE(changes.saw(p.c().bus(), "State=refilling"));
  EXPECT_EQ(p.c().call(kPump, "BeginRefill", ""), kInvalidState);
  const double reservoir = p.c().get_double(kPump, "ReservoirUl");
  const std::uint64_t steps = p.c().get_u64(kDiag, "StepsIssued");
  // Overfilling: OutOfRange, nothing changed, still in the session.
  EXPECT_EQ(p.c().call(kPump, "Refill", "dds", reservoir, 20'001.0, ""), kOutOfRange);
  EXPECT_EQ(p.state(), "refilling");
  EXPECT_DOUBLE_EQ(p.c().get_double(kPump, "ReservoirUl"), reservoir);
  // The needle goes into the catheter access port: the pressure rises (the simulator's
  // pressure-high input, InjectFault occlusion).
  ASSERT_EQ(p.c().call(kSim, "InjectFault", "sb", "occlusion", 1), "");
  ASSERT_TRUE(wait_until([&] { return p.has_alarm("catheter_port_injection"); }, 5'000)) << p.alarms();
  const std::string alarms = p.ctl({"--json", "alarms"}).out;
  EXPECT_NE(alarms.find(R"("code":"catheter_port_injection","priority":"high")"), std::string::npos) << alarms;
  EXPECT_EQ(alarms.find(R"("code":"occlusion")"), std::string::npos) << alarms;
  EXPECT_EQ(p.c().get_u64(kDiag, "StepsIssued"), steps);  // the motor never moved
  ASSERT_EQ(p.c().call(kSim, "InjectFault", "sb", "occlusion", 0), "");
  // Ending the session: the pump does not resume by itself after a high alarm.
  auto r = p.ctl({"refill", "--withdrawn", "19.9 mL", "20 mL"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(p.state(), "stopped");
  EXPECT_EQ(p.c().call(kPump, "Resume", ""), kInvalidState);
  ASSERT_EQ(p.ctl({"ack", "catheter_port_injection"}).exit_code, 0);
  ASSERT_EQ(p.c().call(kPump, "Resume", ""), "");
  EXPECT_EQ(p.state(), "infusing");
}

TEST(DaemonRefillSession, CancelAndTheGuidedThecalctlSessionAndOneCallRefillKeepsWorking) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  EXPECT_EQ(p.c().call(kPump, "CancelRefill", ""), kInvalidState);
  const double reservoir = p.c().get_double(kPump, "ReservoirUl");
  ASSERT_EQ(p.ctl({"begin-refill"}).exit_code, 0);
  EXPECT_EQ(p.state(), "refilling");
  ASSERT_EQ(p.ctl({"cancel-refill"}).exit_code, 0);
  EXPECT_EQ(p.state(), "infusing");
  // Guided, cancelled by an empty answer: back to infusing, nothing filled.
  auto r = p.ctl_with_input("\\n", "refill");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("refill session cancelled"), std::string::npos) << r.err;
  EXPECT_EQ(p.state(), "infusing");
  EXPECT_LE(p.c().get_double(kPump, "ReservoirUl"), reservoir);
  // Guided, refused overfill: the pump's error, the session closed, nothing filled.
  r = p.ctl_with_input("19.9 mL\\n25 mL\\n", "refill");
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  EXPECT_NE(r.err.find(kOutOfRange), std::string::npos) << r.err;
  EXPECT_EQ(p.state(), "infusing");
  // Guided, completed: the refill check and the bridge are shown.
  r = p.ctl_with_input("19.9 mL\\n20 mL\\n", "refill");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Refill session begun"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Refill check: filled 20000.0 uL, withdrawn 19900.0 uL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Bridge: none needed"), std::string::npos) << r.out;
  EXPECT_EQ(p.state(), "infusing");
  EXPECT_DOUBLE_EQ(p.c().get_double(kPump, "ReservoirUl"), 20'000.0);
  // In one call, as before.
  r = p.ctl({"refill", "--withdrawn", "20 mL", "20 mL"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(p.state(), "infusing");
  // Guided, with a new concentration: the bridge, computed from the catheter and the rate
  // (220 uL at 1.5 mg/day of 10 mg/mL = 150 uL/day: 35.2 h).
  std::string half = read_text(source_dir() + "/examples/prescription-continuous.yaml");
  const auto at = half.find("concentration: 10 mg/mL");
  ASSERT_NE(at, std::string::npos);
  half.replace(at, 23, "concentration: 20 mg/mL");
  write_text(p.dir.path() + "/double.yaml", half);
  r = p.ctl_with_input("19.9 mL\\n20 mL\\n", "refill --prescription " + p.dir.path() + "/double.yaml");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Bridge: the catheter still holds 220.0 uL of the old solution (10 mg/mL)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("(about 35.2 h at the basal rate)"), std::string::npos) << r.out;
  EXPECT_DOUBLE_EQ(p.c().get_double(kPump, "ConcentrationMcgPerMl"), 20'000.0);
  EXPECT_EQ(p.state(), "infusing");
  EXPECT_EQ(p.logged("refill").size(), 4u);
  EXPECT_EQ(p.logged("refill_cancelled").size(), 3u);
}

TEST(DaemonRefillSession, UnfinishedAfterFifteenMinutesAndARestartComesBackInTheSession) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  ASSERT_EQ(p.c().call(kPump, "BeginRefill", ""), "");
  // A restart in the session comes back in it: the motor stays stopped (docs/maintenance.md).
  ASSERT_NO_FATAL_FAILURE(p.restart());
  EXPECT_EQ(p.state(), "refilling");
  ASSERT_EQ(p.ctl({"time-scale", "600"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return p.has_alarm("refill_unfinished"); }, 10'000)) << p.alarms();
  EXPECT_NE(p.ctl({"--json", "alarms"}).out.find(R"("code":"refill_unfinished","priority":"medium")"), std::string::npos);
  EXPECT_EQ(p.state(), "refilling");
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(p.c().call(kPump, "CancelRefill", ""), "");
  EXPECT_EQ(p.state(), "infusing");  // the state before the session
  EXPECT_TRUE(wait_until([&] { return !p.has_alarm("refill_unfinished"); }, 5'000)) << p.alarms();
}

TEST(DaemonAlarmTest, ThecalctlTestAlarmIsLoggedAndRaisesNothing) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  const std::string before = p.alarms();
  const auto r = p.ctl({"test-alarm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto logged = p.logged("alarm_test");
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].who, "uid=0");
  EXPECT_NE(logged[0].detail.find("high, medium and low"), std::string::npos);
  EXPECT_EQ(p.alarms(), before);
  EXPECT_EQ(p.state(), "infusing");
}

TEST(DaemonSolutionStability, ExpiresAtTheLibrarysDaysAlarmsThenClearsAtTheNextRefill) {
  // The shipped library: ziconotide 40 days.
  {
    Pump p;
    ASSERT_NO_FATAL_FAILURE(p.infusing("prescription-ziconotide.yaml"));
    const auto fills = p.logged("refill");
    ASSERT_EQ(fills.size(), 1u);
    EXPECT_EQ(p.c().get_u64(kPump, "SolutionExpiresUsec"), fills[0].time_us + 40 * kDayUs);
    EXPECT_LE(p.c().get_u64(kPump, "RefillDueUsec"), fills[0].time_us + 40 * kDayUs);
    EXPECT_NE(p.c().get_u64(kPump, "RefillDueUsec"), 0u);
  }
  // A site library with a 1-day stability, so that simulated time gets there.
  TempDir lib;
  std::string text = read_text(source_dir() + "/config/drugs.yaml");
  const std::string marker = "      value: 40 d";
  const auto at = text.find(marker);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, marker.size(), "      value: 1 d");
  write_text(lib.path() + "/drugs.yaml", text);
  Pump p(lib.path() + "/drugs.yaml");
  ASSERT_NO_FATAL_FAILURE(p.infusing("prescription-ziconotide.yaml"));
  const std::uint64_t expires = p.c().get_u64(kPump, "SolutionExpiresUsec");
  ASSERT_NE(expires, 0u);
  EXPECT_EQ(p.c().get_u64(kPump, "RefillDueUsec"), expires);
  EXPECT_FALSE(p.has_alarm("solution_expired"));
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return p.has_alarm("solution_expired"); }, 20'000)) << p.alarms();
  EXPECT_GE(p.wall(), expires);
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  EXPECT_EQ(p.state(), "infusing");  // medium: delivery goes on
  ASSERT_EQ(p.ctl({"refill", "--withdrawn", "19.9 mL", "20 mL"}).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return !p.has_alarm("solution_expired"); }, 5'000)) << p.alarms();
  EXPECT_GT(p.c().get_u64(kPump, "SolutionExpiresUsec"), expires);
}

TEST(DaemonRiskEvents, ALongStopAndAnEmptyReservoirAreLogged) {
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing("prescription-continuous.yaml", "0.3 mL"));
  // 80 uL after priming at 150 uL/day: empty within a simulated day.
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return p.has_alarm("reservoir_empty"); }, 20'000)) << p.alarms();
  ASSERT_TRUE(wait_until([&] { return !p.logged("risk_event").empty(); }, 5'000));
  EXPECT_NE(p.logged("risk_event")[0].detail.find("reservoir ran empty"), std::string::npos);
  // Refilled, stopped for more than 48 h, then resumed: a second risk event.
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"ack", "reservoir_empty"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);
  ASSERT_TRUE(p.sim_wait(49 * kHourUs, 30'000));
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  const auto r = p.ctl({"resume"});
  ASSERT_EQ(r.exit_code, 0) << r.err << p.alarms();
  // The stop (since reservoir_empty stopped the pump) was logged at its 48 h mark, then
  // again when delivery resumed.
  const auto risks = p.logged("risk_event");
  ASSERT_EQ(risks.size(), 3u);
  EXPECT_NE(risks[1].detail.find("delivery stopped for 48.0 h and still stopped"), std::string::npos)
      << risks[1].detail;
  EXPECT_EQ(risks[1].who, "pump");
  EXPECT_NE(risks[2].detail.find("after a stop of"), std::string::npos) << risks[2].detail;
  EXPECT_EQ(risks[2].who, "uid=0");
}

TEST(DaemonRiskEvents, AStopIsLoggedAtIts48HourMarkWhileThePumpIsStillSuspended) {
  // SPEC S14, the moment a clinician needs it: the risk event is in the event log (GetEvents
  // over the bus) as soon as the stop reaches 48 h, without anyone resuming the pump.
  Pump p;
  ASSERT_NO_FATAL_FAILURE(p.infusing());
  ASSERT_EQ(p.ctl({"suspend"}).exit_code, 0);
  ASSERT_EQ(p.state(), "suspended");
  const std::uint64_t suspended_at = p.wall();
  ASSERT_EQ(p.ctl({"time-scale", "20000"}).exit_code, 0);  // 48 h in about 9 s
  ASSERT_TRUE(wait_until([&] { return !p.logged("risk_event").empty(); }, 30'000))
      << "no risk_event within 30 s at 20,000x (simulated " << (p.wall() - suspended_at) / kHourUs << " h)";
  ASSERT_EQ(p.ctl({"time-scale", "1"}).exit_code, 0);
  EXPECT_EQ(p.state(), "suspended");
  const auto risks = p.logged("risk_event");
  ASSERT_EQ(risks.size(), 1u);
  EXPECT_EQ(risks[0].who, "pump");
  EXPECT_NE(risks[0].detail.find("delivery stopped for 48.0 h and still stopped (suspended)"), std::string::npos)
      << risks[0].detail;
  // Stamped at the mark: 48 h of simulated time after the suspend (the suspend was read
  // back a moment after it, at 1x; a cycle at 20,000x is 20 s).
  EXPECT_GE(risks[0].time_us + 60'000'000, suspended_at + 48 * kHourUs);
  EXPECT_LE(risks[0].time_us, suspended_at + 48 * kHourUs + 60'000'000);
  // thecalctl's event list shows it too.
  const auto log = p.ctl({"events", "1000"});
  ASSERT_EQ(log.exit_code, 0) << log.err;
  EXPECT_NE(log.out.find("risk_event"), std::string::npos) << log.out;
  // Resumed: the second entry, with the whole stop, by whoever resumed.
  ASSERT_EQ(p.ctl({"resume"}).exit_code, 0);
  const auto after = p.logged("risk_event");
  ASSERT_EQ(after.size(), 2u);
  EXPECT_NE(after[1].detail.find("delivery resumed after a stop of"), std::string::npos) << after[1].detail;
  EXPECT_EQ(after[1].who, "uid=0");
}

}  // namespace
}  // namespace thecal::test
