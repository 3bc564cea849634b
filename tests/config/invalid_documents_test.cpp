// The table of invalid documents: each one must be refused with exactly these problems,
// each with its file:line:column, key path and message.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "tests/config/test_util.hpp"

namespace thecal::config {
namespace {

enum class Kind { prescription, drugs, daemon };

struct Case {
  std::string name;
  Kind kind;
  std::string text;
  std::vector<std::string> expected;
};

std::ostream& operator<<(std::ostream& o, const Case& c) { return o << c.name; }

// Replaces the first `from` in `base` (which must be there) by `to`.
std::string with(std::string base, const std::string& from, const std::string& to) {
  const auto pos = base.find(from);
  if (pos == std::string::npos) throw std::logic_error("test edit not found: " + from);
  base.replace(pos, from.size(), to);
  return base;
}

const std::string kContinuous = R"(version: 1
patient: BENCH-001
phase: maintenance
drug:
  name: morphine
  concentration: 10 mg/mL
reservoir:
  capacity: 20 mL
  low_alarm: 2 mL
catheter:
  volume: 0.22 mL
timezone: Europe/Berlin
basal:
  mode: continuous
  rate: 1.5 mg/day
  periodic:
    - { at: "12:00", dose: 0.1 mg, duration: 30 min }
patient_bolus:
  dose: 0.1 mg
  duration: 10 min
  lockout: 3 h
  max_per_day: 4
limits:
  max_daily_dose: 3 mg
)";

const std::string kFlex = R"(version: 1
patient: BENCH-003
phase: maintenance
drug: { name: morphine, concentration: 10 mg/mL }
reservoir: { capacity: 20 mL, low_alarm: 2 mL }
catheter: { volume: 0.22 mL }
timezone: Europe/Berlin
basal:
  mode: flex
  steps:
    - { start: "00:00", rate: 1.0 mg/day }
    - { start: "08:00", rate: 2.0 mg/day }
    - { start: "20:00", rate: 1.2 mg/day }
limits:
  max_daily_dose: 3 mg
)";

const std::string kTrial = with(kContinuous, "phase: maintenance\n",
                                "phase: trial\ntrial:\n  ends: 2026-11-28T09:00:00+01:00\n");

// kContinuous with an admixture (issue 16): 2 mg of morphine a day at 10 mg/mL brings
// 1 mg of bupivacaine at 5 mg/mL.
const std::string kMix = kContinuous + R"(admixture:
  - name: bupivacaine
    concentration: 5 mg/mL
    max_daily_dose: 5 mg
)";

const std::string kDrugs = R"(version: 1
drugs:
  - name: morphine
    aliases: [Infumorph]
    max_concentration: { value: 20 mg/mL, source: "PACC2012", verified: false }
    hard_max_daily: { value: 15 mg, source: "PACC2012", verified: false }
    soft_max_daily: { value: 10 mg, source: "label", verified: true }
  - name: ziconotide
    aliases: [Prialt]
    max_concentration: { value: 100 mcg/mL, source: "label", verified: true }
    hard_max_daily: { value: 19.2 mcg, source: "label", verified: true }
    soft_max_daily: { value: 19.2 mcg, source: "label", verified: true }
)";

const std::string kSim = R"(backend: sim
paths:
  prescription: /var/lib/thecal/prescription.yaml
  drugs: /usr/share/thecal/drugs.yaml
  state: /var/lib/thecal
loop:
  period: 1 ms
  priority: 80
motor:
  volume_per_step: 0.25 uL
  max_steps_per_second: 400
  steps_per_encoder_pulse: 8
  stall_pulses: 3
  prime_rate: 1 mL/h
sim:
  time_scale: 1
battery:
  capacity: 10 Ah
  use_per_step: 0.05 mAs
  use_per_hour: 1 mAh
  eri: 15 %
  eos: 5 %
)";

const std::string kGpiod = with(with(kSim, "backend: sim", "backend: gpiod"), "sim:\n  time_scale: 1\n", R"(gpio:
  chip: gpiochip0
  lines:
    step:         { line: 17 }
    dir:          { line: 27 }
    enable:       { line: 22, active_low: true }
    heartbeat:    { line: 12 }
    buzzer:       { line: 16 }
    fault:        { line: 23, active_low: true, bias: pull-up }
    encoder:      { line: 24 }
    occlusion:    { line: 5 }
    disconnect:   { line: 6 }
    bolus_button: { line: 26, active_low: true, bias: pull-up, debounce: 20 ms }
    low_battery:  { line: 13, active_low: true }
)");

Case P(std::string name, std::string text, std::vector<std::string> expected) {
  return Case{std::move(name), Kind::prescription, std::move(text), std::move(expected)};
}
Case D(std::string name, std::string text, std::vector<std::string> expected) {
  return Case{std::move(name), Kind::drugs, std::move(text), std::move(expected)};
}
Case B(std::string name, std::string text, std::vector<std::string> expected) {
  return Case{std::move(name), Kind::daemon, std::move(text), std::move(expected)};
}

