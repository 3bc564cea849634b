// Every shipped file loads: config/drugs.yaml and everything in examples/.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "tests/config/test_util.hpp"

namespace thecal::config {
namespace {

using test::dump;
using test::source_dir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DrugLibraryFile, ShippedLibraryLoads) {
  const LoadedDrugLibrary r = load_drug_library(source_dir() + "/config/drugs.yaml");
  ASSERT_TRUE(r.library.has_value()) << dump(r.problems);
  const DrugLibrary& lib = *r.library;
  for (const char* name : {"morphine", "hydromorphone", "fentanyl", "sufentanil", "ziconotide", "bupivacaine",
                           "clonidine", "baclofen"}) {
    const Drug* d = lib.find(name);
    ASSERT_NE(d, nullptr) << name;
    EXPECT_EQ(d->name, name);
    EXPECT_LE(d->soft_max_daily, d->hard_max_daily) << name;
    EXPECT_FALSE(d->source.empty()) << name;
  }
  EXPECT_EQ(lib.drugs.size(), 8U);
  // The figures, each in the drug's own scale (mg vs mcg is the classic 1000x error).
  const Drug* m = lib.find("MORPHINE");
  ASSERT_NE(m, nullptr);
  EXPECT_DOUBLE_EQ(to_mg_per_mL(m->max_concentration), 20.0);
  EXPECT_DOUBLE_EQ(to_mg(m->hard_max_daily), 15.0);
  EXPECT_DOUBLE_EQ(to_mg(m->soft_max_daily), 10.0);
  EXPECT_FALSE(m->verified);
  EXPECT_NE(m->source.find("(unverified)"), std::string::npos);
  const Drug* z = lib.find("Prialt");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->name, "ziconotide");
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(z->max_concentration), 100.0);
  EXPECT_DOUBLE_EQ(to_mcg(z->hard_max_daily), 19.2);
  const Drug* b = lib.find("baclofen");
  ASSERT_NE(b, nullptr);
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(b->max_concentration), 2000.0);
  EXPECT_DOUBLE_EQ(to_mcg(b->hard_max_daily), 1000.0);
  EXPECT_DOUBLE_EQ(to_mcg(b->soft_max_daily), 800.0);
  EXPECT_TRUE(b->verified);
  EXPECT_DOUBLE_EQ(to_mcg(lib.find("fentanyl")->hard_max_daily), 75.0);
  EXPECT_DOUBLE_EQ(to_mcg(lib.find("sufentanil")->hard_max_daily), 100.0);
  EXPECT_DOUBLE_EQ(to_mg(lib.find("hydromorphone")->hard_max_daily), 10.0);
  EXPECT_DOUBLE_EQ(to_mg(lib.find("bupivacaine")->hard_max_daily), 10.0);
  EXPECT_DOUBLE_EQ(to_mcg(lib.find("clonidine")->hard_max_daily), 600.0);
  EXPECT_EQ(lib.find("aspirin"), nullptr);
}

// Each example file, by kind; a new file in examples/ must be listed here.
TEST(Examples, EveryExampleLoads) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(source_dir() + "/examples")) {
    const std::string path = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".yaml") continue;
    ++seen;
    if (name.rfind("thecald-", 0) == 0) {
      const LoadedDaemonConfig r = load_daemon_config(path);
      EXPECT_TRUE(r.config.has_value()) << name << "\n" << dump(r.problems);
    } else if (name.rfind("prescription-", 0) == 0) {
      // Loaded as the daemon would, at the real time now.
      const std::string text = slurp(path);
      const LoadedPrescription r = parse_prescription(text, name, test::context(test::real_now()));
      ASSERT_TRUE(r.plan.has_value()) << name << "\n" << dump(r.problems);
      EXPECT_EQ(std::string(r.plan->id.view()).size(), 64U);
      EXPECT_FALSE(summarize(*r.plan, BoardParams{}).empty());
    } else {
      ADD_FAILURE() << "unknown kind of example: " << name;
    }
  }
  EXPECT_EQ(seen, 7);
}

