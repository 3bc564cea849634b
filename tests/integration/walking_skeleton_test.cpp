// The walking skeleton end to end: a private bus with the real policy, the real thecald on
// the simulated pump, driven by the real thecalctl.  The plant's true pumped volume must
// match the programmed basal rate over the infusion, within one motor step (SPEC S6).
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <vector>
#include <limits>
#include <thread>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kSim = "org.thecal.Simulator1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";
constexpr double kStepUl = 0.25;  // examples/thecald-sim.yaml motor.volume_per_step

class WalkingSkeleton : public ::testing::Test {
 protected:
  TempDir dir;
  PrivateBus bus{dir.path()};
  Daemon daemon{dir.path(), bus.address()};
  Client client{bus.address()};

  RunResult ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus.address()});
    return run(args);
  }
  std::string example(const char* name) { return source_dir() + "/examples/" + name; }
};

TEST_F(WalkingSkeleton, DeliversTheProgrammedBasalRate) {
  EXPECT_EQ(client.get_string(kPump, "State"), "idle");
  EXPECT_EQ(client.get_string(kPump, "PrescriptionId"), "");

  auto r = ctl({"load", example("prescription-continuous.yaml")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon.log();
  const std::string id = client.get_string(kPump, "PrescriptionId");
  EXPECT_EQ(id.size(), 64u);
  EXPECT_NE(r.out.find(id), std::string::npos);

  r = ctl({"refill", "--withdrawn", "0 mL", "20 mL"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_DOUBLE_EQ(client.get_double(kPump, "ReservoirUl"), 20000.0);

  ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
  EXPECT_DOUBLE_EQ(client.get_double(kSim, "TimeScale"), 3600.0);
  r = ctl({"prime", "0.22 mL"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_until([&] { return client.get_bool(kPump, "CatheterPrimed") && client.get_string(kPump, "State") == "idle"; }))
      << daemon.log();
  const double primed = client.get_double(kSim, "TrueDeliveredUl");
  EXPECT_NEAR(primed, 220.0, kStepUl);
  EXPECT_DOUBLE_EQ(client.get_double(kPump, "Delivered24hMcg"), 0.0) << "priming must deliver no drug";

  r = ctl({"start"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(client.get_string(kPump, "State"), "infusing");
  const double rate_mcg_day = client.get_double(kPump, "BasalRateMcgPerDay");
  const double conc_mcg_ml = client.get_double(kPump, "ConcentrationMcgPerMl");
  ASSERT_GT(rate_mcg_day, 0);
  ASSERT_GT(conc_mcg_ml, 0);
  // Three simulated hours of therapy (about 3 s at 3600x; a deadline, not a duration).
  const std::uint64_t wall_started = client.get_u64(kDiag, "WallClockUsec");
  ASSERT_TRUE(wait_until([&] { return client.get_u64(kDiag, "WallClockUsec") - wall_started >= 3 * 3'600'000'000ULL; },
                         60'000));
  ASSERT_EQ(ctl({"suspend"}).exit_code, 0);
  EXPECT_EQ(client.get_string(kPump, "State"), "suspended");
  // Suspend's reply comes after the cycle that stopped the motor: nothing is pumped after it.
  const double pumped = client.get_double(kSim, "TrueDeliveredUl") - primed;

  // Simulated times of start and suspend, from the event log.
  std::uint64_t t_start = 0;
  std::uint64_t t_suspend = 0;
  for (const auto& e : client.events()) {
    if (e.type == "started") t_start = e.time_us;
    if (e.type == "suspended") t_suspend = e.time_us;
  }
  ASSERT_GT(t_start, 0u);
  ASSERT_GT(t_suspend, t_start);
  const double hours = static_cast<double>(t_suspend - t_start) / 3600e6;
  EXPECT_GE(hours, 3.0);
  const double expected_ul = rate_mcg_day / conc_mcg_ml * 1000.0 * hours / 24.0;
  // Within one step, plus the volume of one loop cycle (3.6 s simulated) at the boundary.
  const double cycle_ul = rate_mcg_day / conc_mcg_ml * 1000.0 * (3.6 / 86400.0);
  EXPECT_NEAR(pumped, expected_ul, kStepUl + cycle_ul) << "hours=" << hours;
  // Mass at the tip: the catheter is full of the same solution.
  EXPECT_NEAR(client.get_double(kPump, "Delivered24hMcg"), pumped * conc_mcg_ml / 1000.0, kStepUl * conc_mcg_ml / 1000.0);
  EXPECT_NEAR(client.get_double(kPump, "ReservoirUl"), 20000.0 - 220.0 - pumped, kStepUl);

  // The status command shows it in human units.
  r = ctl({"status"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("suspended"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mL"), std::string::npos) << r.out;

  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
}

TEST_F(WalkingSkeleton, BadInputIsRefusedAndChangesNothing) {
  // A prescription with an unknown unit: InvalidPrescription, exit 6, nothing loaded.
  const std::string bad = dir.path() + "/bad.yaml";
  {
    auto text = run({"/bin/sed", "s/mg\\/mL/mg\\/dL/", example("prescription-continuous.yaml")}).out;
    FILE* f = fopen(bad.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
  }
  auto r = ctl({"load", bad});
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.err.find("InvalidPrescription"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("concentration"), std::string::npos) << r.err;
  EXPECT_EQ(client.get_string(kPump, "PrescriptionId"), "");

  // Start without a prescription: InvalidState, exit 5.
  r = ctl({"start"});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  EXPECT_EQ(client.get_string(kPump, "State"), "idle");

  // NaN, negative and infinite volumes: OutOfRange.
  EXPECT_EQ(client.call(kPump, "Prime", "d", std::numeric_limits<double>::quiet_NaN()), "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_EQ(client.call(kPump, "Prime", "d", -5.0), "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_EQ(client.call(kPump, "Refill", "dds", 0.0, std::numeric_limits<double>::infinity(), ""),
            "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_EQ(client.call(kSim, "InjectFault", "sb", "gremlins", 1), "org.thecal.Pump1.Error.OutOfRange");
  EXPECT_DOUBLE_EQ(client.get_double(kPump, "ReservoirUl"), 0.0);

  // thecalctl rejects a unit-less quantity itself (usage error, exit 2).
  r = ctl({"prime", "220"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
}

TEST_F(WalkingSkeleton, StartRaisesTheLowRestartAlarmAndAPatientCanAcknowledgeIt) {
  RunResult r;
  EXPECT_TRUE(wait_until([&] {
    r = ctl({"--json", "alarms"});
    return r.out.find("\"code\":\"restart\",\"priority\":\"low\"") != std::string::npos;
  }, 3000)) << r.out << r.err;
  r = ctl({"ack", "restart"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return ctl({"--json", "alarms"}).out.find("restart") == std::string::npos; }, 2000));
}

TEST_F(WalkingSkeleton, AStoredPrescriptionThatNoLongerValidatesIsRejectedAtStart) {
  daemon.stop();
  {
    FILE* f = fopen((dir.path() + "/prescription.yaml").c_str(), "w");
    fputs("version: 1\nphase: maintenance\n", f);
    fclose(f);
  }
  Daemon again(dir.path(), bus.address());
  EXPECT_EQ(client.get_string("org.thecal.Pump1", "PrescriptionId"), "");
  const auto r = ctl({"--json", "alarms"});
  EXPECT_NE(r.out.find("prescription_rejected"), std::string::npos) << r.out;
  EXPECT_NE(again.log().find("is not valid"), std::string::npos) << again.log();
}

TEST_F(WalkingSkeleton, TheMainThreadLeavesTheLoopCpuToTheDosingThread) {
  // examples/thecald-sim.yaml: loop.cpu 1.  The main thread is the one whose tid is the
  // pid; the dosing thread is named thecal-dosing (a sanitizer may add threads of its own,
  // named like the process: they are neither).
  const pid_t pid = daemon.pid();
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  std::vector<cpu_set_t> dosing;
  DIR* d = opendir(task.c_str());
  ASSERT_NE(d, nullptr);
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(task + "/" + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(sched_getaffinity(std::stoi(e->d_name), sizeof set, &set), 0);
    if (name == "thecal-dosing") dosing.push_back(set);
  }
  closedir(d);
  ASSERT_EQ(dosing.size(), 1u) << "one dosing thread";
  cpu_set_t main;
  CPU_ZERO(&main);
  ASSERT_EQ(sched_getaffinity(pid, sizeof main, &main), 0);
  cpu_set_t mine;
  ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);  // what thecald inherited
  EXPECT_EQ(CPU_COUNT(&dosing[0]), 1);
  EXPECT_TRUE(CPU_ISSET(1, &dosing[0]));
  if (CPU_ISSET(1, &mine) && CPU_COUNT(&mine) >= 2) {
    EXPECT_FALSE(CPU_ISSET(1, &main));
    EXPECT_EQ(CPU_COUNT(&main), CPU_COUNT(&mine) - 1);
    EXPECT_NE(daemon.log().find("other than the dosing loop's CPU 1"), std::string::npos) << daemon.log();
  } else {
    EXPECT_TRUE(CPU_EQUAL(&main, &mine)) << "nowhere else to go: the main thread keeps what it had";
  }
}

TEST_F(WalkingSkeleton, HoldsThePmQosRequestWhileItRuns) {
  // loop.cpu_dma_latency: 0 ms (examples/thecald-sim.yaml): the request is an open file.
  const std::string fd_dir = "/proc/" + std::to_string(daemon.pid()) + "/fd";
  auto holds = [&] {
    DIR* d = opendir(fd_dir.c_str());
    if (d == nullptr) return false;
    bool found = false;
    while (const dirent* e = readdir(d)) {
      char target[256] = {};
      if (readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1) > 0) {
        found = found || std::string(target) == "/dev/cpu_dma_latency";
      }
    }
    closedir(d);
    return found;
  };
  if (access("/dev/cpu_dma_latency", W_OK) == 0) {
    EXPECT_TRUE(holds()) << daemon.log();
    EXPECT_NE(daemon.log().find("Holding /dev/cpu_dma_latency at 0 us"), std::string::npos) << daemon.log();
  } else {
    // Not ours to write (no root, no udev rule): a named warning, and the pump runs anyway.
    EXPECT_FALSE(holds());
    EXPECT_NE(daemon.log().find("Could not hold /dev/cpu_dma_latency"), std::string::npos) << daemon.log();
    EXPECT_EQ(client.get_string(kPump, "State"), "idle");
  }
}

TEST_F(WalkingSkeleton, SigtermStopsCleanly) {
  ASSERT_EQ(ctl({"load", example("prescription-continuous.yaml")}).exit_code, 0);
  const int status = daemon.stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(daemon.log().find("motor disabled"), std::string::npos) << daemon.log();
}

}  // namespace
}  // namespace thecal::test

namespace thecal::test {
namespace {

TEST(Thecald, APmQosRequestItCannotMakeIsAWarningAndThePumpRunsAnyway) {
  TempDir dir;
  PrivateBus bus(dir.path());
  // A path that cannot be opened for writing (a directory) stands for a /dev/cpu_dma_latency
  // the service has no access to.
  ASSERT_EQ(setenv("THECAL_CPU_DMA_LATENCY_PATH", dir.path().c_str(), 1), 0);
  {
    Daemon d(dir.path(), bus.address());
    Client c(bus.address());
    EXPECT_EQ(c.get_string("org.thecal.Pump1", "State"), "idle");
    EXPECT_NE(d.log().find("Could not hold " + dir.path() + " at 0 us (Is a directory)"), std::string::npos) << d.log();
  }
  // And one it can: the request (int32 microseconds) is written and held.
  const std::string file = dir.path() + "/qos";
  { std::ofstream(file).put('x'); }
  ASSERT_EQ(setenv("THECAL_CPU_DMA_LATENCY_PATH", file.c_str(), 1), 0);
  {
    Daemon d(dir.path(), bus.address());
    std::ifstream in(file, std::ios::binary);
    std::int32_t v = -1;
    in.read(reinterpret_cast<char*>(&v), sizeof v);
    EXPECT_EQ(in.gcount(), 4);
    EXPECT_EQ(v, 0);
    EXPECT_NE(d.log().find("Holding " + file + " at 0 us"), std::string::npos) << d.log();
  }
  unsetenv("THECAL_CPU_DMA_LATENCY_PATH");
}

TEST(Thecald, RefusesAConfigFileOthersCanWrite) {
  TempDir dir;
  PrivateBus bus(dir.path());
  std::string cfg;
  {
    Daemon d(dir.path(), bus.address());  // writes dir/thecald.yaml, a good one
    cfg = d.config_path();
    d.stop();
  }
  ASSERT_EQ(::chmod(cfg.c_str(), 0666), 0);
  const auto r = run({thecald_path(), "--config", cfg, "--bus", bus.address()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("writ"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cfg), std::string::npos) << "the error names the file: " << r.err;
}

TEST(Thecald, CheckConfigPrintsASummaryOrTheProblems) {
  TempDir dir;
  PrivateBus bus(dir.path());
  std::string cfg;
  {
    Daemon d(dir.path(), bus.address());
    cfg = d.config_path();
    d.stop();
  }
  auto r = run({thecald_path(), "--config", cfg, "--check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("OK"), std::string::npos) << r.out;
  // With a stored prescription: its summary.
  run({"/bin/cp", source_dir() + "/examples/prescription-flex.yaml", dir.path() + "/prescription.yaml"});
  r = run({thecald_path(), "--config", cfg, "--check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("prescription.yaml: OK"), std::string::npos) << r.out;
  // A broken stored prescription: the problems, exit 1.
  FILE* f = fopen((dir.path() + "/prescription.yaml").c_str(), "w");
  fputs("version: 1\nphase: trail\n", f);
  fclose(f);
  r = run({thecald_path(), "--config", cfg, "--check-config"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("prescription.yaml:2:"), std::string::npos) << r.err;
  // Unknown option: usage error.
  r = run({thecald_path(), "--frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace thecal::test
