#include "config/prescription.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

#include <date/date.h>

#include "config/motor_range.hpp"
#include "config/sha256.hpp"
#include "config/tz_offsets.hpp"
#include "config/yaml_reader.hpp"

namespace thecal::config {

namespace {

// ---- formatting for messages and the summary -----------------------------------------

std::string format_mass(Mass m) {
  const double v = to_mcg(m);
  return v >= 1000.0 ? format_number(to_mg(m)) + " mg" : format_number(v) + " mcg";
}

std::string format_concentration(Concentration c) {
  return to_mg_per_mL(c) >= 1.0 ? format_number(to_mg_per_mL(c)) + " mg/mL"
                                : format_number(to_mcg_per_mL(c)) + " mcg/mL";
}

std::string format_mass_rate(MassRate r) {
  const double per_day = to_mcg_per_day(r);
  return per_day >= 1000.0 ? format_number(per_day / 1000.0) + " mg/day" : format_number(per_day) + " mcg/day";
}

std::string format_time_of_day(Duration d) {
  const auto m = to_usec(d) / to_usec(minutes(1));
  std::array<char, 8> buf{};
  std::snprintf(buf.data(), buf.size(), "%02d:%02d", static_cast<int>((m / 60) % 24), static_cast<int>(m % 60));
  return buf.data();
}

std::string format_duration(Duration d) {
  const std::int64_t us = to_usec(d);
  if (us % to_usec(days(1)) == 0) return std::to_string(us / to_usec(days(1))) + " d";
  if (us % to_usec(hours(1)) == 0) return std::to_string(us / to_usec(hours(1))) + " h";
  if (us % to_usec(minutes(1)) == 0) return std::to_string(us / to_usec(minutes(1))) + " min";
  return format_number(to_seconds(d)) + " s";
}

constexpr std::size_t kMaxPatientId = 64;
constexpr std::uint64_t kMaxBolusesPerDay = 1000;

// "2026-11-27T09:00:00+01:00" or "...Z".  Returns the instant, and the written offset
// (nullopt for Z).
struct IsoTime {
  WallTime at;
  std::optional<Duration> offset;
};

std::optional<IsoTime> parse_iso8601(std::string_view s) {
  auto digits = [&](std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (s.size() < 20 || !digits(0, 4, y) || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' || !digits(8, 2, d) ||
      s[10] != 'T' || !digits(11, 2, h) || s[13] != ':' || !digits(14, 2, mi) || s[16] != ':' ||
      !digits(17, 2, se)) {
    return std::nullopt;
  }
  const date::year_month_day ymd{date::year{y}, date::month{static_cast<unsigned>(mo)},
                                 date::day{static_cast<unsigned>(d)}};
  if (y < 1970 || !ymd.ok() || h > 23 || mi > 59 || se > 59) return std::nullopt;
  std::optional<Duration> offset;
  const std::string_view zone = s.substr(19);
  if (zone != "Z") {
    int oh = 0, om = 0;
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || !digits(20, 2, oh) || zone[3] != ':' ||
        !digits(23, 2, om) || oh > 14 || om > 59) {
      return std::nullopt;
    }
    offset = (zone[0] == '-' ? -1 : 1) * (hours(oh) + minutes(om));
  }
  const auto local_days = date::sys_days{ymd}.time_since_epoch();
  const Duration local = std::chrono::duration_cast<Duration>(local_days) + hours(h) + minutes(mi) + seconds(se);
  return IsoTime{wall_us(to_usec(local - offset.value_or(Duration{0}))), offset};
}

std::string format_offset(Duration off) {
  const std::int64_t m = to_usec(off) / to_usec(minutes(1));
  const std::int64_t a = m < 0 ? -m : m;
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "%c%02d:%02d", m < 0 ? '-' : '+', static_cast<int>(a / 60),
                static_cast<int>(a % 60));
  return buf.data();
}

std::string format_wall(WallTime t, Duration offset) {
  const auto local = date::sys_time<std::chrono::microseconds>{std::chrono::microseconds{to_usec(t + offset)}};
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(local);
  return date::format("%Y-%m-%dT%H:%M:%S", secs) + format_offset(offset);
}

bool valid_patient_id(std::string_view s) {
  if (s.empty() || s.size() > kMaxPatientId) return false;
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// A positive duration, or not (reported).  (Not std::optional<Duration>: g++ 12 warns
// -Wmaybe-uninitialized on it where it is initialized.)
struct MaybeDuration {
  bool ok = false;
  Duration v{0};
};

MaybeDuration duration_of(Document& doc, const YamlNode* n) {
  if (n == nullptr) return {};
  const auto q = read_quantity(doc, *n, QuantitySpec{Dim::duration, Sign::positive, false});
  if (!q) return {};
  return MaybeDuration{true, q->duration};
}

// Everything read from the text, before the cross-field rules.
struct Draft {
  TherapyPlan plan;
  const Drug* drug = nullptr;
  bool have_conc = false;
  bool have_basal = false;     // every basal rate read
  bool have_periodic = true;   // every periodic dose read
  bool have_bolus = true;      // the patient bolus read (or absent)
  bool have_max_daily = false;
  bool override_soft = false;
  std::vector<const YamlNode*> rate_nodes;      // one per basal rate (continuous: one)
  std::vector<const YamlNode*> periodic_nodes;  // the `duration` node of each periodic dose
  const YamlNode* bolus_duration_node = nullptr;
  const YamlNode* max_daily_node = nullptr;
  const YamlNode* conc_node = nullptr;
  // admixture[i]: its library entry and nodes (nullptr where not read).
  struct Admix {
    const Drug* drug = nullptr;
    const YamlNode* max_daily_node = nullptr;
    bool have_conc = false;
    bool have_max_daily = false;
  };
  std::vector<Admix> admix;
};

void read_trial(Document& doc, const YamlNode* n, const PrescriptionContext& ctx, Draft& d,
                const YamlNode** ends_node, std::optional<IsoTime>& ends) {
  MapReader m(doc, n, {"ends"});
  const YamlNode* e = m.require("ends");
  if (e == nullptr) return;
  *ends_node = e;
  auto s = read_string(doc, *e);
  if (!s) return;
  ends = parse_iso8601(*s);
  if (!ends) {
    doc.problem(*e, "expected a date and time with UTC offset, like \"2026-11-27T09:00:00+01:00\", found " +
                        in_quotes(*s));
    return;
  }
  if (ends->at <= ctx.now) {
    doc.problem(*e, "the trial end " + in_quotes(*s) + " is not in the future");
  }
  d.plan.trial_ends = ends->at;
}

void read_drug(Document& doc, const YamlNode* n, const PrescriptionContext& ctx, Draft& d) {
  MapReader m(doc, n, {"name", "concentration"});
  if (const YamlNode* p = m.require("name")) {
    if (auto s = read_string(doc, *p)) {
      d.drug = ctx.drugs != nullptr ? ctx.drugs->find(*s) : nullptr;
      if (d.drug == nullptr) {
        std::string known;
        if (ctx.drugs != nullptr) {
          for (const Drug& g : ctx.drugs->drugs) known += (known.empty() ? "" : ", ") + g.name;
        }
        doc.problem(*p, "unknown drug " + in_quotes(*s) + " (the drug library has: " + known + ")");
      } else {
        d.plan.drug = d.drug->name;
        d.plan.max_in_reservoir = d.drug->max_in_reservoir;
      }
    }
  }
  if (const YamlNode* p = m.require("concentration")) {
    d.conc_node = p;
    if (auto c = read<Concentration>(doc, *p)) {
      d.plan.concentration = *c;
      d.have_conc = true;
      if (d.drug != nullptr && *c > d.drug->max_concentration) {
        doc.problem(*p, format_concentration(*c) + " is above the library's maximum concentration for " +
                            d.drug->name + " (" + format_concentration(d.drug->max_concentration) + ")");
      }
    }
  }
}

void read_reservoir(Document& doc, const YamlNode* n, Draft& d) {
  MapReader m(doc, n, {"capacity", "low_alarm"});
  std::optional<Volume> cap;
  std::optional<Volume> low;
  if (const YamlNode* p = m.require("capacity")) cap = read<Volume>(doc, *p);
  const YamlNode* low_node = m.require("low_alarm");
  if (low_node != nullptr) low = read<Volume>(doc, *low_node);
  if (cap) d.plan.reservoir_capacity = *cap;
  if (low) d.plan.low_alarm = *low;
  if (cap && low && *low >= *cap) {
    doc.problem(*low_node, "the low-reservoir alarm level must be below the capacity (" +
                               format_number(to_mL(*cap)) + " mL)");
  }
}

void read_basal(Document& doc, const YamlNode* n, Draft& d) {
  MapReader m(doc, n, {"mode", "rate", "steps", "periodic"});
  std::optional<std::size_t> mode;
  if (const YamlNode* p = m.require("mode")) mode = read_choice(doc, *p, {"continuous", "flex"});
  bool ok = mode.has_value();
  if (mode == 0U) {
    d.plan.basal_mode = BasalMode::continuous;
    m.forbid("steps", "steps are for mode flex only");
    if (const YamlNode* p = m.require("rate")) {
      if (auto r = read<MassRate>(doc, *p)) {
        d.plan.continuous_rate = *r;
        d.rate_nodes.push_back(p);
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
  } else if (mode == 1U) {
    d.plan.basal_mode = BasalMode::flex;
    m.forbid("rate", "rate is for mode continuous only; flex rates are in steps");
    const YamlNode* steps = m.require("steps");
    ok = steps != nullptr;
    if (steps != nullptr) {
      const auto items = read_list(doc, *steps);
      if (steps->kind != YamlNode::Kind::seq) ok = false;
      if (steps->kind == YamlNode::Kind::seq && items.empty()) {
        doc.problem(*steps, "a flex schedule needs at least one step, starting at 00:00");
        ok = false;
      }
      if (items.size() > kMaxFlexSteps) {
        doc.problem(*items[kMaxFlexSteps], "too many steps: at most " + std::to_string(kMaxFlexSteps));
        ok = false;
      }
      std::optional<Duration> prev;
      std::string prev_text;
      for (std::size_t i = 0; i < items.size() && i < kMaxFlexSteps; ++i) {
        MapReader s(doc, items[i], {"start", "rate"});
        if (!s.valid()) {
          ok = false;
          continue;
        }
        std::optional<Duration> start;
        std::optional<MassRate> rate;
        const YamlNode* start_node = s.require("start");
        if (start_node != nullptr) start = read_time_of_day(doc, *start_node);
        const YamlNode* rate_node = s.require("rate");
        if (rate_node != nullptr) rate = read<MassRate>(doc, *rate_node);
        if (start && i == 0 && *start != Duration{0}) {
          doc.problem(*start_node, "the schedule must start at 00:00, found " + in_quotes(start_node->value));
          ok = false;
        }
        if (start && prev) {
          if (*start == *prev) {
            doc.problem(*start_node, "overlaps the previous step, which also starts at " + prev_text);
            ok = false;
          } else if (*start < *prev) {
            doc.problem(*start_node, "out of order: starts at " + start_node->value +
                                         ", before the previous step (" + prev_text +
                                         "); steps must be in ascending start time");
            ok = false;
          }
        }
        if (start) {
          prev = start;
          prev_text = start_node->value;
        }
        if (start && rate) {
          d.plan.flex_steps.push_back(FlexStep{*start, *rate});
          d.rate_nodes.push_back(rate_node);
        } else {
          ok = false;
        }
      }
    }
  }
  d.have_basal = ok;

  if (const YamlNode* p = m.get("periodic")) {
    const auto items = read_list(doc, *p);
    if (p->kind != YamlNode::Kind::seq) d.have_periodic = false;
    if (items.size() > kMaxPeriodicDoses) {
      doc.problem(*items[kMaxPeriodicDoses], "too many periodic doses: at most " + std::to_string(kMaxPeriodicDoses));
      d.have_periodic = false;
    }
    for (std::size_t i = 0; i < items.size() && i < kMaxPeriodicDoses; ++i) {
      MapReader s(doc, items[i], {"at", "dose", "duration"});
      std::optional<Duration> at;
      std::optional<Mass> dose;
      const YamlNode* at_node = s.require("at");
      if (at_node != nullptr) at = read_time_of_day(doc, *at_node);
      if (const YamlNode* q = s.require("dose")) dose = read<Mass>(doc, *q);
      const YamlNode* dur_node = s.require("duration");
      const MaybeDuration dur = duration_of(doc, dur_node);
      bool dur_ok = dur.ok;
      if (dur.ok && dur.v >= hours(24)) {
        doc.problem(*dur_node, "a periodic dose must last less than 24 h");
        dur_ok = false;
      }
      if (!(at && dose && dur_ok)) {
        d.have_periodic = false;
        continue;
      }
      if (!d.plan.periodic.empty()) {
        const PeriodicDose& last = d.plan.periodic.back();
        if (*at <= last.at) {
          doc.problem(*at_node, "out of order: periodic doses must be in ascending time, and " + at_node->value +
                                    " is not after " + format_time_of_day(last.at));
          d.have_periodic = false;
        } else if (*at < last.at + last.duration) {
          doc.problem(*at_node, "overlaps the periodic dose at " + format_time_of_day(last.at) + ", which lasts until " +
                                    format_time_of_day(last.at + last.duration));
          d.have_periodic = false;
        }
      }
      d.plan.periodic.push_back(PeriodicDose{*at, *dose, dur.v});
      d.periodic_nodes.push_back(dur_node);
    }
    // The last dose of the day must end before the first one of the next day starts.
    if (d.have_periodic && d.plan.periodic.size() > 1) {
      const PeriodicDose& first = d.plan.periodic.front();
      const PeriodicDose& last = d.plan.periodic.back();
      if (last.at + last.duration > first.at + hours(24)) {
        doc.problem(*d.periodic_nodes.back(), "overlaps the next day's periodic dose at " +
                                                  format_time_of_day(first.at));
        d.have_periodic = false;
      }
    }
  }
}

void read_patient_bolus(Document& doc, const YamlNode* n, Draft& d) {
  MapReader m(doc, n, {"dose", "duration", "lockout", "max_per_day"});
  if (!m.valid()) {
    d.have_bolus = false;
    return;
  }
  std::optional<Mass> dose;
  std::optional<std::uint64_t> max;
  if (const YamlNode* p = m.require("dose")) dose = read<Mass>(doc, *p);
  const YamlNode* dur_node = m.require("duration");
  const MaybeDuration dur = duration_of(doc, dur_node);
  const YamlNode* lock_node = m.require("lockout");
  const MaybeDuration lockout = duration_of(doc, lock_node);
  if (const YamlNode* p = m.require("max_per_day")) max = read_uint(doc, *p, 1, kMaxBolusesPerDay);
  bool ok = dose && dur.ok && lockout.ok && max;
  if (dur.ok && dur.v >= hours(24)) {
    doc.problem(*dur_node, "a patient bolus must last less than 24 h");
    ok = false;
  } else if (dur.ok && lockout.ok && lockout.v < dur.v) {
    doc.problem(*lock_node, "the lockout (counted from the start of a bolus) must be at least the bolus duration (" +
                                format_duration(dur.v) + ")");
    ok = false;
  }
  if (ok) {
    d.plan.patient_bolus = PatientBolusRule{*dose, dur.v, lockout.v, static_cast<std::uint32_t>(*max)};
    d.bolus_duration_node = dur_node;
  } else {
    d.have_bolus = false;
  }
}

void read_limits(Document& doc, const YamlNode* n, Draft& d) {
  MapReader m(doc, n, {"max_daily_dose", "override_soft_limit"});
  if (const YamlNode* p = m.require("max_daily_dose")) {
    d.max_daily_node = p;
    if (auto v = read<Mass>(doc, *p)) {
      d.plan.max_daily_dose = *v;
      d.have_max_daily = true;
    }
  }
  if (const YamlNode* p = m.get("override_soft_limit")) {
    if (auto v = read_bool(doc, *p)) d.override_soft = *v;
  }
}

// `admixture:` (SPEC 3.1): the other drugs of the solution, each checked against the
// library like the primary drug; the daily checks that need the whole plan are in
// check_cross_fields.
void read_admixture(Document& doc, const YamlNode& n, const PrescriptionContext& ctx, Draft& d) {
  const auto items = read_list(doc, n);
  if (items.size() > kMaxAdmixture) {
    doc.problem(*items[kMaxAdmixture], "too many admixture drugs: at most " + std::to_string(kMaxAdmixture) +
                                           " besides drug.name");
  }
  std::vector<std::string> seen_at;  // where each admixture drug was named
  for (std::size_t i = 0; i < items.size() && i < kMaxAdmixture; ++i) {
    MapReader m(doc, items[i], {"name", "concentration", "max_daily_dose"});
    Draft::Admix a;
    AdmixtureDrug drug;
    if (const YamlNode* p = m.require("name")) {
      if (auto s = read_string(doc, *p)) {
        a.drug = ctx.drugs->find(*s);
        if (a.drug == nullptr) {
          std::string known;
          for (const Drug& g : ctx.drugs->drugs) known += (known.empty() ? "" : ", ") + g.name;
          doc.problem(*p, "unknown drug " + in_quotes(*s) + " (the drug library has: " + known + ")");
        } else {
          drug.name = a.drug->name;
          if (a.drug == d.drug) {
            doc.problem(*p, a.drug->name + " is already the prescription's drug (drug.name): a drug may appear once");
            a.drug = nullptr;
          }
          for (std::size_t j = 0; a.drug != nullptr && j < d.admix.size(); ++j) {
            if (d.admix[j].drug == a.drug) {
              doc.problem(*p, a.drug->name + " is already in the admixture (" + seen_at[j] +
                                  "): a drug may appear once");
              a.drug = nullptr;  // one problem is enough; no daily checks for the duplicate
              break;
            }
          }
        }
      }
      seen_at.push_back(p->path);
    } else {
      seen_at.emplace_back();
    }
    if (const YamlNode* p = m.require("concentration")) {
      if (auto c = read<Concentration>(doc, *p)) {
        drug.concentration = *c;
        a.have_conc = true;
        if (a.drug != nullptr && *c > a.drug->max_concentration) {
          doc.problem(*p, format_concentration(*c) + " is above the library's maximum concentration for " +
                              a.drug->name + " (" + format_concentration(a.drug->max_concentration) + ")");
        }
      }
    }
    if (const YamlNode* p = m.require("max_daily_dose")) {
      a.max_daily_node = p;
      if (auto v = read<Mass>(doc, *p)) {
        drug.max_daily_dose = *v;
        a.have_max_daily = true;
      }
    }
    d.plan.admixture.push_back(drug);
    d.admix.push_back(a);
  }
}

Mass basal_daily_mass(const TherapyPlan& p) {
  if (p.basal_mode == BasalMode::continuous) return p.continuous_rate * hours(24);
  Mass total;
  for (std::size_t i = 0; i < p.flex_steps.size(); ++i) {
    const Duration end = i + 1 < p.flex_steps.size() ? p.flex_steps[i + 1].start : hours(24);
    total += p.flex_steps[i].rate * (end - p.flex_steps[i].start);
  }
  return total;
}

Mass periodic_daily_mass(const TherapyPlan& p) {
  Mass total;
  for (const PeriodicDose& d : p.periodic) total += d.dose;
  return total;
}

Mass bolus_daily_mass(const TherapyPlan& p) {
  return p.patient_bolus ? p.patient_bolus->dose * static_cast<double>(p.patient_bolus->max_per_day) : Mass{};
}

MassRate max_basal_rate(const TherapyPlan& p) {
  if (p.basal_mode == BasalMode::continuous) return p.continuous_rate;
  MassRate m;
  for (const FlexStep& s : p.flex_steps) m = std::max(m, s.rate);
  return m;
}

void check_cross_fields(Document& doc, const PrescriptionContext& ctx, Draft& d) {
  TherapyPlan& p = d.plan;
  // Daily dose against the library.
  if (d.drug != nullptr && d.have_max_daily) {
    if (p.max_daily_dose > d.drug->hard_max_daily) {
      doc.problem(*d.max_daily_node, format_mass(p.max_daily_dose) + " is above the library's hard maximum for " +
                                         d.drug->name + " (" + format_mass(d.drug->hard_max_daily) + " per day)");
    } else if (p.max_daily_dose > d.drug->soft_max_daily && !d.override_soft) {
      doc.problem(*d.max_daily_node, format_mass(p.max_daily_dose) + " is above the library's soft maximum for " +
                                         d.drug->name + " (" + format_mass(d.drug->soft_max_daily) +
                                         " per day): confirm with limits.override_soft_limit: true");
    }
  }
  // Planned daily mass against max_daily_dose.
  if (d.have_max_daily && d.have_basal && d.have_periodic && d.have_bolus) {
    const Mass basal = basal_daily_mass(p);
    const Mass periodic = periodic_daily_mass(p);
    const Mass bolus = bolus_daily_mass(p);
    const Mass total = basal + periodic + bolus;
    if (total > p.max_daily_dose) {
      doc.problem(*d.max_daily_node, "the planned daily mass " + format_mass(total) + " (basal " + format_mass(basal) +
                                         " + periodic " + format_mass(periodic) + " + patient boluses " +
                                         format_mass(bolus) + ") is above max_daily_dose " +
                                         format_mass(p.max_daily_dose));
    }
  }
  // Each admixture drug: its limit against the library, its planned daily mass (the
  // primary's, in the ratio of the concentrations) against its limit.
  for (std::size_t i = 0; i < d.admix.size(); ++i) {
    const Draft::Admix& a = d.admix[i];
    const AdmixtureDrug& x = p.admixture[i];
    if (a.drug == nullptr || !a.have_max_daily) continue;
    if (x.max_daily_dose > a.drug->hard_max_daily) {
      doc.problem(*a.max_daily_node, format_mass(x.max_daily_dose) + " is above the library's hard maximum for " +
                                         a.drug->name + " (" + format_mass(a.drug->hard_max_daily) + " per day)");
      continue;
    }
    if (x.max_daily_dose > a.drug->soft_max_daily && !d.override_soft) {
      doc.problem(*a.max_daily_node, format_mass(x.max_daily_dose) + " is above the library's soft maximum for " +
                                         a.drug->name + " (" + format_mass(a.drug->soft_max_daily) +
                                         " per day): confirm with limits.override_soft_limit: true");
    }
    if (a.have_conc && d.have_conc && d.have_basal && d.have_periodic && d.have_bolus) {
      const Mass primary = basal_daily_mass(p) + periodic_daily_mass(p) + bolus_daily_mass(p);
      const Mass planned = primary * (x.concentration / p.concentration);
      if (planned > x.max_daily_dose) {
        doc.problem(*a.max_daily_node, "the planned daily mass of " + a.drug->name + " " + format_mass(planned) +
                                           " (" + format_mass(primary) + " of " + std::string(p.drug.view()) +
                                           " at " + format_concentration(x.concentration) + " : " +
                                           format_concentration(p.concentration) + ") is above its max_daily_dose " +
                                           format_mass(x.max_daily_dose));
      }
    }
  }
  // Reachable motor rates.
  if (!d.have_conc) return;
  auto volume_rate = [&](MassRate r) { return r / p.concentration; };
  if (d.have_basal) {
    for (std::size_t i = 0; i < d.rate_nodes.size(); ++i) {
      const MassRate r = p.basal_mode == BasalMode::continuous ? p.continuous_rate : p.flex_steps[i].rate;
      if (auto why = check_reachable(volume_rate(r), ctx.board)) {
        doc.problem(*d.rate_nodes[i], format_mass_rate(r) + " at " + format_concentration(p.concentration) + " " + *why);
      }
    }
  }
  const VolumeRate basal_top = d.have_basal ? volume_rate(max_basal_rate(p)) : VolumeRate{};
  auto check_bolus = [&](Mass dose, Duration dur, const YamlNode& at, const char* what) {
    const VolumeRate bolus_rate = uL_per_h(to_uL(dose / p.concentration) * 3600.0 / to_seconds(dur));
    if (auto why = check_reachable(bolus_rate, ctx.board); why && bolus_rate < min_volume_rate(ctx.board)) {
      doc.problem(at, std::string(what) + " " + format_mass(dose) + " over " + format_duration(dur) + " at " +
                          format_concentration(p.concentration) + " " + *why);
    } else if (auto why2 = check_reachable(bolus_rate + basal_top, ctx.board)) {
      doc.problem(at, std::string(what) + " " + format_mass(dose) + " over " + format_duration(dur) + " at " +
                          format_concentration(p.concentration) + " on top of the highest basal rate " + *why2);
    }
  };
  if (d.have_periodic) {
    for (std::size_t i = 0; i < p.periodic.size(); ++i) {
      check_bolus(p.periodic[i].dose, p.periodic[i].duration, *d.periodic_nodes[i], "periodic dose");
    }
  }
  if (d.have_bolus && p.patient_bolus) {
    check_bolus(p.patient_bolus->dose, p.patient_bolus->duration, *d.bolus_duration_node, "patient bolus");
  }
}

}  // namespace

LoadedPrescription parse_prescription(std::string_view text, const std::string& file,
                                      const PrescriptionContext& ctx) {
  LoadedPrescription out;
  Document doc(text, file, out.problems);
  if (doc.root() == nullptr) return out;
  if (ctx.drugs == nullptr) {
    doc.problem(0, 0, "", "no drug library is loaded: a prescription cannot be checked without one");
    return out;
  }
  Draft d;
  MapReader top(doc, doc.root(),
                {"version", "patient", "phase", "trial", "drug", "reservoir", "catheter", "timezone", "basal",
                 "patient_bolus", "limits", "admixture"});
  if (const YamlNode* p = top.require("version")) read_version(doc, *p);
  if (const YamlNode* p = top.require("patient")) {
    if (auto s = read_string(doc, *p)) {
      if (valid_patient_id(*s)) {
        d.plan.patient = *s;
      } else {
        doc.problem(*p, "a patient id is 1 to 64 letters, digits, '.', '_' or '-' (an opaque code, no personal data), found " +
                            in_quotes(*s));
      }
    }
  }
  const YamlNode* ends_node = nullptr;
  std::optional<IsoTime> ends;
  if (const YamlNode* p = top.require("phase")) {
    if (auto ph = read_choice(doc, *p, {"trial", "maintenance"})) {
      if (*ph == 0) {
        d.plan.phase = Phase::trial;
        read_trial(doc, top.require("trial"), ctx, d, &ends_node, ends);
      } else {
        d.plan.phase = Phase::maintenance;
        top.forbid("trial", "trial is for phase trial only");
      }
    }
  }
  read_drug(doc, top.require("drug"), ctx, d);
  read_reservoir(doc, top.require("reservoir"), d);
  {
    MapReader m(doc, top.require("catheter"), {"volume"});
    if (const YamlNode* p = m.require("volume")) {
      if (auto v = read<Volume>(doc, *p)) d.plan.catheter_volume = *v;
    }
  }
  if (const YamlNode* p = top.require("timezone")) {
    if (auto s = read_string(doc, *p)) {
      UtcOffsetTable table;
      if (auto err = compute_utc_offsets(*s, ctx.now, table)) {
        doc.problem(*p, in_quotes(*s) + ": " + *err + " (use a tz database name like \"Europe/Berlin\")");
      } else {
        d.plan.timezone = *s;
        d.plan.utc_offsets = table;
        if (ends && ends->offset) {
          const Duration zone_off = utc_offset_at(table, ends->at);
          if (zone_off != *ends->offset) {
            doc.problem(*ends_node, "the UTC offset " + format_offset(*ends->offset) + " does not match " + *s +
                                        " at that time (" + format_offset(zone_off) +
                                        "): write the local time with its offset, or use Z");
          }
        }
      }
    }
  }
  read_basal(doc, top.require("basal"), d);
  if (const YamlNode* p = top.get("patient_bolus")) read_patient_bolus(doc, p, d);
  read_limits(doc, top.require("limits"), d);
  if (const YamlNode* p = top.get("admixture")) read_admixture(doc, *p, ctx, d);
  check_cross_fields(doc, ctx, d);

  if (!out.problems.empty()) return out;
  d.plan.id = sha256_hex(text);
  out.plan = std::move(d.plan);
  return out;
}

// ---- summary ------------------------------------------------------------------------------

std::string summarize(const TherapyPlan& plan, const BoardParams& board) {
  std::string s;
  auto line = [&](const std::string& l) { s += l + "\n"; };
  const UtcOffsetTable& offsets = plan.utc_offsets;
  line("Prescription " + std::string(plan.id.view()) + " for patient " + std::string(plan.patient.view()));
  if (plan.phase == Phase::trial && plan.trial_ends) {
    line("Phase:      trial, delivery stops by itself at " + format_wall(*plan.trial_ends, utc_offset_at(offsets, *plan.trial_ends)) +
         " (" + std::string(plan.timezone.view()) + ")");
  } else {
    line("Phase:      maintenance");
  }
  line("Drug:       " + std::string(plan.drug.view()) + " " + format_concentration(plan.concentration) + " (" +
       format_number(to_mcg_per_mL(plan.concentration)) + " mcg/mL)");
  for (const AdmixtureDrug& x : plan.admixture) {
    line("Admixture:  " + std::string(x.name.view()) + " " + format_concentration(x.concentration) + " (" +
         format_number(to_mcg_per_mL(x.concentration)) + " mcg/mL), max_daily_dose " + format_mass(x.max_daily_dose));
  }
  if (plan.basal_mode == BasalMode::continuous) {
    line("Basal:      continuous " + format_mass_rate(plan.continuous_rate));
  } else {
    std::string steps;
    for (const FlexStep& f : plan.flex_steps) {
      steps += (steps.empty() ? "" : ", ") + format_time_of_day(f.start) + " " + format_mass_rate(f.rate);
    }
    line("Basal:      flex (" + std::string(plan.timezone.view()) + " local time): " + steps);
  }
  for (const PeriodicDose& p : plan.periodic) {
    line("Periodic:   " + format_mass(p.dose) + " at " + format_time_of_day(p.at) + " over " + format_duration(p.duration));
  }
  if (plan.patient_bolus) {
    const PatientBolusRule& b = *plan.patient_bolus;
    line("Patient:    bolus of " + format_mass(b.dose) + " over " + format_duration(b.duration) + ", lockout " +
         format_duration(b.lockout) + ", at most " + std::to_string(b.max_per_day) + " per 24 h");
  } else {
    line("Patient:    no patient bolus");
  }
  const Mass basal = basal_daily_mass(plan);
  const Mass periodic = periodic_daily_mass(plan);
  const Mass bolus = bolus_daily_mass(plan);
  const Mass total = basal + periodic + bolus;
  line("Daily mass by source (the most the plan can give in 24 h):");
  line("  basal              " + format_mass(basal));
  line("  periodic doses     " + format_mass(periodic));
  line("  patient boluses    " + format_mass(bolus));
  line("  total              " + format_mass(total) + " of max_daily_dose " + format_mass(plan.max_daily_dose) + " (" +
       format_number(100.0 * (total / plan.max_daily_dose)) + " %)");
  for (const AdmixtureDrug& x : plan.admixture) {
    const Mass m = total * (x.concentration / plan.concentration);
    line("  " + std::string(x.name.view()) + " with it: " + format_mass(m) + " of max_daily_dose " +
         format_mass(x.max_daily_dose) + " (" + format_number(100.0 * (m / x.max_daily_dose)) + " %)");
  }
  const double basal_ul_day = to_uL(basal / plan.concentration);
  const double total_ul_day = to_uL(total / plan.concentration);
  line("Volume:     " + format_number(basal_ul_day) + " uL/day basal, " + format_number(total_ul_day) +
       " uL/day with every periodic and patient dose");
  const double usable = to_uL(plan.reservoir_capacity - plan.low_alarm);
  line("Reservoir:  " + format_number(to_mL(plan.reservoir_capacity)) + " mL, low alarm at " +
       format_number(to_mL(plan.low_alarm)) + " mL: " + format_number(usable / total_ul_day) +
       " days to the low alarm with every dose taken, " + format_number(usable / basal_ul_day) + " on basal only");
  if (plan.max_in_reservoir > Duration{0}) {
    line("Stability:  " + format_number(to_seconds(plan.max_in_reservoir) / 86400.0) +
         " days in the reservoir (drug library max_days_in_reservoir): refill by then whatever is left");
  }
  const double prime_min = to_uL(plan.catheter_volume) / to_uL_per_h(board.prime_rate) * 60.0;
  line("Catheter:   " + format_number(to_uL(plan.catheter_volume)) + " uL dead volume; priming at " +
       format_number(to_uL_per_h(board.prime_rate)) + " uL/h takes " + format_number(prime_min) + " min");
  line("Pump:       " + format_number(to_uL(board.volume_per_step)) + " uL per step; basal needs " +
       format_number(basal_ul_day / to_uL(board.volume_per_step)) + " steps/day");
  return s;
}

}  // namespace thecal::config
