// Issue 17 through app::PumpService (no bus): ReviseCatheter, the refill session,
// TestAlarm, the solution's stability from the shipped drug library and the risk events,
// with the caller's identity, the named errors and the event log.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tests/app/service_fixture.hpp"

namespace thecal::test {
namespace {

using app::ErrorCode;

std::optional<app::LoggedEvent> last_logged(const Unit& u, const std::string& type) {
  std::optional<app::LoggedEvent> out;
  for (const auto& e : u.events.since(0, 1'000'000)) {
    if (e.type == type) out = e;
  }
  return out;
}

ErrorCode code_of(const app::CallResult& r) { return r.error ? r.error->code : ErrorCode::invalid_document; }

std::string ziconotide_yaml() {
  return "version: 1\npatient: APP-TEST\nphase: maintenance\ndrug:\n  name: ziconotide\n  concentration: 25 mcg/mL\n"
         "reservoir:\n  capacity: 20 mL\n  low_alarm: 2 mL\ncatheter:\n  volume: 0.22 mL\ntimezone: Europe/Berlin\n"
         "basal:\n  mode: continuous\n  rate: 2.4 mcg/day\nlimits:\n  max_daily_dose: 19.2 mcg\n";
}

TEST(ServiceReviseCatheter, BadVolumesAreRefusedAtOnceAndARevisionIsLoggedWithTheUid) {
  Unit u;
  u.ready(continuous_yaml());
  auto& s = *u.service;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const double v : {nan, 0.0, -3.0, 2000.5}) {
    std::optional<app::CallResult> got;
    s.revise_catheter(clinician(), uL(v), [&](const app::CallResult& r) { got = r; });
    ASSERT_TRUE(got.has_value()) << v;  // at once: the dosing thread never sees it
    EXPECT_EQ(code_of(*got), ErrorCode::out_of_range) << v;
  }
  u.run(msec(5), msec(1));
  EXPECT_EQ(u.logged("command_refused"), 0u);  // the core never saw them
  // In the core's hands: not while infusing, nothing changed.
  const auto infusing = u.call([&](auto d) { s.revise_catheter(clinician(), uL(117), d); });
  EXPECT_EQ(code_of(infusing), ErrorCode::invalid_state);
  EXPECT_EQ(u.logged("command_refused"), 1u);
  EXPECT_EQ(s.status().state, PumpState::infusing);
  EXPECT_DOUBLE_EQ(to_uL(s.status().catheter_volume), 220.0);
  ASSERT_TRUE(u.call([&](auto d) { s.suspend(clinician(), Duration{0}, d); }).ok());
  const auto ok = u.call([&](auto d) { s.revise_catheter(clinician(4321), uL(117), d); });
  ASSERT_TRUE(ok.ok()) << ok.error->message;
  EXPECT_EQ(s.status().state, PumpState::idle);
  EXPECT_FALSE(s.status().catheter_primed);
  EXPECT_DOUBLE_EQ(to_uL(s.status().catheter_volume), 117.0);
  const auto e = last_logged(u, "catheter_revised");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->who, "uid=4321");
  EXPECT_NE(e->detail.find("220.0 uL -> 117.0 uL"), std::string::npos) << e->detail;
  const auto start = u.call([&](auto d) { s.start(clinician(), d); });
  EXPECT_EQ(code_of(start), ErrorCode::invalid_state);
  EXPECT_NE(start.error->message.find("not primed"), std::string::npos);
  // A stale prescription (0.22 mL) is refused as a prescription problem.
  const auto stale = u.call([&](auto d) { s.load_prescription(clinician(), continuous_yaml("1.4 mg/day"), d); });
  EXPECT_EQ(code_of(stale), ErrorCode::invalid_prescription);
  EXPECT_EQ(io::read_file(u.dir.path + "/prescription.yaml"), continuous_yaml());
}

