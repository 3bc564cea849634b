// PreviewPrescription through the real daemon on the private bus with the real policy (SPEC 4,
// S16; issue 19): the result's shape and figures, refusals with their names changing
// nothing, any local user may call it (thecalctl preview as a user in no thecal group), and
// a flood of previews while the dosing loop keeps cycling and a property read still answers.
#include <pwd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";
constexpr std::uint64_t kHourUs = 3'600'000'000ULL;
constexpr std::uint64_t kDayUs = 24 * kHourUs;

struct Bucket {
  std::uint64_t start;
  double mcg, ul, reservoir, rolling;
};
struct Ev {
  std::uint64_t t;
  std::string type, detail;
};
struct PreviewReply {
  std::string error;  // D-Bus error name, "" if ok
  std::string message;
  std::vector<Bucket> buckets;
  std::vector<Ev> events;
};

PreviewReply preview(sd_bus* bus, const std::string& yaml, bool boluses, std::uint64_t horizon, std::uint64_t bucket) {
  PreviewReply out;
  sd_bus_message* m = nullptr;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_message_new_method_call(bus, &m, kPump, "/org/thecal/Pump1", kPump, "PreviewPrescription");
  if (r >= 0) r = sd_bus_message_append(m, "sbtt", yaml.c_str(), static_cast<int>(boluses), horizon, bucket);
  sd_bus_error e = SD_BUS_ERROR_NULL;
  if (r >= 0) r = sd_bus_call(bus, m, 120'000'000, &e, &reply);
  sd_bus_message_unref(m);
  if (r < 0) {
    out.error = e.name != nullptr ? e.name : "errno";
    out.message = e.message != nullptr ? e.message : "";
    sd_bus_error_free(&e);
    return out;
  }
  Bucket b{};
  r = sd_bus_message_enter_container(reply, 'a', "(tdddd)");
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tdddd)", &b.start, &b.mcg, &b.ul, &b.reservoir, &b.rolling)) > 0) {
    out.buckets.push_back(b);
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  if (r >= 0) r = sd_bus_message_enter_container(reply, 'a', "(tss)");
  std::uint64_t t = 0;
  const char *type = nullptr, *detail = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tss)", &t, &type, &detail)) > 0) out.events.push_back({t, type, detail});
  sd_bus_message_unref(reply);
  if (r < 0) out.error = "parse-error";
  return out;
}

