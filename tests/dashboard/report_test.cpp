// The report's figures from the pump's own event types and delivery history (as thecald
// serves them), and the periods a clinician asks for.
#include "dashboard/pages.hpp"

#include <gtest/gtest.h>

namespace thecal::dashboard {
namespace {

using nlohmann::json;
constexpr std::uint64_t kDay = 86'400'000'000ULL;
constexpr std::uint64_t kT0 = 20'000 * kDay;  // a UTC midnight (2024-10-04)

json events() {
  return json::array({
      {kT0 + 1000, "prescription_loaded", "uid=0", ""},
      {kT0 + 2000, "refill", "uid=0", "filled 20000.0 uL, withdrawn 0.0 uL (first fill: nothing to check)"},
      {kT0 + 3 * 3600'000'000ULL, "bolus_started", "uid=1001", "patient 50.000 mcg"},
      {kT0 + 4 * 3600'000'000ULL, "bolus_finished", "pump", "patient delivered 50.000 mcg"},
      {kT0 + 5 * 3600'000'000ULL, "command_refused", "uid=1001", "patient_bolus refused: lockout_active"},
      {kT0 + kDay + 10, "alarm_raised", "pump", "occlusion (high): catheter blocked"},
      {kT0 + kDay + 20, "command_refused", "uid=0", "start refused: invalid_state"},
      {kT0 + 8 * kDay, "refill", "uid=0",
       "filled 20000.0 uL, withdrawn 1000.0 uL (measured residual) against the pump's estimate 1010.0 uL: difference "
       "10.0 uL, allowed 500.0 uL; pumped since the last refill 19000.0 uL, accuracy 99.9 %; within tolerance"},
      {kT0 + 9 * kDay, "bolus_started", "uid=0", "clinician 20.000 mcg"},
      {kT0 + 9 * kDay + 5, "bolus_finished", "pump", "clinician delivered 20.000 mcg"},
  });
}

json daily() {
  json d = json::array();
  for (std::uint64_t i = 0; i < 10; ++i) d.push_back({kT0 + i * kDay, 100.0 + static_cast<double>(i), 10.0});
  return d;
}

TEST(Report, FiguresPerDayAndPerDrugFromHistoryAndEvents) {
  const json drugs = json::array({{"morphine", 10000.0, 0.0, 500.0}, {"clonidine", 2000.0, 0.0, 1000.0}});
  const auto s = summarize_report({kT0, kT0 + 10 * kDay, "chosen period"}, events(), daily(), drugs);
  ASSERT_EQ(s["days"].size(), 10U);
  EXPECT_EQ(s["days"][0]["date"], "2024-10-04");
  EXPECT_DOUBLE_EQ(s["days"][3]["mcg"][0].get<double>(), 103.0);
  EXPECT_DOUBLE_EQ(s["days"][3]["mcg"][1].get<double>(), 20.0) << "10 uL of 2,000 mcg/mL";
  EXPECT_DOUBLE_EQ(s["total_mcg"][0].get<double>(), 1045.0);
  EXPECT_EQ(s["boluses"]["requested"], 3);
  EXPECT_EQ(s["boluses"]["given"], 2);
  EXPECT_EQ(s["boluses"]["refused"], 1) << "a refused start is not a bolus";
  EXPECT_DOUBLE_EQ(s["boluses"]["given_mcg"].get<double>(), 70.0);
  EXPECT_EQ(s["days"][0]["requested"], 2);
  EXPECT_EQ(s["days"][0]["refused"], 1);
  ASSERT_EQ(s["alarms"].size(), 1U);
  ASSERT_EQ(s["refills"].size(), 2U);
  EXPECT_TRUE(s["refills"][0][1].is_null()) << "first fill: not measured";
  EXPECT_DOUBLE_EQ(s["refills"][1][1].get<double>(), 99.9);

  const std::string html = render_report(s);
  EXPECT_NE(html.find("@page{size:A4"), std::string::npos);
  EXPECT_NE(html.find("Week 2 of 2"), std::string::npos) << "ten days: two printed weeks";
  EXPECT_NE(html.find("1045.000 mcg"), std::string::npos);
  EXPECT_NE(html.find("99.9 %"), std::string::npos);
}

TEST(Report, AShorterPeriodCountsOnlyItsOwnDaysAndEvents) {
  const json drugs = json::array({{"morphine", 10000.0, 0.0, 500.0}});
  const auto s = summarize_report({kT0 + 8 * kDay, kT0 + 10 * kDay, "x"}, events(), daily(), drugs);
  ASSERT_EQ(s["days"].size(), 2U);
  EXPECT_EQ(s["boluses"]["requested"], 1);
  EXPECT_EQ(s["boluses"]["given"], 1);
  EXPECT_EQ(s["alarms"].size(), 0U);
  EXPECT_EQ(s["refills"].size(), 1U);
}

TEST(Report, PeriodsFromTheLog) {
  std::string why;
  auto p = resolve_period("since-refill", events(), json::object(), kT0 + 11 * kDay, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->from_usec, kT0 + 8 * kDay);
  EXPECT_EQ(p->to_usec, kT0 + 11 * kDay);
  // No trial running and none finished: a plain answer, not an empty report.
  EXPECT_FALSE(resolve_period("trial", events(), json{{"TrialEndsUsec", 0}}, kT0, why));
  EXPECT_NE(why.find("no trial"), std::string::npos);
  p = resolve_period("trial", events(), json{{"TrialEndsUsec", kT0 + 3 * kDay}}, kT0 + 2 * kDay, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->from_usec, kT0 + 1000);
  EXPECT_EQ(p->to_usec, kT0 + 2 * kDay) << "a running trial: up to now";
  json with_end = events();
  with_end.push_back({kT0 + 9 * kDay + 100, "trial_finished", "pump", ""});
  p = resolve_period("trial", with_end, json{{"TrialEndsUsec", 0}}, kT0 + 11 * kDay, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->to_usec, kT0 + 9 * kDay + 100);
  EXPECT_FALSE(resolve_period("week", events(), json::object(), kT0, why));
  EXPECT_FALSE(resolve_period("since-refill", json::array(), json::object(), kT0, why));
}

TEST(Report, HtmlIsEscaped) {
  EXPECT_EQ(html_escape("<b>\"x\" & y</b>"), "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;");
  const std::string page = render_error_page("t", "<script>");
  EXPECT_EQ(page.find("<script>"), std::string::npos);
}

}  // namespace
}  // namespace thecal::dashboard