TEST(Examples, AdmixtureCompilesToThePlan) {
  const std::string text = slurp(source_dir() + "/examples/prescription-admixture.yaml");
  const LoadedPrescription r = parse_prescription(text, "prescription-admixture.yaml", test::context(test::real_now()));
  ASSERT_TRUE(r.plan.has_value()) << dump(r.problems);
  EXPECT_EQ(r.plan->drug.view(), "morphine");
  ASSERT_EQ(r.plan->admixture.size(), 1U);
  EXPECT_EQ(r.plan->admixture[0].name.view(), "bupivacaine");
  EXPECT_DOUBLE_EQ(to_mg_per_mL(r.plan->admixture[0].concentration), 7.5);
  EXPECT_DOUBLE_EQ(to_mg(r.plan->admixture[0].max_daily_dose), 4.0);
}

TEST(Examples, FlexCompilesToThePlan) {
  const std::string text = slurp(source_dir() + "/examples/prescription-flex.yaml");
  const LoadedPrescription r = parse_prescription(text, "flex.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << dump(r.problems);
  const TherapyPlan& p = *r.plan;
  EXPECT_EQ(p.patient.view(), "BENCH-003");
  EXPECT_EQ(p.phase, Phase::maintenance);
  EXPECT_FALSE(p.trial_ends.has_value());
  EXPECT_EQ(p.drug.view(), "morphine");
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(p.concentration), 10000.0);
  EXPECT_DOUBLE_EQ(to_uL(p.reservoir_capacity), 20000.0);
  EXPECT_DOUBLE_EQ(to_uL(p.low_alarm), 2000.0);
  EXPECT_DOUBLE_EQ(to_uL(p.catheter_volume), 220.0);
  EXPECT_EQ(p.timezone.view(), "Europe/Berlin");
  EXPECT_EQ(p.basal_mode, BasalMode::flex);
  ASSERT_EQ(p.flex_steps.size(), 3U);
  EXPECT_EQ(p.flex_steps[0].start, Duration{0});
  EXPECT_EQ(p.flex_steps[1].start, hours(8));
  EXPECT_EQ(p.flex_steps[2].start, hours(20));
  EXPECT_DOUBLE_EQ(to_mcg_per_day(p.flex_steps[0].rate), 1000.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_day(p.flex_steps[1].rate), 2000.0);
  EXPECT_DOUBLE_EQ(to_mcg_per_day(p.flex_steps[2].rate), 1200.0);
  ASSERT_EQ(p.periodic.size(), 1U);
  EXPECT_EQ(p.periodic[0].at, hours(12));
  EXPECT_DOUBLE_EQ(to_mcg(p.periodic[0].dose), 100.0);
  EXPECT_EQ(p.periodic[0].duration, minutes(30));
  ASSERT_TRUE(p.patient_bolus.has_value());
  EXPECT_DOUBLE_EQ(to_mcg(p.patient_bolus->dose), 100.0);
  EXPECT_EQ(p.patient_bolus->duration, minutes(10));
  EXPECT_EQ(p.patient_bolus->lockout, hours(3));
  EXPECT_EQ(p.patient_bolus->max_per_day, 4U);
  EXPECT_DOUBLE_EQ(to_mcg(p.max_daily_dose), 3000.0);
  EXPECT_GE(p.utc_offsets.size(), 2U);
}

