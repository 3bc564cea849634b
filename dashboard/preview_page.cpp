// The preview page: PreviewPrescription (SPEC section 4) for the active prescription
// unchanged ("now") and for an uploaded file ("new"), side by side, as inline SVG.
#include "dashboard/pages.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace thecal::dashboard {

namespace {
std::string fmt(const char* f, double v) {
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double num(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : 0.0; }

/// One polyline of column `col` of the buckets (start, mass, volume, reservoir, rolling 24 h).
std::string plot(const nlohmann::json& buckets, int col, const char* title, const char* unit, const char* id) {
  const double W = 560, H = 150, L = 40, B = 16;
  double max = 1e-9;
  for (const auto& b : buckets) max = std::max(max, num(b[col]));
  std::ostringstream o;
  o << "<h3>" << title << "</h3><svg id=\"" << id << "\" viewBox=\"0 0 " << W << " " << H
    << "\" style=\"width:100%;height:150px\"><text x=\"0\" y=\"10\" font-size=\"10\">" << fmt("%.1f", max) << " " << unit
    << "</text><polyline fill=\"none\" stroke=\"#2e7dd7\" stroke-width=\"1.5\" points=\"";
  const std::size_t n = buckets.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double x = L + (W - L) * static_cast<double>(i) / static_cast<double>(std::max<std::size_t>(1, n - 1));
    const double y = H - B - (H - B - 12) * num(buckets[i][col]) / max;
    o << fmt("%.1f", x) << "," << fmt("%.1f", y) << " ";
  }
  o << "\"/></svg>";
  return o.str();
}

std::string column(const nlohmann::json& r, const char* heading, const char* id) {
  std::ostringstream o;
  const auto& buckets = r.at(0);
  const auto& events = r.at(1);
  double mass = 0, vol = 0;
  for (const auto& b : buckets) {
    mass += num(b[1]);
    vol += num(b[2]);
  }
  o << "<section class=\"card\" id=\"" << id << "\"><h2>" << heading << "</h2><p>Total at the tip: <b>"
    << fmt("%.3f mcg", mass) << "</b>, pumped " << fmt("%.1f uL", vol) << " over " << buckets.size() << " buckets.</p>";
  o << plot(buckets, 1, "mass at the tip per bucket (the bridge shows here)", "mcg", (std::string(id) + "-mass").c_str());
  o << plot(buckets, 4, "rolling 24 h", "mcg", (std::string(id) + "-rolling").c_str());
  o << plot(buckets, 3, "reservoir", "uL", (std::string(id) + "-reservoir").c_str());
  o << "<h3>events</h3><table class=\"events\">";
  std::size_t shown = 0;
  for (const auto& e : events) {
    if (shown++ >= 50) break;
    o << "<tr><td>" << format_utc(e[0].get<std::uint64_t>()) << "</td><td>" << html_escape(e[1]) << "</td><td>"
      << html_escape(e[2]) << "</td></tr>";
  }
  o << "</table></section>";
  return o.str();
}
}  // namespace

std::string render_preview_page(const nlohmann::json* now_result, const nlohmann::json* new_result,
                                const std::string& error, const std::string& file_name) {
  std::ostringstream o;
  o << R"(<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>thecal — preview</title>
<link rel="stylesheet" href="/style.css"></head><body>
<header><h1>thecal</h1><nav><a href="/">live</a> <a href="/preview">preview</a> <a href="/report">report</a></nav></header>
<main><section class="card wide"><h2>Preview a prescription</h2>
<p>What would happen from now if this prescription were loaded (the pump is not changed).</p>
<form method="post" action="/preview" enctype="multipart/form-data">
<input type="file" name="prescription" id="file" accept=".yaml,.yml" required>
horizon <select name="horizon_days" id="horizon"><option>1</option><option selected>7</option><option>30</option><option>90</option></select> days
<label><input type="checkbox" name="with_patient_boluses" id="boluses"> every allowed patient bolus</label>
<button type="submit" id="submit">Preview</button></form>)";
  if (!error.empty()) {
    o << "<p class=\"banner alarm-high\" id=\"error\">" << html_escape(error) << "</p>";
  }
  o << "</section>";
  if (now_result != nullptr && new_result != nullptr) {
    o << column(*now_result, "now (active prescription unchanged)", "old")
      << column(*new_result, ("new: " + html_escape(file_name)).c_str(), "new");
  }
  o << "</main></body></html>";
  return o.str();
}

}  // namespace thecal::dashboard