namespace thecal::dashboard {
namespace {

/// A PreviewPrescription reply as SPEC section 4 shapes it: (a(tdddd), a(tss)).
nlohmann::json preview_reply(double mass_per_bucket, std::size_t n) {
  nlohmann::json buckets = nlohmann::json::array();
  for (std::size_t i = 0; i < n; ++i) {
    buckets.push_back({1'700'000'000'000'000ULL + i * 3'600'000'000ULL, mass_per_bucket, 0.5, 1000.0 - 0.5 * static_cast<double>(i),
                       mass_per_bucket * 24});
  }
  return nlohmann::json::array({buckets, nlohmann::json::array({{1'700'000'000'000'000ULL, "refill", "filled <20 mL>"}})});
}

TEST(PreviewPage, OldAndNewSideBySideWithTheirTotals) {
  const auto now = preview_reply(1.0, 24);
  const auto next = preview_reply(2.5, 24);
  const std::string html = render_preview_page(&now, &next, "", "new<rx>.yaml");
  EXPECT_NE(html.find("id=\"old\""), std::string::npos);
  EXPECT_NE(html.find("id=\"new\""), std::string::npos);
  EXPECT_NE(html.find("24.000 mcg"), std::string::npos) << "old total";
  EXPECT_NE(html.find("60.000 mcg"), std::string::npos) << "new total";
  EXPECT_NE(html.find("id=\"new-mass\""), std::string::npos);
  EXPECT_NE(html.find("new&lt;rx&gt;.yaml"), std::string::npos);
  EXPECT_NE(html.find("filled &lt;20 mL&gt;"), std::string::npos);
  EXPECT_EQ(html.find("id=\"error\""), std::string::npos);
}

TEST(PreviewPage, AnErrorIsShownAsItCameAndNoPlots) {
  const std::string html = render_preview_page(nullptr, nullptr, "org.thecal.Pump1.Error.InvalidPrescription: 3:7: basal", "x.yaml");
  EXPECT_NE(html.find("id=\"error\">org.thecal.Pump1.Error.InvalidPrescription: 3:7: basal"), std::string::npos);
  EXPECT_EQ(html.find("id=\"new\""), std::string::npos);
}

}  // namespace
}  // namespace thecal::dashboard