std::vector<Case> cases() {
  const std::string& C = kContinuous;
  const std::string& F = kFlex;
  const std::string& M = kMix;
  return {
#include "tests/config/invalid_documents.inc"
  };
}

Problems run(const Case& c) {
  switch (c.kind) {
    case Kind::prescription: {
      const LoadedPrescription r = parse_prescription(c.text, "p.yaml", test::context());
      EXPECT_FALSE(r.plan.has_value());
      return r.problems;
    }
    case Kind::drugs: {
      const LoadedDrugLibrary r = parse_drug_library(c.text, "drugs.yaml");
      EXPECT_FALSE(r.library.has_value());
      return r.problems;
    }
    case Kind::daemon: {
      const LoadedDaemonConfig r = parse_daemon_config(c.text, "thecald.yaml");
      EXPECT_FALSE(r.config.has_value());
      return r.problems;
    }
  }
  return {};
}

class InvalidDocument : public ::testing::TestWithParam<Case> {};

TEST_P(InvalidDocument, IsRefusedWithExactlyTheseProblems) {
  const Case& c = GetParam();
  const Problems problems = run(c);
  std::vector<std::string> got;
  for (const Problem& p : problems) got.push_back(p.format());
  EXPECT_EQ(got, c.expected) << "case " << c.name << "\n" << test::dump(problems);
  if (std::getenv("THECAL_PRINT_ACTUAL") != nullptr) {
    std::printf("@@%s", c.name.c_str());
    for (const std::string& g : got) std::printf("\t%s", g.c_str());
    std::printf("\n");
  }
  for (const Problem& p : problems) {
    EXPECT_GT(p.line, 0) << p.format();
    EXPECT_GT(p.column, 0) << p.format();
  }
}

INSTANTIATE_TEST_SUITE_P(Table, InvalidDocument, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(InvalidDocuments, TableHasAtLeastSixty) { EXPECT_GE(cases().size(), 60U); }

TEST(InvalidDocuments, AtLeastTwentyAboutTheAdmixture) {
  std::size_t n = 0;
  for (const Case& c : cases()) n += c.name.rfind("Admix", 0) == 0 ? 1 : 0;
  EXPECT_GE(n, 20U);
}

TEST(ValidDocuments, BasesAreValid) {
  for (const std::string& text : {kContinuous, kFlex, kTrial, kMix}) {
    const LoadedPrescription r = parse_prescription(text, "p.yaml", test::context());
    EXPECT_TRUE(r.plan.has_value()) << test::dump(r.problems);
  }
  EXPECT_TRUE(parse_drug_library(kDrugs, "d.yaml").library.has_value());
  const auto sim = parse_daemon_config(kSim, "t.yaml");
  EXPECT_TRUE(sim.config.has_value()) << test::dump(sim.problems);
  const auto gpiod = parse_daemon_config(kGpiod, "t.yaml");
  EXPECT_TRUE(gpiod.config.has_value()) << test::dump(gpiod.problems);
}

TEST(ValidDocuments, SoftLimitOverride) {
  const std::string text =
      with(kContinuous, "max_daily_dose: 3 mg", "max_daily_dose: 12 mg\n  override_soft_limit: true");
  const LoadedPrescription r = parse_prescription(text, "p.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << test::dump(r.problems);
  EXPECT_DOUBLE_EQ(to_mg(r.plan->max_daily_dose), 12.0);
}

TEST(ValidDocuments, AdmixtureIsCompiledIntoThePlan) {
  const std::string text = with(kMix, "max_daily_dose: 5 mg\n", "max_daily_dose: 5 mg\n  - { name: Duraclon, concentration: 50 mcg/mL, max_daily_dose: 300 mcg }\n");
  const LoadedPrescription r = parse_prescription(text, "p.yaml", test::context());
  ASSERT_TRUE(r.plan.has_value()) << test::dump(r.problems);
  ASSERT_EQ(r.plan->admixture.size(), 2U);
  EXPECT_EQ(r.plan->admixture[0].name.view(), "bupivacaine");
  EXPECT_DOUBLE_EQ(to_mcg_per_mL(r.plan->admixture[0].concentration), 5000.0);
  EXPECT_DOUBLE_EQ(to_mcg(r.plan->admixture[0].max_daily_dose), 5000.0);
  EXPECT_EQ(r.plan->admixture[1].name.view(), "clonidine");  // the library's name for the alias
  EXPECT_DOUBLE_EQ(to_mcg(r.plan->admixture[1].max_daily_dose), 300.0);
  // The summary shows each drug's planned daily mass against its own limit.
  const std::string sum = summarize(*r.plan, test::context().board);
  EXPECT_NE(sum.find("bupivacaine with it: 1 mg of max_daily_dose 5 mg (20 %)"), std::string::npos) << sum;
  EXPECT_NE(sum.find("clonidine with it: 10 mcg of max_daily_dose 300 mcg"), std::string::npos) << sum;
}

}  // namespace
}  // namespace thecal::config
