// PumpService::preview_prescription (issue 19, SPEC S16): a preview changes nothing in the
// pump (the core's whole exported state byte for byte, the event log, the journal, the
// stored prescription), refuses bad input as LoadPrescription would, and admits at most
// PreviewRunner::kMaxAdmitted at a time.  The preview itself runs on the service's worker
// thread: the test waits for its wake-up on a condition variable, with a deadline.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

#include <gtest/gtest.h>

#include "control/core_state.hpp"
#include "io/atomic_file.hpp"
#include "tests/app/service_fixture.hpp"

namespace thecal::test {
namespace {

using PreviewOutcome = app::Outcome<app::PreviewResult>;

/// Waits for the worker's wake-ups and polls the service, as thecald's main loop does.
struct Waker {
  std::mutex mu;
  std::condition_variable cv;
  int wakes = 0;
  explicit Waker(app::PumpService& s) {
    s.set_preview_wake([this] {
      const std::lock_guard<std::mutex> l(mu);
      ++wakes;
      cv.notify_all();
    });
  }
  /// Until `done` holds: one loop cycle of 0 s (the export goes through the core), then
  /// the worker's wake-ups, each followed by poll().  Deadline 60 s.
  void until(Unit& u, const std::function<bool()>& done) {
    u.loop.cycle(Duration{0});
    u.service->poll();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done()) {
      std::unique_lock<std::mutex> l(mu);
      ASSERT_TRUE(cv.wait_until(l, deadline, [&] { return wakes > 0; })) << "no preview finished within 60 s";
      wakes = 0;
      l.unlock();
      u.service->poll();
    }
  }
};

std::vector<std::uint8_t> core_bytes(Unit& u) {
  CoreState s;
  u.loop.h.core->export_state(s, u.loop.h.now);
  return encode_core_state(s);
}

TEST(PreviewService, ChangesNothingInThePump) {
  Unit u;
  u.ready(bolus_yaml());
  u.run(hours(5));
  ASSERT_TRUE(u.call([&](auto done) { u.service->request_bolus(patient(), done); }).ok());
  u.run(minutes(3));
  Waker w(*u.service);
  const auto before = core_bytes(u);
  const std::size_t events_before = u.events.size();
  const std::uint64_t writes_before = u.service->journal_writes();
  const auto stored_before = io::read_file(u.dir.path + "/prescription.yaml");
  ASSERT_TRUE(stored_before);
  const Status status_before = u.service->status();

  // A concentration change (the bridge) with every allowed bolus, over 30 days.
  std::optional<PreviewOutcome> got;
  std::string yaml = bolus_yaml();
  yaml.replace(yaml.find("1 mg/mL"), 7, "2 mg/mL");
  u.service->preview_prescription(clinician(), yaml, true, to_usec(days(30)), to_usec(hours(1)),
                                  [&](const PreviewOutcome& r) { got = r; });
  w.until(u, [&] { return got.has_value(); });
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->ok()) << got->error->message;
  EXPECT_EQ(got->value.buckets.size(), 30u * 24);
  // 40 mg in the reservoir at 1.9 mg/day with every bolus: it runs low after about 19 days.
  EXPECT_GT(got->value.boluses_taken, 15u * 4);
  bool bridge_end = false;
  for (const auto& e : got->value.events) bridge_end = bridge_end || e.type == "bridge_end";
  EXPECT_TRUE(bridge_end);

  EXPECT_EQ(core_bytes(u), before);
  EXPECT_EQ(u.events.size(), events_before);
  EXPECT_EQ(u.service->journal_writes(), writes_before);
  EXPECT_EQ(io::read_file(u.dir.path + "/prescription.yaml"), stored_before);
  EXPECT_EQ(u.service->status().reservoir, status_before.reservoir);
  EXPECT_EQ(u.service->status().prescription_id.view(), status_before.prescription_id.view());
  EXPECT_FALSE(u.service->busy());
}

