#include "thecalctl/preview_report.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <map>
#include <optional>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace thecalctl {

namespace {

std::string f(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string mass(double mcg) {
  if (std::isnan(mcg)) return "n/a";
  if (std::fabs(mcg) >= 1000) return f("%.3g mg", mcg / 1000);
  return f("%.3g mcg", mcg);
}

std::string when(std::uint64_t us) {
  const auto t = static_cast<time_t>(us / 1'000'000);
  tm local{};
  localtime_r(&t, &local);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M %Z", &local);
  return buf;
}

/// What the summary shows of one preview.
struct Figures {
  double total_mcg = 0;
  double first_day_mcg = 0;
  double max_rolling_mcg = 0;
  std::array<double, 24> by_hour{};  // mean mcg/h at each local hour of day
  std::size_t patient_boluses = 0;
  std::optional<std::uint64_t> refill_due;  // first reservoir_low alarm
  std::string bridge;                       // the bridge_end event's detail, if any
  std::map<std::string, std::pair<std::uint64_t, int>> alarms;  // code -> (first time, count)
  double end_reservoir_ul = 0;
};

Figures figures(const Preview& p, const PreviewContext& ctx) {
  Figures fig;
  std::array<double, 24> hour_us{};
  for (const auto& b : p.buckets) {
    fig.total_mcg += b.mcg;
    if (b.start_us < ctx.start_us + 86'400'000'000ULL) fig.first_day_mcg += b.mcg;
    fig.max_rolling_mcg = std::max(fig.max_rolling_mcg, b.rolling_mcg);
    const auto t = static_cast<time_t>(b.start_us / 1'000'000);
    tm local{};
    localtime_r(&t, &local);
    fig.by_hour[static_cast<std::size_t>(local.tm_hour)] += b.mcg;
    hour_us[static_cast<std::size_t>(local.tm_hour)] += static_cast<double>(ctx.bucket_us);
    fig.end_reservoir_ul = b.reservoir_ul;
  }
  for (std::size_t h = 0; h < 24; ++h) fig.by_hour[h] = hour_us[h] > 0 ? fig.by_hour[h] / (hour_us[h] / 3.6e9) : NAN;
  for (const auto& e : p.events) {
    if (e.type == "bolus_started" && e.detail.rfind("patient", 0) == 0) ++fig.patient_boluses;
    if (e.type == "bridge_end") fig.bridge = e.detail;
    if (e.type == "alarm_raised") {
      const std::string code = e.detail.substr(0, e.detail.find(' '));
      auto [it, fresh] = fig.alarms.emplace(code, std::make_pair(e.time_us, 0));
      ++it->second.second;
      if (code == "reservoir_low" && !fig.refill_due) fig.refill_due = e.time_us;
    }
  }
  return fig;
}

}  // namespace

std::optional<double> max_daily_dose_in(const std::string& yaml) {
  const auto k = yaml.find("max_daily_dose:");
  if (k == std::string::npos) return std::nullopt;
  std::string v = yaml.substr(k + 15, yaml.find('\n', k) - (k + 15));
  v = v.substr(0, v.find('#'));
  double x = 0;
  char unit[16] = {};
  if (std::sscanf(v.c_str(), " %lf %15s", &x, unit) != 2) return std::nullopt;
  const std::string u = unit;
  if (u == "mg") return x * 1000;
  if (u == "mcg" || u == "ug" || u == "µg") return x;
  return std::nullopt;
}

namespace {

/// "7.5 mg/mL", "4 mg": the number times the factor of its unit among `units`; nullopt else.
std::optional<double> quantity(const std::string& text, std::initializer_list<std::pair<const char*, double>> units) {
  double x = 0;
  char unit[16] = {};
  if (std::sscanf(text.c_str(), " %lf %15s", &x, unit) != 2 || !std::isfinite(x)) return std::nullopt;
  for (const auto& [name, factor] : units) {
    if (std::string(unit) == name) return x * factor;
  }
  return std::nullopt;
}

std::optional<SolutionDrug> solution_drug(const YAML::Node& n, const YAML::Node& limit) {
  if (!n.IsMap() || !n["name"] || !n["concentration"] || !limit) return std::nullopt;
  const auto conc = quantity(n["concentration"].as<std::string>(),
                             {{"mg/mL", 1000.0}, {"mcg/mL", 1.0}, {"ug/mL", 1.0}, {"µg/mL", 1.0}});
  const auto lim = quantity(limit.as<std::string>(), {{"mg", 1000.0}, {"mcg", 1.0}, {"ug", 1.0}, {"µg", 1.0}});
  if (!conc || !lim) return std::nullopt;
  return SolutionDrug{n["name"].as<std::string>(), *conc, *lim};
}

}  // namespace

std::vector<SolutionDrug> solution_in(const std::string& yaml) {
  try {
    const YAML::Node doc = YAML::Load(yaml);
    if (!doc.IsMap() || !doc["limits"] || !doc["limits"].IsMap()) return {};
    auto primary = solution_drug(doc["drug"], doc["limits"]["max_daily_dose"]);
    if (!primary) return {};
    std::vector<SolutionDrug> out{*primary};
    if (const YAML::Node mix = doc["admixture"]; mix && mix.IsSequence()) {
      for (const auto& x : mix) {
        auto d = x.IsMap() ? solution_drug(x, x["max_daily_dose"]) : std::nullopt;
        if (!d) return {};
        out.push_back(*d);
      }
    }
    return out;
  } catch (const YAML::Exception&) {
    return {};
  }
}

std::string preview_summary(const PreviewSide& old_side, const PreviewSide& new_side, const PreviewContext& ctx) {
  std::ostringstream o;
  std::optional<Figures> a;
  std::optional<Figures> b;
  if (old_side.preview) a = figures(*old_side.preview, ctx);
  if (new_side.preview) b = figures(*new_side.preview, ctx);
  auto row = [&](const std::string& what, const std::string& x, const std::string& y) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-34s %-38s %s\n", what.c_str(), x.c_str(), y.c_str());
    o << buf;
  };
  auto both = [&](const std::string& what, auto get) {
    row(what, a ? get(*a, old_side) : "-", b ? get(*b, new_side) : "-");
  };
  o << "Preview from " << when(ctx.start_us) << " over " << f("%g", ctx.days) << " days"
    << (ctx.with_boluses ? ", every allowed patient bolus taken" : ", no patient bolus") << "\n"
    << "(computed by the pump's own dosing core on a copy of its state; nothing in the pump changed)\n";
  if (!ctx.pump_state.empty() && ctx.pump_state != "infusing") {
    o << "Note: the pump is " << ctx.pump_state
      << " now; the preview delivers only what that state allows (Start, Prime and Resume are not simulated).\n";
  }
  o << "\n";
  row("", old_side.label, new_side.label);
  if (!a) row("", "(" + old_side.why + ")", "");
  if (!b) row("", "", "(" + new_side.why + ")");
  both("Daily mass at the tip, mean", [&](const Figures& x, const PreviewSide&) { return mass(x.total_mcg / ctx.days) + "/day"; });
  both("  in the first 24 h", [](const Figures& x, const PreviewSide&) { return mass(x.first_day_mcg); });
  both("Rolling 24 h, highest", [](const Figures& x, const PreviewSide& s) {
    return mass(x.max_rolling_mcg) + (s.limit_mcg > 0 ? f(" (%.0f %% of limit)", 100.0 * x.max_rolling_mcg / s.limit_mcg) : "");
  });
  both("Daily limit (rolling 24 h)", [](const Figures&, const PreviewSide& s) { return s.limit_mcg > 0 ? mass(s.limit_mcg) : "?"; });
  if (old_side.drugs.size() > 1 || new_side.drugs.size() > 1) {
    // An admixture: each drug's highest rolling 24 h against its own limit.  The preview
    // counts the primary drug; each other drug reaches the tip in the ratio of the
    // solution's concentrations, so it is the primary's figure times that ratio (while a
    // bridge still carries another solution the core's own per-drug ledger decides, and
    // the alarms below name a drug it would hold back).
    o << "Rolling 24 h by drug, highest (in the ratio of the solution):\n";
    std::vector<std::string> names;
    for (const auto* side : {&old_side, &new_side}) {
      for (const auto& d : side->drugs) {
        if (std::find(names.begin(), names.end(), d.name) == names.end()) names.push_back(d.name);
      }
    }
    for (const auto& name : names) {
      both("  " + name, [&](const Figures& x, const PreviewSide& s) -> std::string {
        const auto d = std::find_if(s.drugs.begin(), s.drugs.end(), [&](const SolutionDrug& y) { return y.name == name; });
        if (d == s.drugs.end()) return "not in this solution";
        if (!(s.drugs.front().conc_mcg_per_ml > 0)) return "?";
        const double v = x.max_rolling_mcg * d->conc_mcg_per_ml / s.drugs.front().conc_mcg_per_ml;
        return mass(v) + " of " + mass(d->limit_mcg) +
               (d->limit_mcg > 0 ? f(" (%.0f %%)", 100.0 * v / d->limit_mcg) : std::string());
      });
    }
  }
  o << "Tip mass by local time of day (mean rate" << (ctx.with_boluses ? ", boluses included" : "") << "):\n";
  // Consecutive hours that read the same on both sides share a row.
  // Two significant digits: a 15 min bucket holds whole steps, so the third digit is noise.
  auto hour_text = [](const std::optional<Figures>& x, int h) {
    if (!x) return std::string("-");
    const double v = x->by_hour[static_cast<std::size_t>(h)];
    if (!(v > 0)) return mass(v) + "/h";
    const double mag = std::pow(10.0, std::floor(std::log10(v)) - 1);
    return mass(std::round(v / mag) * mag) + "/h";
  };
  for (int h = 0; h < 24;) {
    int e = h + 1;
    while (e < 24 && hour_text(a, e) == hour_text(a, h) && hour_text(b, e) == hour_text(b, h)) ++e;
    char label[32];
    std::snprintf(label, sizeof label, "  %02d:00-%02d:00", h, e);
    row(label, hour_text(a, h), hour_text(b, h));
    h = e;
  }
  both("Patient boluses taken", [&](const Figures& x, const PreviewSide&) {
    return std::to_string(x.patient_boluses) + f(" (%.1f/day)", static_cast<double>(x.patient_boluses) / ctx.days);
  });
  both("Refill due (reservoir low alarm)", [](const Figures& x, const PreviewSide&) {
    return x.refill_due ? when(*x.refill_due) : "not within the preview (" + f("%.1f mL", x.end_reservoir_ul / 1000) + " left)";
  });
  both("Bridge (old solution at the tip)", [](const Figures& x, const PreviewSide&) {
    if (x.bridge.empty()) return std::string("none, or longer than the preview");
    double h = 0, m = 0;
    const auto k = x.bridge.find("bridge of ");
    const auto j = x.bridge.find("; ");
    if (k == std::string::npos || j == std::string::npos || std::sscanf(x.bridge.c_str() + k + 10, "%lf", &h) != 1 ||
        std::sscanf(x.bridge.c_str() + j + 2, "%lf", &m) != 1) {
      return x.bridge;
    }
    return f("%.1f h, ", h) + mass(m) + " at the tip";
  });
  o << "Alarms the pump would raise:\n";
  for (const auto* side : {&old_side, &new_side}) {
    const auto& fig = side == &old_side ? a : b;
    if (!fig) continue;
    if (fig->alarms.empty()) o << "  " << side->label << ": none\n";
    for (const auto& [code, first] : fig->alarms) {
      o << "  " << side->label << ": " << code << " first at " << when(first.first)
        << (first.second > 1 ? " (" + std::to_string(first.second) + " times)" : std::string()) << "\n";
    }
  }
  if (a && b && a->first_day_mcg > 0) {
    // The first 24 h: the bridge keeps the prescribed mass rate, and a reservoir that runs
    // dry later does not hide a unit typed wrong.
    const double ratio = b->first_day_mcg / a->first_day_mcg;
    if (ratio > 1.5 || ratio < 1 / 1.5) {
      o << "\nWARNING: in the first 24 h the new prescription gives " << f("%.2g", ratio)
        << " times the mass of the one in force.\n         If that is not intended, check every rate's unit "
           "(per day or per hour) and the concentration.\n";
    }
  } else if (b && !a && new_side.limit_mcg > 0 && b->max_rolling_mcg > 0.9 * new_side.limit_mcg) {
    o << "\nNote: the rolling 24 h comes within 10 % of its limit.\n";
  }
  return o.str();
}

std::string preview_svg(const PreviewSide& old_side, const PreviewSide& new_side, const PreviewContext& ctx) {
  constexpr double W = 960, H = 190, L = 80, R = 20, GAP = 40;
  const double pw = W - L - R;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << 3 * (H + GAP) + 40
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << L << "\" y=\"20\" font-size=\"14\">Preview over " << f("%g", ctx.days) << " days from "
    << when(ctx.start_us) << ": " << old_side.label << " (grey), " << new_side.label << " (blue)</text>\n";
  const double span_us = ctx.days * 86'400e6;
  auto x_of = [&](std::uint64_t t) { return L + pw * (static_cast<double>(t - ctx.start_us) / span_us); };
  struct Panel {
    const char* title;
    const char* unit;
    double (*value)(const PreviewBucket&, double bucket_h);
  };
  const Panel panels[] = {
      {"Mass rate at the catheter tip", "mcg/h", [](const PreviewBucket& b, double h) { return b.mcg / h; }},
      {"Rolling 24 h at the tip (dashed: the limit)", "mcg", [](const PreviewBucket& b, double) { return b.rolling_mcg; }},
      {"Reservoir", "mL", [](const PreviewBucket& b, double) { return b.reservoir_ul / 1000; }},
  };
  const double bucket_h = static_cast<double>(ctx.bucket_us) / 3.6e9;
  for (int i = 0; i < 3; ++i) {
    const Panel& p = panels[i];
    const double top = 40 + i * (H + GAP);
    double vmax = 0;
    for (const auto* s : {&old_side, &new_side}) {
      if (!s->preview) continue;
      for (const auto& b : s->preview->buckets) vmax = std::max(vmax, p.value(b, bucket_h));
      if (i == 1) vmax = std::max(vmax, s->limit_mcg / 1.0);
    }
    if (vmax <= 0) vmax = 1;
    vmax *= 1.1;
    auto y_of = [&](double v) { return top + H - H * (v / vmax); };
    o << "<text x=\"" << L << "\" y=\"" << top - 6 << "\">" << p.title << " (" << p.unit << ")</text>\n";
    o << "<rect x=\"" << L << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << H
      << "\" fill=\"none\" stroke=\"#999\"/>\n";
    for (int k = 0; k <= 4; ++k) {
      const double v = vmax * k / 4;
      o << "<text x=\"" << L - 6 << "\" y=\"" << y_of(v) + 4 << "\" text-anchor=\"end\">" << f("%.4g", v) << "</text>\n";
    }
    const int ndays = static_cast<int>(std::ceil(ctx.days));
    const int every = std::max(1, ndays / 10);
    for (int d = 0; d <= ndays; d += every) {
      const double x = L + pw * (d / ctx.days);
      if (x > L + pw + 0.5) break;
      o << "<line x1=\"" << x << "\" y1=\"" << top + H << "\" x2=\"" << x << "\" y2=\"" << top + H + 4
        << "\" stroke=\"#999\"/><text x=\"" << x << "\" y=\"" << top + H + 16 << "\" text-anchor=\"middle\">d" << d
        << "</text>\n";
    }
    for (const auto* s : {&old_side, &new_side}) {
      if (!s->preview) continue;
      const char* colour = s == &old_side ? "#888" : "#1f5fbf";
      o << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.2\" points=\"";
      for (const auto& b : s->preview->buckets) {
        o << f("%.1f", x_of(b.start_us)) << "," << f("%.1f", y_of(p.value(b, bucket_h))) << " ";
      }
      o << "\"/>\n";
      for (const auto& e : s->preview->events) {
        if (e.type != "bridge_end" || s != &new_side) continue;
        o << "<line x1=\"" << x_of(e.time_us) << "\" y1=\"" << top << "\" x2=\"" << x_of(e.time_us) << "\" y2=\""
          << top + H << "\" stroke=\"#2a2\" stroke-dasharray=\"3,3\"/>";
        if (i == 0) o << "<text x=\"" << x_of(e.time_us) + 4 << "\" y=\"" << top + 14 << "\" fill=\"#2a2\">bridge ends</text>";
        o << "\n";
      }
      if (i == 1 && s->limit_mcg > 0) {
        o << "<line x1=\"" << L << "\" y1=\"" << y_of(s->limit_mcg) << "\" x2=\"" << L + pw << "\" y2=\""
          << y_of(s->limit_mcg) << "\" stroke=\"" << (s == &old_side ? "#c88" : "#d00")
          << "\" stroke-dasharray=\"6,4\"/>\n";
      }
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace thecalctl