TEST(ServiceRefillSession, BeginRefillEndsWithRefillAndRefusalsChangeNothing) {
  Unit u;
  u.ready(continuous_yaml());
  auto& s = *u.service;
  const auto cancel_outside = u.call([&](auto d) { s.cancel_refill(clinician(), d); });
  EXPECT_EQ(code_of(cancel_outside), ErrorCode::invalid_state);
  ASSERT_TRUE(u.call([&](auto d) { s.begin_refill(clinician(77), d); }).ok());
  EXPECT_EQ(s.status().state, PumpState::refilling);
  const auto begun = last_logged(u, "refill_begun");
  ASSERT_TRUE(begun);
  EXPECT_EQ(begun->who, "uid=77");
  const Volume reservoir = s.status().reservoir;
  const auto again = u.call([&](auto d) { s.begin_refill(clinician(), d); });
  EXPECT_EQ(code_of(again), ErrorCode::invalid_state);
  const auto over = u.call([&](auto d) { s.refill(clinician(), reservoir, uL(20'500), "", d); });
  EXPECT_EQ(code_of(over), ErrorCode::out_of_range);
  EXPECT_NE(over.error->message.find("beyond the reservoir capacity"), std::string::npos) << over.error->message;
  EXPECT_EQ(s.status().state, PumpState::refilling);
  EXPECT_EQ(s.status().reservoir, reservoir);
  // A refill with a new prescription beyond its capacity: refused, and the file is not replaced.
  const auto over_new = u.call([&](auto d) { s.refill(clinician(), reservoir, mL(20.5), continuous_yaml("1.4 mg/day"), d); });
  EXPECT_EQ(code_of(over_new), ErrorCode::out_of_range);
  EXPECT_EQ(io::read_file(u.dir.path + "/prescription.yaml"), continuous_yaml());
  ASSERT_TRUE(u.call([&](auto d) { s.refill(clinician(), reservoir, mL(20), "", d); }).ok());
  EXPECT_EQ(s.status().state, PumpState::infusing);
  EXPECT_DOUBLE_EQ(to_uL(s.status().reservoir), 20'000.0);
}

TEST(ServiceRefillSession, PortInjectionIsAnnouncedAndUnfinishedSessionsAlarm) {
  Unit u;
  u.ready(continuous_yaml(), false);
  auto& s = *u.service;
  ASSERT_TRUE(u.call([&](auto d) { s.begin_refill(clinician(), d); }).ok());
  u.loop.h.in.occlusion = true;
  u.run(msec(2), msec(1));
  ASSERT_TRUE(u.alarm(AlarmCode::catheter_port_injection));
  EXPECT_FALSE(u.alarm(AlarmCode::occlusion));
  ASSERT_FALSE(u.heard.raised.empty());
  EXPECT_EQ(u.heard.raised.back().first, AlarmCode::catheter_port_injection);
  EXPECT_NE(u.heard.raised.back().second.find("catheter access port"), std::string::npos);
  u.loop.h.in.occlusion = false;
  u.run(minutes(15), seconds(5));
  EXPECT_TRUE(u.alarm(AlarmCode::refill_unfinished));
  ASSERT_TRUE(u.call([&](auto d) { s.cancel_refill(clinician(), d); }).ok());
  EXPECT_EQ(s.status().state, PumpState::idle);  // idle before: idle has no motor to stop
  EXPECT_FALSE(u.alarm(AlarmCode::refill_unfinished));
  EXPECT_TRUE(u.alarm(AlarmCode::catheter_port_injection));  // latched until acknowledged
  EXPECT_EQ(u.logged("refill_cancelled"), 1u);
}

TEST(ServiceAlarmTest, IsLoggedWithTheUidAndRaisesNothing) {
  Unit u;
  u.ready(continuous_yaml());
  const auto raised = u.heard.raised.size();
  ASSERT_TRUE(u.call([&](auto d) { u.service->test_alarm(clinician(99), d); }).ok());
  EXPECT_TRUE(u.service->status().alarm_test);
  u.run(seconds(8), msec(100));
  EXPECT_FALSE(u.service->status().alarm_test);
  EXPECT_EQ(u.heard.raised.size(), raised);
  const auto e = last_logged(u, "alarm_test");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->who, "uid=99");
  EXPECT_EQ(u.service->status().state, PumpState::infusing);
}

TEST(ServiceSolutionStability, TheShippedLibraryLimitsZiconotideTo40DaysInTheReservoir) {
  const auto lib = shipped_drugs();
  const auto* z = lib.find("Prialt");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->max_in_reservoir, days(40));
  EXPECT_NE(z->source.find("max_days_in_reservoir: Prialt PI"), std::string::npos) << z->source;
  EXPECT_EQ(lib.find("morphine")->max_in_reservoir, Duration{0});

  Unit u;
  u.ready(ziconotide_yaml());
  const auto fill = last_logged(u, "refill");
  ASSERT_TRUE(fill);
  const WallTime expires = wall_us(fill->wall_us) + days(40);
  EXPECT_EQ(u.service->status().solution_expires, expires);
  EXPECT_LE(u.service->status().refill_due, expires);
  EXPECT_NE(u.service->status().refill_due, WallTime{});
}

TEST(ServiceRiskEvents, ALongStopIsLoggedInWordsAt48HoursAndWhenDeliveryResumes) {
  Unit u;
  u.ready(continuous_yaml());
  ASSERT_TRUE(u.call([&](auto d) { u.service->suspend(clinician(), Duration{0}, d); }).ok());
  u.run(hours(47), minutes(10));
  EXPECT_EQ(u.logged("risk_event"), 0u);
  u.run(hours(3), minutes(10));
  // Logged while the pump is still suspended, by the pump itself.
  ASSERT_EQ(u.logged("risk_event"), 1u);
  const auto at48 = last_logged(u, "risk_event");
  ASSERT_TRUE(at48);
  EXPECT_EQ(at48->who, "pump");
  EXPECT_NE(at48->detail.find("delivery stopped for 48.0 h and still stopped (suspended)"), std::string::npos)
      << at48->detail;
  ASSERT_TRUE(u.call([&](auto d) { u.service->resume(clinician(5), d); }).ok());
  ASSERT_EQ(u.logged("risk_event"), 2u);
  const auto e = last_logged(u, "risk_event");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->who, "uid=5");
  EXPECT_NE(e->detail.find("resumed after a stop of 50.0 h"), std::string::npos) << e->detail;
  EXPECT_GT(e->wall_us, at48->wall_us);
}

}  // namespace
}  // namespace thecal::test