TEST(PreviewService, RefusesBadInputAsLoadPrescriptionWouldAndChangesNothing) {
  Unit u;
  u.ready(continuous_yaml());
  u.run(minutes(10));
  const std::size_t events_before = u.events.size();
  auto preview = [&](const std::string& yaml, std::uint64_t horizon, std::uint64_t bucket) {
    std::optional<PreviewOutcome> got;
    u.service->preview_prescription(clinician(), yaml, false, horizon, bucket, [&](const PreviewOutcome& r) { got = r; });
    EXPECT_TRUE(got.has_value()) << "a refusal is answered at once";
    return got.value_or(PreviewOutcome{});
  };
  // Invalid YAML: the same error and message LoadPrescription gives.
  const std::string bad = continuous_yaml("1.5 mg/hour");
  const auto load = u.call([&](auto done) { u.service->load_prescription(clinician(), bad, done); });
  ASSERT_FALSE(load.ok());
  const auto r = preview(bad, to_usec(days(1)), to_usec(hours(1)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->code, app::ErrorCode::invalid_prescription);
  EXPECT_EQ(r.error->message, load.error->message);
  // Limits.
  EXPECT_EQ(preview("", 0, to_usec(hours(1))).error->code, app::ErrorCode::out_of_range);
  EXPECT_EQ(preview("", to_usec(days(181)), to_usec(hours(1))).error->code, app::ErrorCode::out_of_range);
  EXPECT_EQ(preview("", to_usec(days(1)), to_usec(seconds(59))).error->code, app::ErrorCode::out_of_range);
  EXPECT_EQ(preview("", to_usec(days(180)), to_usec(minutes(1))).error->code, app::ErrorCode::out_of_range);
  EXPECT_EQ(preview("", to_usec(days(1)), 0).error->code, app::ErrorCode::out_of_range);
  // Nothing changed: the core's state as before the refused previews (the refused
  // LoadPrescription above only logged its refusal), and the log has nothing from them.
  u.loop.cycle(Duration{0});
  u.service->poll();
  const std::size_t after = u.events.size();
  (void)preview(bad, to_usec(days(1)), to_usec(hours(1)));
  (void)preview("", 0, to_usec(hours(1)));
  u.loop.cycle(Duration{0});
  u.service->poll();
  EXPECT_EQ(u.events.size(), after);
  EXPECT_GE(after, events_before);
}

TEST(PreviewService, AdmitsTwoAtATimeAndRefusesMoreWithInvalidState) {
  Unit u;
  u.ready(continuous_yaml());
  Waker w(*u.service);
  std::vector<std::optional<PreviewOutcome>> got(3);
  for (std::size_t i = 0; i < 3; ++i) {
    u.service->preview_prescription(clinician(), "", false, to_usec(days(10)), to_usec(hours(1)),
                                    [&got, i](const PreviewOutcome& r) { got[i] = r; });
  }
  // The third is refused at once; the first two are admitted and finish.
  ASSERT_TRUE(got[2].has_value());
  ASSERT_FALSE(got[2]->ok());
  EXPECT_EQ(got[2]->error->code, app::ErrorCode::invalid_state);
  EXPECT_FALSE(got[0].has_value());
  w.until(u, [&] { return got[0].has_value() && got[1].has_value(); });
  ASSERT_TRUE(got[0] && got[0]->ok());
  ASSERT_TRUE(got[1] && got[1]->ok());
  // The active prescription unchanged: the same figures twice (deterministic).
  ASSERT_EQ(got[0]->value.buckets.size(), 240u);
  for (std::size_t k = 0; k < 240; ++k) {
    EXPECT_EQ(to_mcg(got[0]->value.buckets[k].tip_mass), to_mcg(got[1]->value.buckets[k].tip_mass));
  }
  // 1.5 mg/day at the tip: each full day of buckets within a step of it.
  double day = 0;
  for (std::size_t k = 24; k < 48; ++k) day += to_mcg(got[0]->value.buckets[k].tip_mass);
  EXPECT_NEAR(day, 1500.0, 0.25 * 1.0 + 1e-6);
  // And a new one is admitted again.
  std::optional<PreviewOutcome> again;
  u.service->preview_prescription(clinician(), "", false, to_usec(days(1)), to_usec(hours(1)),
                                  [&](const PreviewOutcome& r) { again = r; });
  w.until(u, [&] { return again.has_value(); });
  ASSERT_TRUE(again && again->ok());
}

TEST(PreviewService, ABusyDosingThreadOrAShutdownAnswersWithInvalidStateAndFreesTheAdmission) {
  Unit u;
  u.ready(continuous_yaml());
  Waker w(*u.service);
  // The dosing thread's queue is full: the state copy cannot go out.
  u.loop.hold_queue_full();
  std::optional<PreviewOutcome> got;
  u.service->preview_prescription(clinician(), "", false, to_usec(days(1)), to_usec(hours(1)),
                                  [&](const PreviewOutcome& r) { got = r; });
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->error->code, app::ErrorCode::invalid_state);
  u.loop.drop_queue();
  // Shutdown while the state copy is on its way: answered, not lost.
  std::vector<std::optional<PreviewOutcome>> pending(2);
  for (std::size_t i = 0; i < 2; ++i) {
    u.service->preview_prescription(clinician(), "", false, to_usec(days(1)), to_usec(hours(1)),
                                    [&pending, i](const PreviewOutcome& r) { pending[i] = r; });
  }
  u.service->fail_pending("the pump daemon is shutting down");
  for (const auto& p : pending) {
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->error->code, app::ErrorCode::invalid_state);
  }
  u.loop.drop_queue();
  // Neither refusal kept an admission: two more are admitted and finish.
  std::vector<std::optional<PreviewOutcome>> again(2);
  for (std::size_t i = 0; i < 2; ++i) {
    u.service->preview_prescription(clinician(), "", false, to_usec(days(1)), to_usec(hours(1)),
                                    [&again, i](const PreviewOutcome& r) { again[i] = r; });
  }
  EXPECT_FALSE(again[0].has_value());
  w.until(u, [&] { return again[0].has_value() && again[1].has_value(); });
  EXPECT_TRUE(again[0]->ok());
  EXPECT_TRUE(again[1]->ok());
}

TEST(PreviewService, TheServiceStopsARunningPreviewWhenItGoes) {
  // 180 days with every bolus: the worker is still at it when the service is destroyed; the
  // destructor cancels and joins it (a hang here fails the test by its timeout).
  auto u = std::make_unique<Unit>();
  u->ready(bolus_yaml());
  std::optional<PreviewOutcome> got;
  u->service->preview_prescription(clinician(), "", true, to_usec(days(180)), to_usec(minutes(5)),
                                   [&](const PreviewOutcome& r) { got = r; });
  u->loop.cycle(Duration{0});
  u->service->poll();  // the state copy is in: the worker has the preview
  const auto t0 = std::chrono::steady_clock::now();
  u->service.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_FALSE(got.has_value());  // accepted (limits and all), then never answered: the service is gone
}

}  // namespace
}  // namespace thecal::test