TEST(Examples, TrialEndsInTheFutureOrIsRefused) {
  std::string text = slurp(source_dir() + "/examples/prescription-trial.yaml");
  // Rewritten to end three days after the test's "now", in Berlin winter time.
  const std::string old_end = "2035-06-01T09:00:00+02:00";
  const auto pos = text.find(old_end);
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, old_end.size(), "2026-11-28T09:00:00+01:00");
  LoadedPrescription r = parse_prescription(text, "trial.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << dump(r.problems);
  EXPECT_EQ(r.plan->phase, Phase::trial);
  ASSERT_TRUE(r.plan->trial_ends.has_value());
  EXPECT_EQ(to_usec(*r.plan->trial_ends), to_usec(test::kTestNow) + to_usec(days(2) + hours(20)));
  // Four days later, the same text is refused.
  r = parse_prescription(text, "trial.yaml", test::context(test::kTestNow + days(4)));
  ASSERT_FALSE(r.plan.has_value());
  ASSERT_EQ(r.problems.size(), 1U) << dump(r.problems);
  EXPECT_EQ(r.problems[0].format(),
            "trial.yaml:11:9: trial.ends: the trial end \"2026-11-28T09:00:00+01:00\" is not in the future");
}

TEST(Examples, IdIsTheSha256OfTheExactText) {
  const std::string text = slurp(source_dir() + "/examples/prescription-continuous.yaml");
  const LoadedPrescription a = parse_prescription(text, "a", test::context());
  const LoadedPrescription b = parse_prescription(text + "\n", "b", test::context());
  ASSERT_TRUE(a.plan && b.plan);
  EXPECT_NE(a.plan->id, b.plan->id);  // one more byte: another prescription text
}

TEST(Summary, FlexExample) {
  const std::string text = slurp(source_dir() + "/examples/prescription-flex.yaml");
  const LoadedPrescription r = parse_prescription(text, "flex.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << dump(r.problems);
  const std::string s = summarize(*r.plan, BoardParams{});
  const std::string expected = "Prescription " + std::string(r.plan->id.view()) + " for patient BENCH-003\n" +
      R"(Phase:      maintenance
Drug:       morphine 10 mg/mL (10000 mcg/mL)
Basal:      flex (Europe/Berlin local time): 00:00 1 mg/day, 08:00 2 mg/day, 20:00 1.2 mg/day
Periodic:   100 mcg at 12:00 over 30 min
Patient:    bolus of 100 mcg over 10 min, lockout 3 h, at most 4 per 24 h
Daily mass by source (the most the plan can give in 24 h):
  basal              1.53333 mg
  periodic doses     100 mcg
  patient boluses    400 mcg
  total              2.03333 mg of max_daily_dose 3 mg (67.7778 %)
Volume:     153.333 uL/day basal, 203.333 uL/day with every periodic and patient dose
Reservoir:  20 mL, low alarm at 2 mL: 88.5246 days to the low alarm with every dose taken, 117.391 on basal only
Catheter:   220 uL dead volume; priming at 1000 uL/h takes 13.2 min
Pump:       0.25 uL per step; basal needs 613.333 steps/day
)";
  EXPECT_EQ(s, expected);
}

TEST(Summary, ZiconotideNamesItsStabilityInTheReservoir) {
  const std::string text = slurp(source_dir() + "/examples/prescription-ziconotide.yaml");
  const LoadedPrescription r = parse_prescription(text, "z.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << dump(r.problems);
  EXPECT_EQ(r.plan->max_in_reservoir, days(40));
  const std::string s = summarize(*r.plan, BoardParams{});
  EXPECT_NE(s.find("Stability:  40 days in the reservoir (drug library max_days_in_reservoir): refill by then"),
            std::string::npos)
      << s;
  // Morphine has no stability figure in the shipped library: no such line.
  const LoadedPrescription m =
      parse_prescription(slurp(source_dir() + "/examples/prescription-continuous.yaml"), "m.yaml", test::context());
  ASSERT_TRUE(m.plan.has_value());
  EXPECT_EQ(m.plan->max_in_reservoir, Duration{0});
  EXPECT_EQ(summarize(*m.plan, BoardParams{}).find("Stability"), std::string::npos);
}

}  // namespace
}  // namespace thecal::config
