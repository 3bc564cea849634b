// app::PumpService without a bus: the calls D-Bus makes, with the caller's identity and
// typed arguments, on a synchronous dosing core.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "config/sha256.hpp"
#include "tests/app/service_fixture.hpp"

namespace thecal::test {
namespace {

using app::ErrorCode;

TEST(PumpService, LoadStoresThePrescriptionAndRepliesItsIdOnlyOnceTheCoreTookIt) {
  Unit u;
  const std::string yaml = continuous_yaml();
  const auto r = u.call([&](auto done) { u.service->load_prescription(clinician(1234), yaml, done); });
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(r.text, config::sha256_hex(yaml));
  EXPECT_EQ(std::string(u.service->status().prescription_id.view()), r.text);
  EXPECT_EQ(io::read_file(u.dir.path + "/prescription.yaml"), yaml);
  EXPECT_FALSE(io::read_file(u.dir.path + "/prescription.yaml.tmp").has_value());
  const auto ev = u.service->events(0, 100).value;
  const bool logged = std::any_of(ev.begin(), ev.end(), [](const auto& e) {
    return e.type == "prescription_loaded" && e.who == "uid=1234";
  });
  EXPECT_TRUE(logged);
}

TEST(PumpService, AnInvalidPrescriptionIsRefusedWithEveryProblemAndChangesNothing) {
  Unit u;
  ASSERT_TRUE(u.call([&](auto done) { u.service->load_prescription(clinician(), continuous_yaml(), done); }).ok());
  const std::string bad = continuous_yaml("1.5 mg", "bogus: 1\n");
  const auto r = u.call([&](auto done) { u.service->load_prescription(clinician(), bad, done); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, ErrorCode::invalid_prescription);
  EXPECT_NE(r.error->message.find("basal.rate"), std::string::npos) << r.error->message;
  EXPECT_NE(r.error->message.find("bogus"), std::string::npos) << r.error->message;
  EXPECT_EQ(io::read_file(u.dir.path + "/prescription.yaml"), continuous_yaml());
  EXPECT_EQ(u.service->validate_prescription(bad).size(), 2U);
  EXPECT_TRUE(u.service->validate_prescription(continuous_yaml()).empty());
  const auto empty = u.call([&](auto done) { u.service->load_prescription(clinician(), "", done); });
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error->code, ErrorCode::invalid_prescription);
}

TEST(PumpService, ArgumentsOutOfRangeAreRefusedBeforeTheDosingThreadSeesThem) {
  Unit u;
  u.ready(continuous_yaml(), false);
  const auto issued = u.service->status().steps_issued;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto& s = *u.service;
  const auto refused = [&](const std::function<void(app::Completion)>& f) {
    std::optional<app::CallResult> got;
    f([&](const app::CallResult& r) { got = r; });  // completes at once, no cycle needed
    EXPECT_TRUE(got.has_value());
    return got ? got->error.value_or(app::Error{}).code : ErrorCode::invalid_state;
  };
  EXPECT_EQ(refused([&](auto d) { s.prime(clinician(), uL(nan), d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.prime(clinician(), uL(-1), d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.clinician_bolus(clinician(), mcg(0), minutes(1), d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.clinician_bolus(clinician(), mcg(10), hours(24 * 8), d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.suspend(clinician(), hours(24 * 366), d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.refill(clinician(), uL(-1), mL(1), "", d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.refill(clinician(), uL(0), uL(nan), "", d); }), ErrorCode::out_of_range);
  EXPECT_EQ(refused([&](auto d) { s.acknowledge_alarm(clinician(), "no_such_alarm", d); }), ErrorCode::out_of_range);
  EXPECT_FALSE(s.busy());
  u.run(seconds(5));
  EXPECT_EQ(u.service->status().steps_issued, issued);
  EXPECT_EQ(u.service->status().state, PumpState::idle);
}

TEST(PumpService, OnlyAClinicianAcknowledgesAHighAlarm) {
  Unit u;
  u.ready(continuous_yaml());
  u.loop.h.in.occlusion = true;
  u.run(seconds(3));
  ASSERT_TRUE(u.alarm(AlarmCode::occlusion));
  ASSERT_EQ(u.service->status().state, PumpState::stopped);
  const auto by_patient = u.call([&](auto d) { u.service->acknowledge_alarm(patient(), "occlusion", d); });
  ASSERT_FALSE(by_patient.ok());
  EXPECT_EQ(by_patient.error->code, ErrorCode::access_denied);
  EXPECT_TRUE(u.call([&](auto d) { u.service->acknowledge_alarm(clinician(), "occlusion", d); }).ok());
  ASSERT_FALSE(u.heard.raised.empty());
  EXPECT_EQ(u.heard.raised.back().first, AlarmCode::occlusion);
}

TEST(PumpService, TheCoreRefusalBecomesItsNamedErrorAndNothingChanges) {
  Unit u;
  u.ready(bolus_yaml());
  auto& s = *u.service;
  const auto first = u.call([&](auto d) { s.request_bolus(patient(), d); });
  ASSERT_TRUE(first.ok()) << first.error->message;
  EXPECT_DOUBLE_EQ(to_mcg(first.dose), 100.0);
  EXPECT_GT(to_usec(first.ends), to_usec(u.loop.h.now.wall));
  EXPECT_EQ(u.heard.boluses_started, 1);
  const auto second = u.call([&](auto d) { s.request_bolus(patient(), d); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error->code, ErrorCode::lockout_active);
  EXPECT_EQ(s.status().patient_boluses_24h, 1U);
}

TEST(PumpService, AFullQueueRefusesTheCallAndDiscardsTheStagedPrescription) {
  Unit u;
  u.loop.hold_queue_full();
  std::optional<app::CallResult> got;
  u.service->load_prescription(clinician(), continuous_yaml(), [&](const app::CallResult& r) { got = r; });
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->error->code, ErrorCode::invalid_state);
  EXPECT_FALSE(io::read_file(u.dir.path + "/prescription.yaml.tmp").has_value());
  EXPECT_FALSE(io::read_file(u.dir.path + "/prescription.yaml").has_value());
  u.loop.drop_queue();
}

TEST(PumpService, StartUpSettlesOnceTheFirstStatusAndEveryOwnCommandAreIn) {
  Unit u;
  ASSERT_FALSE(io::write_atomic(u.dir.path + "/prescription.yaml", continuous_yaml()));
  u.service->raise_alarm(AlarmCode::restart);
  u.service->load_stored_prescription();
  EXPECT_FALSE(u.service->settled());
  int cycles = 0;
  while (!u.service->settled() && cycles < 100) {
    u.loop.cycle(msec(1));
    u.service->poll();
    ++cycles;
  }
  ASSERT_TRUE(u.service->settled());
  EXPECT_TRUE(u.alarm(AlarmCode::restart));
  EXPECT_EQ(std::string(u.service->status().prescription_id.view()), config::sha256_hex(continuous_yaml()));
}

TEST(PumpService, AStoredPrescriptionThatIsNotValidRaisesPrescriptionRejected) {
  Unit u;
  ASSERT_FALSE(io::write_atomic(u.dir.path + "/prescription.yaml", "version: 1\n"));
  u.service->load_stored_prescription();
  u.run(msec(5), msec(1));
  EXPECT_TRUE(u.alarm(AlarmCode::prescription_rejected));
  EXPECT_EQ(u.logged("prescription_rejected"), 1U);
  EXPECT_FALSE(u.service->status().has_prescription);
}

TEST(PumpService, ARefillDiscrepancyCarriesItsFiguresInTheAlarmText) {
  Unit u;
  u.ready(continuous_yaml());
  u.run(hours(24), minutes(1));
  ASSERT_TRUE(u.call([&](auto d) { u.service->suspend(clinician(), Duration{0}, d); }).ok());
  // About 1.5 mL were pumped from 20 mL: the clinician measures far too little.
  const auto r = u.call([&](auto d) { u.service->refill(clinician(), mL(10), mL(20), "", d); });
  ASSERT_TRUE(r.ok()) << r.error->message;
  u.run(seconds(2));
  ASSERT_TRUE(u.alarm(AlarmCode::refill_discrepancy));
  const std::string text = u.service->alarm_text(AlarmCode::refill_discrepancy);
  EXPECT_NE(text.find("measured 10000.0 uL"), std::string::npos) << text;
  ASSERT_FALSE(u.heard.raised.empty());
  EXPECT_EQ(u.heard.raised.back().second, text);
  const auto refills = u.service->refill_history(0).value;
  ASSERT_EQ(refills.size(), 2U);
  EXPECT_TRUE(refills.back().discrepancy);
  EXPECT_DOUBLE_EQ(refills.back().withdrawn_ul, 10'000.0);
}

TEST(PumpService, DeliveryHistoryAddsUpToWhatTheCoreCountedAndRefusesBadRanges) {
  Unit u;
  u.ready(continuous_yaml());
  const auto from = static_cast<std::uint64_t>(to_usec(u.loop.h.now.wall));
  const Mass before = u.service->status().total_delivered_mass;
  u.run(hours(2), seconds(10));
  const auto to = static_cast<std::uint64_t>(to_usec(u.loop.h.now.wall)) + 1;
  const auto h = u.service->delivery_history(from - 60'000'000, to, 3'600'000'000ULL);
  ASSERT_TRUE(h.ok());
  double sum = 0;
  for (const auto& b : h.value) sum += b.mcg;
  const double core = to_mcg(u.service->status().total_delivered_mass - before);
  EXPECT_GT(core, 100.0);  // 1.5 mg/day for 2 h is 125 mcg
  EXPECT_NEAR(sum, core, 1e-6);
  EXPECT_EQ(u.service->delivery_history(to, from, 60'000'000).error->code, ErrorCode::out_of_range);
  EXPECT_EQ(u.service->delivery_history(from, to, 0).error->code, ErrorCode::out_of_range);
  EXPECT_EQ(u.service->events(std::numeric_limits<std::uint64_t>::max(), 1).error->code, ErrorCode::out_of_range);
}

// GetDrugDeliveryHistory (issue 16): morphine 1 mg/mL with bupivacaine 0.5 mg/mL.  Each
// drug's buckets add up to its own mass at the tip; after a refill without bupivacaine, the
// old solution still in the line (220 uL: 110 mcg of bupivacaine) is counted as it leaves,
// then nothing; unknown drugs and bad windows are refused with OutOfRange.
TEST(PumpService, DrugDeliveryHistoryCountsEachDrugAsTheSolutionAtTheTip) {
  Unit u;
  const std::string mix = continuous_yaml(
      "1.5 mg/day", "admixture:\n  - { name: bupivacaine, concentration: 0.5 mg/mL, max_daily_dose: 2 mg }\n");
  u.ready(mix);
  auto& s = *u.service;
  const auto from = static_cast<std::uint64_t>(to_usec(u.loop.h.now.wall)) - 60'000'000;
  const Mass before = s.status().total_delivered_mass;
  u.run(hours(2), seconds(10));
  auto to = static_cast<std::uint64_t>(to_usec(u.loop.h.now.wall)) + 1;
  const double morphine = to_mcg(s.status().total_delivered_mass - before);
  ASSERT_GT(morphine, 100.0);  // 1.5 mg/day for 2 h is 125 mcg
  const auto sum = [&](const char* drug, std::uint64_t t1) {
    const auto h = s.drug_delivery_history(drug, from, t1, 3'600'000'000ULL);
    EXPECT_TRUE(h.ok()) << drug;
    double m = 0;
    for (const auto& b : h.value) m += b.mcg;
    return m;
  };
  EXPECT_NEAR(sum("morphine", to), morphine, 1e-6);
  EXPECT_NEAR(sum("bupivacaine", to), 0.5 * morphine, 1e-6);
  // The primary's buckets are GetDeliveryHistory's, volume included.
  const auto all = s.delivery_history(from, to, 600'000'000ULL);
  const auto one = s.drug_delivery_history("morphine", from, to, 600'000'000ULL);
  ASSERT_TRUE(all.ok() && one.ok());
  ASSERT_EQ(all.value.size(), one.value.size());
  for (std::size_t i = 0; i < all.value.size(); ++i) {
    EXPECT_EQ(one.value[i].start_us, all.value[i].start_us);
    EXPECT_NEAR(one.value[i].mcg, all.value[i].mcg, 1e-9);
    EXPECT_EQ(one.value[i].ul, all.value[i].ul);
  }
  // Refused: a drug in neither the solution nor the history, a bad window (as GetDeliveryHistory).
  const auto unknown = s.drug_delivery_history("clonidine", from, to, 60'000'000);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error->code, ErrorCode::out_of_range);
  EXPECT_NE(unknown.error->message.find("clonidine"), std::string::npos) << unknown.error->message;
  EXPECT_EQ(s.drug_delivery_history("", from, to, 60'000'000).error->code, ErrorCode::out_of_range);
  EXPECT_EQ(s.drug_delivery_history("bupivacaine", to, from, 60'000'000).error->code, ErrorCode::out_of_range);
  EXPECT_EQ(s.drug_delivery_history("bupivacaine", from, to, 0).error->code, ErrorCode::out_of_range);
  EXPECT_EQ(s.drug_delivery_history("morphine", 0, 1'000'000'000'000'000ULL, 1).error->code, ErrorCode::out_of_range);

  // A refill with morphine alone: bupivacaine leaves the line over the next 220 uL, then stops.
  const double bupi_before = sum("bupivacaine", to);
  ASSERT_TRUE(u.call([&](auto d) { s.refill(clinician(), s.status().reservoir, mL(20), continuous_yaml(), d); }).ok());
  ASSERT_EQ(s.status().drugs.size(), 1U);
  u.run(hours(8), seconds(10));  // 1500 uL/day: the line turns over in 3.5 h
  to = static_cast<std::uint64_t>(to_usec(u.loop.h.now.wall)) + 1;
  const double after = sum("bupivacaine", to) - bupi_before;
  EXPECT_NEAR(after, 0.5 * 220.0, 0.5 * 0.25 * 2 + 1e-6);  // the old line, within a step or two
  const auto late = s.drug_delivery_history("bupivacaine", to - 3'600'000'000ULL, to, 3'600'000'000ULL);
  ASSERT_TRUE(late.ok()) << "a drug in the kept history stays known";
  EXPECT_EQ(late.value.at(0).mcg, 0.0);
  EXPECT_NEAR(sum("morphine", to), to_mcg(s.status().total_delivered_mass - before), 1e-6);
}

// The per-drug history's bookkeeping: the primary's total runs on across a change of drug;
// an admixture slot's starts again when it takes another drug or a new core counts.
TEST(DeliveryHistory, DrugTotalsFollowTheirPlaceAndThePrimaryRunsOnAcrossAChangeOfDrug) {
  app::DeliveryHistory h;
  constexpr std::int64_t kMin = app::DeliveryHistory::kMinuteUs;
  const std::int64_t t0 = 1'790'000'000LL * 1'000'000 - 1'790'000'000LL * 1'000'000 % kMin;
  h.record_drug_totals(t0, {{"morphine", 100}, {"bupivacaine", 50}, {"", 0}});  // the base
  h.record_drug_totals(t0 + kMin, {{"morphine", 110}, {"bupivacaine", 55}, {"", 0}});
  h.record_drug_totals(t0 + 2 * kMin, {{"hydromorphone", 112}, {"clonidine", 1}, {"ziconotide", 0.25}});
  h.record_drug_totals(t0 + 3 * kMin, {{"hydromorphone", 113}, {"clonidine", 0.5}, {"ziconotide", 0.5}});
  const auto minutes = [&](const char* drug) {
    const auto q = h.query_drug(drug, static_cast<std::uint64_t>(t0), static_cast<std::uint64_t>(t0 + 4 * kMin),
                                static_cast<std::uint64_t>(kMin));
    EXPECT_TRUE(q.has_value());
    std::vector<double> m;
    for (const auto& b : q.value_or(std::vector<app::DeliveryHistory::Bucket>{})) m.push_back(b.mcg);
    return m;
  };
  EXPECT_EQ(minutes("morphine"), (std::vector<double>{0, 10, 0, 0}));
  EXPECT_EQ(minutes("bupivacaine"), (std::vector<double>{0, 5, 0, 0}));
  EXPECT_EQ(minutes("hydromorphone"), (std::vector<double>{0, 0, 2, 1}));
  EXPECT_EQ(minutes("clonidine"), (std::vector<double>{0, 0, 1, 0.5}));
  EXPECT_EQ(minutes("ziconotide"), (std::vector<double>{0, 0, 0.25, 0.25}));
  EXPECT_TRUE(h.knows_drug("bupivacaine"));
  EXPECT_FALSE(h.knows_drug("baclofen"));
  EXPECT_FALSE(h.query_drug("morphine", 10, 5, 1).has_value());
}

TEST(PumpService, TheLastMinuteLatencyWindowIsTheDifferenceOfTwoMinutesWithTheExactMax) {
  Unit u;
  auto& h = u.loop.diag.latency;
  h.counts[loop::LatencyHistogram::bin_of(10'000)] = 1000;
  h.max_ns = 10'500;
  u.run(seconds(1));  // the first minute starts
  h.counts[loop::LatencyHistogram::bin_of(30'000)] += 59;
  h.counts[loop::LatencyHistogram::bin_of(12'000)] += 1;
  h.max_ns = 30'700;
  u.loop.interval_max_ns = 30'612;
  u.mono_us += 60'000'000;
  u.run(seconds(1));
  const auto figures = u.service->loop_figures();
  EXPECT_EQ(figures.last_minute.total(), 60U);
  EXPECT_EQ(figures.last_minute.max_ns, 30'612U);
  EXPECT_EQ(figures.last_minute.quantile_ns(0.01), 13'000U);  // upper edge of the 12 us bin
  EXPECT_EQ(figures.since_start.latency.total(), 1060U);
}

}  // namespace
}  // namespace thecal::test
