#include "dashboard/pages.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

namespace thecal::dashboard {

namespace {
constexpr std::uint64_t kDayUs = 86'400'000'000ULL;

std::string fmt(const char* f, double v) {
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

/// "…, accuracy 98.7 %…" in a refill event's detail; NaN when not measured.
double refill_accuracy(const std::string& detail) {
  const auto at = detail.find("accuracy ");
  if (at == std::string::npos) return NAN;
  char* end = nullptr;
  const double v = std::strtod(detail.c_str() + at + 9, &end);
  return end == detail.c_str() + at + 9 ? NAN : v;
}

std::string day_of(std::uint64_t usec) { return format_utc(usec).substr(0, 10); }
}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_utc(std::uint64_t usec) {
  const std::time_t t = static_cast<std::time_t>(usec / 1'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  (void)std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::optional<Period> resolve_period(const std::string& which, const nlohmann::json& events, const nlohmann::json& pump,
                                     std::uint64_t now_usec, std::string& why) {
  if (which == "since-refill") {
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if ((*it)[1] == "refill") return Period{(*it)[0].get<std::uint64_t>(), now_usec, "since the last refill"};
    }
    why = "no refill in the pump's event log";
    return std::nullopt;
  }
  if (which == "trial") {
    // The trial ends at trial_finished, or TrialEndsUsec (still running: now); it began
    // with the last prescription loaded before that end.
    std::uint64_t end = 0;
    for (auto it = events.rbegin(); it != events.rend() && end == 0; ++it) {
      if ((*it)[1] == "trial_finished") end = (*it)[0].get<std::uint64_t>();
    }
    const std::uint64_t trial_ends = pump.value("TrialEndsUsec", std::uint64_t{0});
    if (end == 0 && trial_ends != 0) end = std::min(trial_ends, now_usec);
    if (end == 0) {
      why = "no trial: the pump is not in its trial phase and its log holds no finished trial";
      return std::nullopt;
    }
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      const auto t = (*it)[0].get<std::uint64_t>();
      if ((*it)[1] == "prescription_loaded" && t <= end) return Period{t, end, "trial"};
    }
    why = "the trial's prescription is no longer in the event log";
    return std::nullopt;
  }
  why = "period must be trial or since-refill";
  return std::nullopt;
}

nlohmann::json summarize_report(const Period& p, const nlohmann::json& events, const nlohmann::json& daily,
                                const nlohmann::json& drugs) {
  using nlohmann::json;
  json out;
  out["from_usec"] = p.from_usec;
  out["to_usec"] = p.to_usec;
  out["name"] = p.name;
  out["drugs"] = json::array();
  for (const auto& d : drugs) out["drugs"].push_back(d[0]);
  // Days: the primary drug's mass from the history; each admixture drug's from the volume
  // and its concentration (the solution in the reservoir now: see docs/dashboard.md).
  std::map<std::string, json> days;
  for (const auto& b : daily) {
    const auto start = b[0].get<std::uint64_t>();
    if (start + kDayUs <= p.from_usec || start >= p.to_usec) continue;
    json day;
    day["date"] = day_of(start);
    day["start_usec"] = start;
    const double ul = b[2].is_number() ? b[2].get<double>() : 0.0;
    day["ul"] = ul;
    day["mcg"] = json::array();
    for (std::size_t i = 0; i < drugs.size(); ++i) {
      const double conc = drugs[i][1].is_number() ? drugs[i][1].get<double>() : 0.0;
      day["mcg"].push_back(i == 0 ? (b[1].is_number() ? b[1].get<double>() : 0.0) : ul * conc / 1000.0);
    }
    day["requested"] = 0;
    day["given"] = 0;
    day["refused"] = 0;
    days[day["date"].get<std::string>()] = day;
  }
  json alarms = json::array(), refills = json::array();
  int requested = 0, given = 0, refused = 0;
  double bolus_mcg = 0;
  for (const auto& e : events) {
    const auto t = e[0].get<std::uint64_t>();
    if (t < p.from_usec || t > p.to_usec) continue;
    const std::string type = e[1], who = e[2], detail = e[3];
    const std::string date = day_of(t);
    auto bump = [&](const char* k) {
      if (days.count(date) != 0) days[date][k] = days[date][k].get<int>() + 1;
    };
    if (type == "bolus_started") {
      ++requested;
      bump("requested");
    } else if (type == "command_refused" && (starts_with(detail, "patient_bolus") || starts_with(detail, "clinician_bolus"))) {
      ++requested;
      ++refused;
      bump("requested");
      bump("refused");
    } else if (type == "bolus_finished") {
      ++given;
      bump("given");
      const auto at = detail.find("delivered ");
      if (at != std::string::npos) bolus_mcg += std::strtod(detail.c_str() + at + 10, nullptr);
    } else if (type == "alarm_raised") {
      alarms.push_back({t, detail});
    } else if (type == "refill") {
      const double acc = refill_accuracy(detail);
      refills.push_back({t, std::isfinite(acc) ? json(acc) : json(nullptr), detail});
    }
  }
  out["days"] = json::array();
  std::vector<double> totals(drugs.size(), 0.0);
  double total_ul = 0;
  for (auto& [date, day] : days) {
    for (std::size_t i = 0; i < drugs.size(); ++i) totals[i] += day["mcg"][i].get<double>();
    total_ul += day["ul"].get<double>();
    out["days"].push_back(day);
  }
  out["total_mcg"] = totals;
  out["total_ul"] = total_ul;
  out["boluses"] = {{"requested", requested}, {"given", given}, {"refused", refused}, {"given_mcg", bolus_mcg}};
  out["alarms"] = alarms;
  out["refills"] = refills;
  return out;
}

std::string render_error_page(const std::string& title, const std::string& message) {
  return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>thecal — " + html_escape(title) +
         "</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body><header><h1>thecal</h1><nav><a "
         "href=\"/\">live</a> <a href=\"/preview\">preview</a> <a href=\"/report\">report</a></nav></header><main><section "
         "class=\"card wide\"><h2>" +
         html_escape(title) + "</h2><p class=\"error\" id=\"error\">" + html_escape(message) +
         "</p></section></main></body></html>";
}

std::string render_report(const nlohmann::json& s) {
  std::ostringstream o;
  const auto& drugs = s["drugs"];
  o << R"(<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>thecal — report</title>
<style>
@page{size:A4;margin:12mm}
body{font-family:system-ui,sans-serif;font-size:10pt;color:#111;margin:0 auto;max-width:186mm}
h1{font-size:14pt;margin:0 0 2mm} h2{font-size:11pt;margin:4mm 0 1mm}
table{border-collapse:collapse;width:100%} th,td{border:0.2mm solid #999;padding:0.6mm 1.5mm;text-align:right}
th:first-child,td:first-child,td.text{text-align:left}
section.week{page-break-after:always;break-after:page} section.week:last-child{page-break-after:auto;break-after:auto}
.muted{color:#666} nav{margin:2mm 0} @media print{nav{display:none}}
</style></head><body>
<nav><a href="/">live</a> · choose: <a href="/report?period=trial">trial</a> · <a href="/report?period=since-refill">since the last refill</a> · <a href="/report">last 7 days</a></nav>
)";
  const std::string period = format_utc(s["from_usec"]) + " – " + format_utc(s["to_usec"]) + " UTC";
  const auto& days = s["days"];
  const std::size_t weeks = std::max<std::size_t>(1, (days.size() + 6) / 7);
  for (std::size_t w = 0; w < weeks; ++w) {
    o << "<section class=\"week\"><h1>thecal report: " << html_escape(s["name"]) << " — " << html_escape(period)
      << "</h1>";
    if (w == 0) {
      o << "<h2>Period totals</h2><table><tr><th>drug</th><th>mass delivered</th></tr>";
      for (std::size_t i = 0; i < drugs.size(); ++i) {
        o << "<tr><td>" << html_escape(drugs[i]) << "</td><td>" << fmt("%.3f mcg", s["total_mcg"][i]) << "</td></tr>";
      }
      const auto& b = s["boluses"];
      o << "</table><p>Volume pumped " << fmt("%.1f uL", s["total_ul"]) << ". Boluses: requested "
        << b["requested"].get<int>() << ", given " << b["given"].get<int>() << " (" << fmt("%.3f mcg", b["given_mcg"])
        << "), refused " << b["refused"].get<int>() << ". Alarms raised: " << s["alarms"].size()
        << ". Refills: " << s["refills"].size() << ".</p>";
    }
    o << "<h2>Week " << (w + 1) << " of " << weeks << "</h2><table><tr><th>day (UTC)</th>";
    for (const auto& d : drugs) o << "<th>" << html_escape(d) << " mcg</th>";
    o << "<th>volume uL</th><th>boluses requested</th><th>given</th><th>refused</th></tr>";
    std::uint64_t wfrom = UINT64_MAX, wto = 0;
    for (std::size_t i = w * 7; i < std::min(days.size(), w * 7 + 7); ++i) {
      const auto& d = days[i];
      wfrom = std::min(wfrom, d["start_usec"].get<std::uint64_t>());
      wto = std::max(wto, d["start_usec"].get<std::uint64_t>() + kDayUs);
      o << "<tr><td>" << d["date"].get<std::string>() << "</td>";
      for (const auto& m : d["mcg"]) o << "<td>" << fmt("%.3f", m) << "</td>";
      o << "<td>" << fmt("%.1f", d["ul"]) << "</td><td>" << d["requested"].get<int>() << "</td><td>"
        << d["given"].get<int>() << "</td><td>" << d["refused"].get<int>() << "</td></tr>";
    }
    o << "</table>";
    auto in_week = [&](std::uint64_t t) { return days.empty() || (t >= wfrom && t < wto); };
    const std::size_t kMaxRows = 20;
    o << "<h2>Alarms</h2>";
    std::size_t n = 0, more = 0;
    std::ostringstream rows;
    for (const auto& a : s["alarms"]) {
      if (!in_week(a[0])) continue;
      if (n++ < kMaxRows) rows << "<tr><td>" << format_utc(a[0]) << "</td><td class=\"text\">" << html_escape(a[1]) << "</td></tr>";
      else ++more;
    }
    if (n == 0) o << "<p class=\"muted\">none</p>";
    else o << "<table><tr><th>raised (UTC)</th><th>alarm</th></tr>" << rows.str() << "</table>";
    if (more != 0) o << "<p class=\"muted\">and " << more << " more (see the event log)</p>";
    o << "<h2>Refills</h2>";
    n = 0;
    rows.str("");
    for (const auto& r : s["refills"]) {
      if (!in_week(r[0])) continue;
      ++n;
      rows << "<tr><td>" << format_utc(r[0]) << "</td><td>"
           << (r[1].is_number() ? fmt("%.1f %%", r[1]) : std::string("not measured")) << "</td><td class=\"text\">"
           << html_escape(r[2]) << "</td></tr>";
    }
    if (n == 0) o << "<p class=\"muted\">none</p>";
    else o << "<table><tr><th>time (UTC)</th><th>accuracy</th><th>detail</th></tr>" << rows.str() << "</table>";
    o << "</section>";
  }
  o << "</body></html>";
  return o.str();
}

}  // namespace thecal::dashboard