std::string slurp_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class PreviewApi : public ::testing::Test {
 protected:
  TempDir dir;
  std::optional<PrivateBus> bus;
  std::optional<Daemon> daemon;
  std::optional<Client> client;

  void SetUp() override {
    bus.emplace(dir.path());
    daemon.emplace(dir.path(), bus->address());
    client.emplace(bus->address());
  }
  RunResult ctl(std::vector<std::string> args, std::optional<uid_t> as = std::nullopt) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus->address()});
    return run(args, as);
  }
  std::string example(const char* name) { return source_dir() + "/examples/" + name; }
  std::string state() { return client->get_string(kPump, "State"); }
  std::size_t logged(const std::string& type) {
    std::size_t n = 0;
    for (const auto& e : client->events()) n += e.type == type ? 1 : 0;
    return n;
  }
  void infusing(const char* prescription) {
    ASSERT_EQ(ctl({"load", example(prescription)}).exit_code, 0);
    ASSERT_EQ(ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
    ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
    ASSERT_EQ(ctl({"prime", "0.22 mL"}).exit_code, 0);
    ASSERT_TRUE(wait_until([&] { return client->get_bool(kPump, "CatheterPrimed") && state() == "idle"; }))
        << daemon->log();
    ASSERT_EQ(ctl({"time-scale", "1"}).exit_code, 0);
    const auto r = ctl({"start"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(state(), "infusing");
  }
};

TEST_F(PreviewApi, GivesTheCoresFiguresAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-continuous.yaml"));
  const std::string id = client->get_string(kPump, "PrescriptionId");
  const std::string stored = slurp_file(dir.path() + "/prescription.yaml");
  const std::size_t loads = logged("prescription_loaded");
  const std::uint64_t wall = client->get_u64(kDiag, "WallClockUsec");

  const auto p = preview(client->bus(), slurp_file(example("prescription-flex.yaml")), true, 7 * kDayUs, kHourUs);
  ASSERT_EQ(p.error, "") << p.message;
  ASSERT_EQ(p.buckets.size(), 7u * 24);
  // The timeline starts at the pump's wall time, one bucket apart.
  EXPECT_GE(p.buckets[0].start, wall);
  EXPECT_LT(p.buckets[0].start, wall + 60'000'000);
  for (std::size_t k = 1; k < p.buckets.size(); ++k) EXPECT_EQ(p.buckets[k].start - p.buckets[k - 1].start, kHourUs);
  // The flex example with every allowed bolus: basal 1.533 mg + periodic 0.1 mg + 4 x 0.1 mg
  // patient boluses = 2.033 mg in every full day at the tip (the pattern repeats daily),
  // within two steps (2 x 0.25 uL at 10 mg/mL).
  double day2 = 0, ul2 = 0;
  for (std::size_t k = 24; k < 48; ++k) {
    day2 += p.buckets[k].mcg;
    ul2 += p.buckets[k].ul;
  }
  const double planned = 1000.0 * (1.0 * 8 + 2.0 * 12 + 1.2 * 4) / 24 + 100 + 400;
  EXPECT_NEAR(day2, planned, 5.0);
  EXPECT_NEAR(ul2, planned / 10.0, 0.5);
  EXPECT_NEAR(p.buckets[47].rolling, planned, 5.0);
  // The reservoir goes down by what was pumped.
  EXPECT_NEAR(p.buckets[23].reservoir - p.buckets[47].reservoir, ul2, 1e-6);
  std::size_t patient = 0, loaded = 0;
  for (const auto& e : p.events) {
    patient += e.type == "bolus_started" && e.detail.rfind("patient", 0) == 0 ? 1 : 0;
    loaded += e.type == "prescription_loaded" ? 1 : 0;
  }
  EXPECT_EQ(loaded, 1u);
  EXPECT_EQ(patient, 7u * 4);

  // Nothing changed.
  EXPECT_EQ(client->get_string(kPump, "PrescriptionId"), id);
  EXPECT_DOUBLE_EQ(client->get_double(kPump, "BasalRateMcgPerDay"), 1500.0);
  EXPECT_EQ(state(), "infusing");
  EXPECT_EQ(slurp_file(dir.path() + "/prescription.yaml"), stored);
  EXPECT_EQ(logged("prescription_loaded"), loads);
  EXPECT_EQ(logged("bolus_started"), 0u);

  // Empty yaml: the prescription in force, unchanged (1.5 mg/day, no bolus).
  const auto same = preview(client->bus(), "", true, 2 * kDayUs, kHourUs);
  ASSERT_EQ(same.error, "") << same.message;
  double d = 0;
  for (std::size_t k = 24; k < 48; ++k) d += same.buckets[k].mcg;
  EXPECT_NEAR(d, 1500.0, 5.0);
}

TEST_F(PreviewApi, RefusalsCarryTheirNamesAndChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-continuous.yaml"));
  const std::string id = client->get_string(kPump, "PrescriptionId");
  const std::size_t events = client->events().size();
  std::string bad = slurp_file(example("prescription-flex.yaml"));
  bad.replace(bad.find("2.0 mg/day"), 10, "2.0 mg/h");
  auto p = preview(client->bus(), bad, false, kDayUs, kHourUs);
  EXPECT_EQ(p.error, "org.thecal.Pump1.Error.InvalidPrescription");
  EXPECT_NE(p.message.find(":19:31: basal.steps[1].rate"), std::string::npos) << p.message;
  const std::string flex = slurp_file(example("prescription-flex.yaml"));
  for (const auto& [h, b] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {0, kHourUs}, {181 * kDayUs, kHourUs}, {kDayUs, 59'000'000}, {kDayUs, 0}, {180 * kDayUs, 60'000'000}}) {
    p = preview(client->bus(), flex, false, h, b);
    EXPECT_EQ(p.error, "org.thecal.Pump1.Error.OutOfRange") << h << " / " << b;
  }
  EXPECT_EQ(client->get_string(kPump, "PrescriptionId"), id);
  EXPECT_EQ(state(), "infusing");
  EXPECT_EQ(client->events().size(), events);
}

TEST_F(PreviewApi, AnyLocalUserMayPreviewThroughThecalctl) {
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-flex.yaml"));
  const std::string svg = dir.path() + "/preview.svg";
  auto r = ctl({"preview", example("prescription-trial.yaml"), "--days", "10", "--with-boluses", "--svg", svg}, nobody->pw_uid);
  // nobody cannot write in the test's directory: the summary is printed, the file refused.
  EXPECT_NE(r.out.find("Daily mass at the tip"), std::string::npos) << r.out << r.err;
  r = ctl({"preview", example("prescription-trial.yaml"), "--days", "10", "--with-boluses", "--svg", svg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The trial solution is 1 mg/mL after 10 mg/mL: the bridge shows, and the daily mass drops.
  EXPECT_NE(r.out.find("Bridge"), std::string::npos);
  EXPECT_NE(r.out.find("WARNING"), std::string::npos) << r.out;
  const std::string plot = slurp_file(svg);
  EXPECT_EQ(plot.rfind("<svg", 0), 0u);
  EXPECT_NE(plot.find("<polyline"), std::string::npos);
  // Invalid: exit 6, as load.
  r = ctl({"preview", example("thecald-sim.yaml")}, nobody->pw_uid);
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  // load with stdin not a terminal: loaded at once, as before (scripts).
  r = ctl({"load", example("prescription-flex.yaml")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(PreviewApi, LoadOnATerminalShowsThePreviewAndLoadsOnlyOnYes) {
  // A real terminal: util-linux script(1) runs thecalctl on a pty and feeds it the answer.
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-continuous.yaml"));
  const std::string id = client->get_string(kPump, "PrescriptionId");
  auto on_tty = [&](const char* answer) {
    const std::string cmd = thecalctl_path() + " --address " + bus->address() + " load " + example("prescription-flex.yaml");
    return run({"/bin/sh", "-c", std::string("printf '") + answer + "\\n' | script -qec '" + cmd + "' /dev/null"});
  };
  auto r = on_tty("n");
  EXPECT_NE(r.out.find("Daily mass at the tip"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("Not loaded: nothing changed."), std::string::npos) << r.out;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(client->get_string(kPump, "PrescriptionId"), id);
  r = on_tty("y");
  EXPECT_NE(r.out.find("Loaded prescription"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(client->get_string(kPump, "PrescriptionId"), id);
}

/// "1.43 mg" / "950 mcg" at the start of `text`, in mcg; NaN if it is neither.
double mass_mcg(const std::string& text) {
  double v = 0;
  char unit[8] = {};
  if (std::sscanf(text.c_str(), " %lf %7s", &v, unit) != 2) return NAN;
  if (std::string(unit) == "mg") return v * 1000;
  if (std::string(unit) == "mcg") return v;
  return NAN;
}

// Issue 16: on an admixture, load's old-versus-new summary has one line per drug, its highest
// rolling 24 h against its own limit on each side.  The expected figures are computed here:
// PreviewPrescription's primary-drug rolling 24 h (the same call thecalctl makes) times the
// concentration ratio written in each prescription, against the limit written there.
TEST_F(PreviewApi, LoadsSummaryShowsEachDrugOfAnAdmixtureAgainstItsLimit) {
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-admixture.yaml"));
  const std::string id = client->get_string(kPump, "PrescriptionId");
  // The new one: bupivacaine 5 mg/mL (from 7.5) with a limit of 3 mg (from 4).
  std::string text = slurp_file(example("prescription-admixture.yaml"));
  const std::string old_line = "{ name: bupivacaine, concentration: 7.5 mg/mL, max_daily_dose: 4 mg }";
  ASSERT_NE(text.find(old_line), std::string::npos);
  text.replace(text.find(old_line), old_line.size(), "{ name: bupivacaine, concentration: 5 mg/mL, max_daily_dose: 3 mg }");
  const std::string file = dir.path() + "/weaker-bupivacaine.yaml";
  std::ofstream(file) << text;

  const std::string cmd = thecalctl_path() + " --address " + bus->address() + " load " + file;
  const auto r = run({"/bin/sh", "-c", "printf 'n\\n' | script -qec '" + cmd + "' /dev/null"});
  EXPECT_NE(r.out.find("Not loaded: nothing changed."), std::string::npos) << r.out << r.err;
  EXPECT_EQ(client->get_string(kPump, "PrescriptionId"), id);
  ASSERT_NE(r.out.find("Rolling 24 h by drug"), std::string::npos) << r.out;

  // What thecalctl load asks for: every allowed patient bolus, 90 days, 15-minute buckets.
  auto highest = [&](const std::string& yaml) {
    const auto p = preview(client->bus(), yaml, true, 90 * kDayUs, 15 * 60'000'000ULL);
    EXPECT_EQ(p.error, "") << p.message;
    double m = 0;
    for (const auto& b : p.buckets) m = std::max(m, b.rolling);
    return m;
  };
  const double old_morphine = highest("");
  const double new_morphine = highest(text);
  ASSERT_GT(old_morphine, 1500.0);  // 1.5 mg/day of basal and the patient boluses
  struct Expect {
    const char* drug;
    double old_mcg, old_limit, new_mcg, new_limit;
  };
  const Expect expected[] = {
      {"morphine", old_morphine, 3000, new_morphine, 3000},
      {"bupivacaine", old_morphine * 7.5 / 10, 4000, new_morphine * 5 / 10, 3000},
  };
  for (const auto& e : expected) {
    // "  <drug>" padded to 34, the old side padded to 38, then the new side (as the other rows).
    const std::string label = std::string("  ") + e.drug;
    const auto at = r.out.find("\n" + label + " ");
    ASSERT_NE(at, std::string::npos) << e.drug << "\n" << r.out;
    const std::string row = r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1);
    ASSERT_GT(row.size(), 35u + 38u) << row;
    const std::string old_side = row.substr(35, 38);
    const std::string new_side = row.substr(35 + 38);
    auto check = [&](const std::string& side, double mcg, double limit, const char* which) {
      // "X of Y (Z %)", X and Y with three significant digits.
      const auto of = side.find(" of ");
      ASSERT_NE(of, std::string::npos) << which << ": " << row;
      EXPECT_NEAR(mass_mcg(side), mcg, 0.01 * mcg) << which << ": " << row;
      EXPECT_NEAR(mass_mcg(side.substr(of + 4)), limit, 1e-9) << which << ": " << row;
      const auto pct = side.find('(');
      ASSERT_NE(pct, std::string::npos) << which << ": " << row;
      EXPECT_NEAR(std::atof(side.c_str() + pct + 1), 100.0 * mcg / limit, 1.0) << which << ": " << row;
    };
    check(old_side, e.old_mcg, e.old_limit, "old");
    check(new_side, e.new_mcg, e.new_limit, "new");
  }
}

TEST_F(PreviewApi, AFloodOfPreviewsDelaysNeitherTheBusNorTheLoop) {
  ASSERT_NO_FATAL_FAILURE(infusing("prescription-continuous.yaml"));
  const std::string flex = slurp_file(example("prescription-flex.yaml"));
  const std::uint64_t cycles0 = client->get_u64(kDiag, "LoopCycles");
  const std::uint64_t overruns0 = client->get_u64(kDiag, "Overruns");
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done{0}, busy{0}, other{0};
  std::vector<std::thread> flooders;
  for (int t = 0; t < 4; ++t) {
    flooders.emplace_back([&] {
      Client c(bus->address());
      while (!stop.load()) {
        const auto p = preview(c.bus(), flex, true, 180 * kDayUs, kHourUs);
        if (p.error.empty() && p.buckets.size() == 180 * 24) ++done;
        else if (p.error == "org.thecal.Pump1.Error.InvalidState") ++busy;
        else ++other;
      }
    });
  }
  // Until the loop has run 3,000 more cycles and 6 previews of 180 days came back, every
  // property read answering on the way (a deadline, not a duration).
  std::uint64_t reads = 0;
  std::chrono::nanoseconds slowest{0};
  const bool went_on = wait_until(
      [&] {
        const auto t0 = std::chrono::steady_clock::now();
        const auto cycles = client->get_u64(kDiag, "LoopCycles");
        (void)client->get_double(kPump, "ReservoirUl");
        slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
        ++reads;
        return cycles - cycles0 >= 3000 && done.load() >= 6;
      },
      240'000);
  stop = true;
  for (auto& t : flooders) t.join();
  ASSERT_TRUE(went_on) << "cycles " << client->get_u64(kDiag, "LoopCycles") - cycles0 << ", previews " << done.load();
  EXPECT_EQ(other.load(), 0u);
  EXPECT_EQ(state(), "infusing");
  RecordProperty("previews_done", std::to_string(done.load()));
  RecordProperty("previews_refused_busy", std::to_string(busy.load()));
  RecordProperty("property_reads", std::to_string(reads));
  RecordProperty("slowest_property_read_us", std::to_string(slowest.count() / 1000));
  RecordProperty("loop_overruns_during_flood", std::to_string(client->get_u64(kDiag, "Overruns") - overruns0));
  std::cout << "flood: " << done.load() << " previews of 180 days, " << busy.load() << " refused (two at a time), "
            << reads << " property reads, slowest " << slowest.count() / 1000 << " us, overruns "
            << client->get_u64(kDiag, "Overruns") - overruns0 << "\n";
}

}  // namespace
}  // namespace thecal::test
