// thecalctl: the command-line programmer for thecald, in the style of timedatectl/busctl.
//
//   thecalctl [--system|--user|--address ADDR] [--json] COMMAND [ARGS]
//
// Human units in and out ("1.5 mg/day", "18.2 mL", "10 min"); D-Bus carries the canonical
// units of SPEC section 3 (mcg, uL, us).  Exit codes tell failures apart (see kExit*).
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "dbus/bus_connection.hpp"
#include "dbus/names.hpp"
#include "thecalctl/preview_report.hpp"

namespace po = boost::program_options;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;       // anything else
constexpr int kExitUsage = 2;         // bad command line or argument
constexpr int kExitNoPump = 3;        // cannot reach the bus or the daemon
constexpr int kExitDenied = 4;        // AccessDenied: the caller lacks the role
constexpr int kExitRefused = 5;       // the pump refused: state, lockout, limits, range
constexpr int kExitInvalid = 6;       // InvalidPrescription

constexpr const char* kService = thecal::dbus::kBusName;
namespace prop = thecal::dbus::pump_property;
constexpr const char* kPath = thecal::dbus::kObjectPath;
constexpr const char* kIface = thecal::dbus::kPumpInterface;
constexpr const char* kSimIface = thecal::dbus::kSimulatorInterface;
constexpr const char* kDiagIface = thecal::dbus::kDiagnosticsInterface;

struct Global {
  std::string bus = "system";
  bool json = false;
};

// ---- units --------------------------------------------------------------------------------

struct UnitDef {
  const char* name;
  double factor;  // to canonical (mcg, uL, us)
};

const std::map<std::string, std::vector<UnitDef>> kUnits = {
    {"mass", {{"mcg", 1}, {"ug", 1}, {"µg", 1}, {"mg", 1000}}},
    {"volume", {{"uL", 1}, {"µL", 1}, {"mL", 1000}}},
    {"duration", {{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"min", 60e6}, {"h", 3600e6}, {"d", 86400e6}}},
};

/// Parses "1.5 mg" / "220uL" / "10 min" into canonical units; nullopt with a message.
std::optional<double> parse_quantity(const std::string& text, const std::string& dim, std::string& err) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    err = "'" + text + "' is not a number with a unit";
    return std::nullopt;
  }
  std::string unit = text.substr(pos);
  unit.erase(0, unit.find_first_not_of(' '));
  if (!std::isfinite(v) || v < 0) {
    err = "'" + text + "' must be a finite, non-negative quantity";
    return std::nullopt;
  }
  if (unit.empty()) {
    err = "'" + text + "' needs a unit";
    return std::nullopt;
  }
  for (const auto& u : kUnits.at(dim)) {
    if (unit == u.name) return v * u.factor;
  }
  err = "'" + text + "': unknown " + dim + " unit '" + unit + "'";
  return std::nullopt;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string human_mass(double mcg) {
  if (std::isnan(mcg)) return "n/a";
  if (std::fabs(mcg) >= 1000) return fmt("%.3g mg", mcg / 1000);
  return fmt("%.3g mcg", mcg);
}
std::string human_volume(double ul) {
  if (std::isnan(ul)) return "n/a";
  if (std::fabs(ul) >= 1000) return fmt("%.1f mL", ul / 1000);
  return fmt("%.1f uL", ul);
}
std::string human_rate(double mcg_per_day) {
  if (mcg_per_day >= 1000) return fmt("%.4g mg/day", mcg_per_day / 1000);
  return fmt("%.4g mcg/day", mcg_per_day);
}
std::string human_conc(double mcg_per_ml) {
  if (mcg_per_ml >= 1000) return fmt("%.4g mg/mL", mcg_per_ml / 1000);
  return fmt("%.4g mcg/mL", mcg_per_ml);
}
std::string human_time(std::uint64_t usec) {
  if (usec == 0) return "n/a";
  const time_t t = static_cast<time_t>(usec / 1'000'000);
  tm local{};
  localtime_r(&t, &local);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &local);
  return buf;
}
std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) o += fmt("\\u%04x", static_cast<unsigned char>(c));
        else o += c;
    }
  }
  return o;
}
std::string json_num(double v) { return std::isfinite(v) ? fmt("%.17g", v) : "null"; }

// ---- bus ----------------------------------------------------------------------------------

class Bus {
 public:
  explicit Bus(const std::string& which) {
    const int r = thecal::dbus::open_bus(which, &bus_);
    if (r < 0) error_ = std::string("cannot connect to the ") + which + " bus: " + std::strerror(-r);
  }
  ~Bus() { sd_bus_flush_close_unref(bus_); }
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  [[nodiscard]] sd_bus* get() const { return bus_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  sd_bus* bus_ = nullptr;
  std::string error_;
};

int exit_for_error(const sd_bus_error& e) {
  const std::string name = e.name != nullptr ? e.name : "";
  if (name == thecal::dbus::kErrAccessDenied) return kExitDenied;
  if (name == thecal::dbus::kErrInvalidPrescription) return kExitInvalid;
  if (name.rfind(thecal::dbus::kErrorPrefix, 0) == 0) return kExitRefused;
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NoReply" ||
      name == "org.freedesktop.DBus.Error.NameHasNoOwner")
    return kExitNoPump;
  return kExitFailure;
}

int report(const sd_bus_error& e, int r) {
  if (sd_bus_error_is_set(&e)) {
    std::cerr << "thecalctl: " << (e.message != nullptr ? e.message : "") << " (" << e.name << ")\n";
    return exit_for_error(e);
  }
  std::cerr << "thecalctl: " << std::strerror(-r) << "\n";
  return kExitFailure;
}

/// Calls a Pump1 method; on success `reply` holds the reply (caller unrefs).
int call(sd_bus* bus, const char* iface, const char* method, sd_bus_message** reply, const char* sig, ...) {
  sd_bus_message* m = nullptr;
  int r = sd_bus_message_new_method_call(bus, &m, kService, kPath, iface, method);
  if (r < 0) return r;
  if (sig != nullptr && *sig != '\0') {
    va_list ap;
    va_start(ap, sig);
    r = sd_bus_message_appendv(m, sig, ap);
    va_end(ap);
    if (r < 0) {
      sd_bus_message_unref(m);
      return r;
    }
  }
  sd_bus_error e = SD_BUS_ERROR_NULL;
  r = sd_bus_call(bus, m, 30'000'000, &e, reply);
  sd_bus_message_unref(m);
  if (r < 0) {
    const int code = report(e, r);
    sd_bus_error_free(&e);
    return -code;
  }
  return 0;
}

// ---- status -------------------------------------------------------------------------------

struct Alarm {
  std::string code, priority, message;
  std::uint64_t raised = 0;
};

struct DrugFigure {
  std::string name;
  double conc = 0, delivered = 0, limit = 0;
};

struct PumpStatus {
  std::vector<DrugFigure> drugs;  // Drugs: primary first, then the admixture
  std::string state, phase, id, drug;
  double conc = 0, basal = 0, reservoir = 0, capacity = 0, delivered = 0, limit = 0, battery = 0, accuracy = NAN;
  bool primed = false, bolus = false;
  std::uint32_t boluses = 0;
  std::uint64_t next_bolus = 0, refill_due = 0, trial_ends = 0, solution_expires = 0;
  double catheter_ul = 0;
  std::vector<Alarm> alarms;
};

int read_alarms(sd_bus_message* m, std::vector<Alarm>& out) {
  int r = sd_bus_message_enter_container(m, 'a', "(ssst)");
  if (r < 0) return r;
  const char *c = nullptr, *p = nullptr, *msg = nullptr;
  std::uint64_t t = 0;
  while ((r = sd_bus_message_read(m, "(ssst)", &c, &p, &msg, &t)) > 0) out.push_back({c, p, msg, t});
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

int read_drugs(sd_bus_message* m, std::vector<DrugFigure>& out) {
  int r = sd_bus_message_enter_container(m, 'a', "(sddd)");
  if (r < 0) return r;
  const char* name = nullptr;
  double c = 0, d = 0, l = 0;
  while ((r = sd_bus_message_read(m, "(sddd)", &name, &c, &d, &l)) > 0) out.push_back({name, c, d, l});
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

int get_status(sd_bus* bus, PumpStatus& s) {
  sd_bus_message* reply = nullptr;
  int r = call(bus, "org.freedesktop.DBus.Properties", "GetAll", &reply, "s", kIface);
  if (r < 0) return r;
  r = sd_bus_message_enter_container(reply, 'a', "{sv}");
  while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
    const char* name = nullptr;
    r = sd_bus_message_read(reply, "s", &name);
    if (r < 0) break;
    const std::string n = name;
    const char* contents = nullptr;
    r = sd_bus_message_peek_type(reply, nullptr, &contents);
    if (r < 0) break;
    r = sd_bus_message_enter_container(reply, 'v', contents);
    if (r < 0) break;
    const std::string sig = contents;
    if (sig == "s") {
      const char* v = nullptr;
      r = sd_bus_message_read(reply, "s", &v);
      if (n == prop::kState) s.state = v;
      else if (n == prop::kPhase) s.phase = v;
      else if (n == prop::kPrescriptionId) s.id = v;
      else if (n == prop::kDrug) s.drug = v;
    } else if (sig == "d") {
      double v = 0;
      r = sd_bus_message_read(reply, "d", &v);
      if (n == prop::kConcentrationMcgPerMl) s.conc = v;
      else if (n == prop::kBasalRateMcgPerDay) s.basal = v;
      else if (n == prop::kReservoirUl) s.reservoir = v;
      else if (n == prop::kReservoirCapacityUl) s.capacity = v;
      else if (n == prop::kDelivered24hMcg) s.delivered = v;
      else if (n == prop::kDailyLimitMcg) s.limit = v;
      else if (n == prop::kBatteryPercent) s.battery = v;
      else if (n == prop::kRefillAccuracyPercent) s.accuracy = v;
      else if (n == prop::kCatheterVolumeUl) s.catheter_ul = v;
    } else if (sig == "b") {
      int v = 0;
      r = sd_bus_message_read(reply, "b", &v);
      if (n == prop::kCatheterPrimed) s.primed = v != 0;
      else if (n == prop::kBolusActive) s.bolus = v != 0;
    } else if (sig == "u") {
      r = sd_bus_message_read(reply, "u", &s.boluses);
    } else if (sig == "t") {
      std::uint64_t v = 0;
      r = sd_bus_message_read(reply, "t", &v);
      if (n == prop::kNextPatientBolusUsec) s.next_bolus = v;
      else if (n == prop::kRefillDueUsec) s.refill_due = v;
      else if (n == prop::kTrialEndsUsec) s.trial_ends = v;
      else if (n == prop::kSolutionExpiresUsec) s.solution_expires = v;
    } else if (sig == "a(ssst)") {
      r = read_alarms(reply, s.alarms);
    } else if (sig == "a(sddd)" && n == prop::kDrugs) {
      r = read_drugs(reply, s.drugs);
    } else {
      r = sd_bus_message_skip(reply, contents);
    }
    if (r < 0) break;
    r = sd_bus_message_exit_container(reply);  // v
    if (r < 0) break;
    r = sd_bus_message_exit_container(reply);  // e
  }
  sd_bus_message_unref(reply);
  if (r < 0) {
    std::cerr << "thecalctl: cannot parse the pump's properties: " << std::strerror(-r) << "\n";
    return -kExitFailure;
  }
  return 0;
}

void print_status(const PumpStatus& s, bool json) {
  if (json) {
    std::cout << "{\"state\":\"" << s.state << "\",\"phase\":\"" << s.phase << "\",\"prescription_id\":\"" << s.id
              << "\",\"drug\":\"" << json_escape(s.drug) << "\",\"concentration_mcg_per_ml\":" << json_num(s.conc)
              << ",\"basal_rate_mcg_per_day\":" << json_num(s.basal) << ",\"reservoir_ul\":" << json_num(s.reservoir)
              << ",\"reservoir_capacity_ul\":" << json_num(s.capacity) << ",\"catheter_primed\":"
              << (s.primed ? "true" : "false") << ",\"delivered_24h_mcg\":" << json_num(s.delivered)
              << ",\"daily_limit_mcg\":" << json_num(s.limit) << ",\"patient_boluses_today\":" << s.boluses
              << ",\"next_patient_bolus_usec\":" << s.next_bolus << ",\"bolus_active\":" << (s.bolus ? "true" : "false")
              << ",\"battery_percent\":" << json_num(s.battery) << ",\"refill_due_usec\":" << s.refill_due
              << ",\"trial_ends_usec\":" << s.trial_ends << ",\"solution_expires_usec\":" << s.solution_expires
              << ",\"catheter_volume_ul\":" << json_num(s.catheter_ul) << ",\"refill_accuracy_percent\":" << json_num(s.accuracy)
              << ",\"drugs\":[";
    for (std::size_t i = 0; i < s.drugs.size(); ++i) {
      const auto& d = s.drugs[i];
      std::cout << (i ? "," : "") << "{\"name\":\"" << json_escape(d.name) << "\",\"concentration_mcg_per_ml\":"
                << json_num(d.conc) << ",\"delivered_24h_mcg\":" << json_num(d.delivered)
                << ",\"daily_limit_mcg\":" << json_num(d.limit) << "}";
    }
    std::cout << "],\"alarms\":[";
    for (std::size_t i = 0; i < s.alarms.size(); ++i) {
      const auto& a = s.alarms[i];
      std::cout << (i ? "," : "") << "{\"code\":\"" << a.code << "\",\"priority\":\"" << a.priority
                << "\",\"message\":\"" << json_escape(a.message) << "\",\"raised_usec\":" << a.raised << "}";
    }
    std::cout << "]}\n";
    return;
  }
  auto row = [](const char* k, const std::string& v) { std::printf("%20s: %s\n", k, v.c_str()); };
  row("State", s.state);
  row("Phase", s.phase.empty() ? "no prescription" : s.phase);
  if (!s.drug.empty()) row("Drug", s.drug + ", " + human_conc(s.conc));
  if (!s.id.empty()) row("Prescription", s.id.substr(0, 16) + "…");
  row("Basal rate", human_rate(s.basal));
  row("Reservoir", human_volume(s.reservoir) + " of " + human_volume(s.capacity));
  row("Catheter", human_volume(s.catheter_ul) + " dead volume, " + (s.primed ? "primed" : "NOT primed"));
  row("Delivered (24 h)", human_mass(s.delivered) + " of " + human_mass(s.limit) + " limit");
  // An admixture: every other drug of the solution, its own 24 h mass against its own limit.
  for (std::size_t i = 1; i < s.drugs.size(); ++i) {
    const auto& d = s.drugs[i];
    row(i == 1 ? "Admixture (24 h)" : "", d.name + ", " + human_conc(d.conc) + ": " + human_mass(d.delivered) + " of " +
                                              human_mass(d.limit) + " limit");
  }
  row("Patient boluses", std::to_string(s.boluses) + " in 24 h; next allowed " +
                             (s.next_bolus == 0 ? std::string("now") : human_time(s.next_bolus)));
  row("Bolus", s.bolus ? "running" : "none");
  row("Battery", fmt("%.1f %%", s.battery));
  row("Refill due", human_time(s.refill_due));
  if (s.solution_expires != 0) row("Solution expires", human_time(s.solution_expires));
  if (s.trial_ends != 0) row("Trial ends", human_time(s.trial_ends));
  row("Refill accuracy", std::isnan(s.accuracy) ? "not measured yet" : fmt("%.1f %%", s.accuracy));
  if (s.alarms.empty()) row("Alarms", "none");
  for (std::size_t i = 0; i < s.alarms.size(); ++i) {
    const auto& a = s.alarms[i];
    row(i == 0 ? "Alarms" : "", a.priority + " " + a.code + ": " + a.message);
  }
}

// ---- commands -----------------------------------------------------------------------------

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

using Args = std::vector<std::string>;

int need_args(const Args& a, std::size_t min, std::size_t max, const char* usage) {
  if (a.size() < min || a.size() > max) {
    std::cerr << "thecalctl: usage: thecalctl " << usage << "\n";
    return kExitUsage;
  }
  return kExitOk;
}

int simple(sd_bus* bus, const char* method) {
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, method, &reply, "");
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

int cmd_status(sd_bus* bus, const Global& g) {
  PumpStatus s;
  const int r = get_status(bus, s);
  if (r < 0) return -r;
  print_status(s, g.json);
  return kExitOk;
}

// ---- preview (PreviewPrescription; the words and the plot: thecalctl/preview_report.cpp) ----

constexpr double kPreviewDays = 90;
constexpr std::uint64_t kPreviewBucketUs = 15ULL * 60 * 1'000'000;

/// PreviewPrescription into `out`; 0, or an exit code with the pump's message in `why`.
int fetch_preview(sd_bus* bus, const std::string& yaml, bool boluses, double days, thecalctl::Preview& out,
                  std::string& why) {
  sd_bus_message* m = nullptr;
  sd_bus_message* reply = nullptr;
  const auto horizon = static_cast<std::uint64_t>(std::llround(days * 86'400e6));
  int r = sd_bus_message_new_method_call(bus, &m, kService, kPath, kIface, "PreviewPrescription");
  if (r >= 0) r = sd_bus_message_append(m, "sbtt", yaml.c_str(), static_cast<int>(boluses), horizon, kPreviewBucketUs);
  sd_bus_error e = SD_BUS_ERROR_NULL;
  if (r >= 0) r = sd_bus_call(bus, m, 300'000'000, &e, &reply);
  sd_bus_message_unref(m);
  if (r < 0) {
    why = sd_bus_error_is_set(&e) ? e.message : std::strerror(-r);
    const int code = sd_bus_error_is_set(&e) ? exit_for_error(e) : kExitFailure;
    sd_bus_error_free(&e);
    return code;
  }
  thecalctl::PreviewBucket b;
  r = sd_bus_message_enter_container(reply, 'a', "(tdddd)");
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tdddd)", &b.start_us, &b.mcg, &b.ul, &b.reservoir_ul, &b.rolling_mcg)) > 0) {
    out.buckets.push_back(b);
  }
  if (r >= 0) r = sd_bus_message_exit_container(reply);
  if (r >= 0) r = sd_bus_message_enter_container(reply, 'a', "(tss)");
  std::uint64_t t = 0;
  const char *type = nullptr, *detail = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tss)", &t, &type, &detail)) > 0) out.events.push_back({t, type, detail});
  sd_bus_message_unref(reply);
  if (r < 0) {
    why = std::string("cannot read the preview: ") + std::strerror(-r);
    return kExitFailure;
  }
  return kExitOk;
}

/// The prescription in force against `text` over `days`; prints the summary (and the SVG).
int show_preview(sd_bus* bus, const Global& g, const std::string& file, const std::string& text, double days, bool boluses,
                 const std::string& svg) {
  PumpStatus st;
  if (int r = get_status(bus, st); r < 0) return -r;
  thecalctl::PreviewSide now_side{"in force" + (st.drug.empty() ? std::string() : " (" + st.drug + ")"), std::nullopt, "", st.limit};
  thecalctl::PreviewSide new_side{file.substr(file.find_last_of('/') + 1), std::nullopt, "", 0};
  new_side.limit_mcg = thecalctl::max_daily_dose_in(text).value_or(0);
  new_side.drugs = thecalctl::solution_in(text);
  for (const auto& d : st.drugs) now_side.drugs.push_back({d.name, d.conc, d.limit});
  thecalctl::Preview p;
  std::string why;
  if (int r = fetch_preview(bus, text, boluses, days, p, why); r != kExitOk) {
    std::cerr << "thecalctl: " << file << ": " << why << "\n";
    return r;
  }
  new_side.preview = std::move(p);
  if (st.id.empty()) {
    now_side.why = "no prescription loaded";
  } else {
    thecalctl::Preview q;
    if (fetch_preview(bus, "", boluses, days, q, now_side.why) == kExitOk) now_side.preview = std::move(q);
  }
  const thecalctl::PreviewContext ctx{new_side.preview->buckets.empty() ? 0 : new_side.preview->buckets.front().start_us,
                                      kPreviewBucketUs, days, boluses, st.state};
  if (g.json) {
    std::cout << "{\"buckets\":[";
    const auto& bs = new_side.preview->buckets;
    for (std::size_t i = 0; i < bs.size(); ++i) {
      std::cout << (i ? "," : "") << "[" << bs[i].start_us << "," << json_num(bs[i].mcg) << "," << json_num(bs[i].ul) << ","
                << json_num(bs[i].reservoir_ul) << "," << json_num(bs[i].rolling_mcg) << "]";
    }
    std::cout << "],\"events\":[";
    const auto& es = new_side.preview->events;
    for (std::size_t i = 0; i < es.size(); ++i) {
      std::cout << (i ? "," : "") << "[" << es[i].time_us << ",\"" << json_escape(es[i].type) << "\",\""
                << json_escape(es[i].detail) << "\"]";
    }
    std::cout << "]}\n";
  } else {
    std::cout << thecalctl::preview_summary(now_side, new_side, ctx);
  }
  if (!svg.empty()) {
    std::ofstream out(svg, std::ios::binary | std::ios::trunc);
    out << thecalctl::preview_svg(now_side, new_side, ctx);
    if (!out) {
      std::cerr << "thecalctl: cannot write " << svg << "\n";
      return kExitFailure;
    }
  }
  return kExitOk;
}

int cmd_preview(sd_bus* bus, const Global& g, const Args& a) {
  const char* usage = "preview FILE [--days N] [--with-boluses] [--svg OUT]";
  double days = kPreviewDays;
  bool boluses = false;
  std::string svg;
  Args rest;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--days" && i + 1 < a.size()) {
      char* end = nullptr;
      days = std::strtod(a[++i].c_str(), &end);
      if (end == nullptr || *end != '\0' || !(days > 0) || days > 180) {
        std::cerr << "thecalctl: --days must be a number of days in (0, 180], got '" << a[i] << "'\n";
        return kExitUsage;
      }
    } else if (a[i] == "--with-boluses") {
      boluses = true;
    } else if (a[i] == "--svg" && i + 1 < a.size()) {
      svg = a[++i];
    } else {
      rest.push_back(a[i]);
    }
  }
  if (int e = need_args(rest, 1, 1, usage)) return e;
  const auto text = slurp(rest[0]);
  if (!text) {
    std::cerr << "thecalctl: cannot read " << rest[0] << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  return show_preview(bus, g, rest[0], *text, days, boluses, svg);
}

int cmd_load(sd_bus* bus, const Global& g, const Args& a) {
  bool yes = false;
  Args rest;
  for (const auto& w : a) {
    if (w == "--yes") yes = true;
    else rest.push_back(w);
  }
  if (int e = need_args(rest, 1, 1, "load FILE [--yes]")) return e;
  const auto text = slurp(rest[0]);
  if (!text) {
    std::cerr << "thecalctl: cannot read " << rest[0] << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  // On a terminal: what it would do, against the prescription in force, then a question.
  // Not on a terminal (scripts, tests): as before, loaded at once; --yes skips the question.
  if (!yes && isatty(STDIN_FILENO) != 0 && !g.json) {
    if (int r = show_preview(bus, g, rest[0], *text, kPreviewDays, true, ""); r != kExitOk) return r;
    std::cout << "\nLoad " << rest[0] << " into the pump? [y/N] " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::cout << "Not loaded: nothing changed.\n";
      return kExitFailure;
    }
  }
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "LoadPrescription", &reply, "s", text->c_str());
  if (r < 0) return -r;
  const char* id = nullptr;
  r = sd_bus_message_read(reply, "s", &id);
  if (r >= 0) std::cout << (g.json ? "{\"id\":\"" + std::string(id) + "\"}" : "Loaded prescription " + std::string(id)) << "\n";
  sd_bus_message_unref(reply);
  return r < 0 ? kExitFailure : kExitOk;
}

int cmd_validate(sd_bus* bus, const Global& g, const Args& a) {
  if (int e = need_args(a, 1, 1, "validate FILE")) return e;
  const auto text = slurp(a[0]);
  if (!text) {
    std::cerr << "thecalctl: cannot read " << a[0] << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "ValidatePrescription", &reply, "s", text->c_str());
  if (r < 0) return -r;
  r = sd_bus_message_enter_container(reply, 'a', "(sus)");
  const char *path = nullptr, *msg = nullptr;
  std::uint32_t line = 0;
  int n = 0;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(sus)", &path, &line, &msg)) > 0) {
    if (g.json) std::cout << (n ? "," : "[") << "{\"path\":\"" << path << "\",\"line\":" << line << ",\"message\":\"" << json_escape(msg) << "\"}";
    else std::cout << a[0] << ":" << line << ": " << path << ": " << msg << "\n";
    ++n;
  }
  if (g.json) std::cout << (n ? "]" : "[]") << "\n";
  sd_bus_message_unref(reply);
  if (r < 0) return kExitFailure;
  if (n == 0 && !g.json) {
    std::cout << a[0] << ": valid\n";
    sd_bus_message* desc = nullptr;
    if (call(bus, kIface, "DescribePrescription", &desc, "s", text->c_str()) == 0) {
      const char* summary = nullptr;
      if (sd_bus_message_read(desc, "s", &summary) >= 0) std::cout << summary;
      sd_bus_message_unref(desc);
    }
  }
  return n == 0 ? kExitOk : kExitInvalid;
}

int cmd_prime(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 1, 1, "prime VOLUME (e.g. 0.22 mL)")) return e;
  std::string err;
  const auto v = parse_quantity(a[0], "volume", err);
  if (!v) {
    std::cerr << "thecalctl: " << err << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "Prime", &reply, "d", *v);
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

int cmd_suspend(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 0, 1, "suspend [DURATION]")) return e;
  double us = 0;
  if (!a.empty()) {
    std::string err;
    const auto v = parse_quantity(a[0], "duration", err);
    if (!v) {
      std::cerr << "thecalctl: " << err << "\n";
      return kExitUsage;
    }
    us = *v;
  }
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "Suspend", &reply, "t", static_cast<std::uint64_t>(us));
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

int cmd_bolus(sd_bus* bus, const Global& g) {
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "RequestBolus", &reply, "");
  if (r < 0) return -r;
  double dose = 0;
  std::uint64_t ends = 0;
  r = sd_bus_message_read(reply, "dt", &dose, &ends);
  sd_bus_message_unref(reply);
  if (r < 0) return kExitFailure;
  if (g.json) std::cout << "{\"dose_mcg\":" << json_num(dose) << ",\"ends_usec\":" << ends << "}\n";
  else std::cout << "Bolus of " << human_mass(dose) << " started; ends " << human_time(ends) << "\n";
  return kExitOk;
}

int cmd_clinician_bolus(sd_bus* bus, const Global& g, const Args& a) {
  Args rest;
  std::string over = "10 min";  // default duration of a clinician bolus
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--over" && i + 1 < a.size()) over = a[++i];
    else rest.push_back(a[i]);
  }
  if (int e = need_args(rest, 1, 1, "clinician-bolus DOSE [--over DURATION]")) return e;
  std::string err;
  const auto dose = parse_quantity(rest[0], "mass", err);
  const auto dur = dose ? parse_quantity(over, "duration", err) : std::nullopt;
  if (!dose || !dur) {
    std::cerr << "thecalctl: " << err << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "ClinicianBolus", &reply, "dt", *dose, static_cast<std::uint64_t>(*dur));
  if (r < 0) return -r;
  std::uint64_t ends = 0;
  r = sd_bus_message_read(reply, "t", &ends);
  sd_bus_message_unref(reply);
  if (r < 0) return kExitFailure;
  if (g.json) std::cout << "{\"ends_usec\":" << ends << "}\n";
  else std::cout << "Clinician bolus of " << human_mass(*dose) << " started; ends " << human_time(ends) << "\n";
  return kExitOk;
}

// Pump replacement (SPEC 2): the therapy document of this unit to a file, and back on the
// new unit.  The file is written whole (temporary file, fsync, rename), readable by its
// owner only: it holds the patient's therapy.
/// The solution's drugs (Drugs: primary first, then the admixture), each with its 24 h
/// mass against its own limit: what export and import carry.
void print_solution(sd_bus* bus) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  std::vector<DrugFigure> drugs;
  if (sd_bus_get_property(bus, kService, kPath, kIface, prop::kDrugs, &e, &reply, "a(sddd)") >= 0) {
    (void)read_drugs(reply, drugs);
  }
  sd_bus_message_unref(reply);
  sd_bus_error_free(&e);
  for (std::size_t i = 0; i < drugs.size(); ++i) {
    const auto& d = drugs[i];
    std::cout << (i == 0 ? "  Drug:      " : "  Admixture: ") << d.name << ", " << human_conc(d.conc) << ": "
              << human_mass(d.delivered) << " in 24 h of " << human_mass(d.limit) << " limit\n";
  }
}

int cmd_export(sd_bus* bus, const Global& g, const Args& a) {
  if (int e = need_args(a, 1, 1, "export FILE")) return e;
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "ExportTherapy", &reply, "");
  if (r < 0) return -r;
  const char* doc = nullptr;
  r = sd_bus_message_read(reply, "s", &doc);
  if (r < 0) {
    sd_bus_message_unref(reply);
    std::cerr << "thecalctl: cannot read the reply: " << std::strerror(-r) << "\n";
    return kExitFailure;
  }
  const std::string text = doc;
  sd_bus_message_unref(reply);
  const std::string tmp = a[0] + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (std::size_t off = 0; ok && off < text.size();) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  ok = ok && ::rename(tmp.c_str(), a[0].c_str()) == 0;
  if (!ok) {
    std::cerr << "thecalctl: cannot write " << a[0] << ": " << std::strerror(errno) << "\n";
    (void)::unlink(tmp.c_str());
    return kExitFailure;
  }
  if (g.json) std::cout << "{\"file\":\"" << json_escape(a[0]) << "\",\"bytes\":" << text.size() << "}\n";
  else std::cout << "Therapy exported to " << a[0] << " (" << text.size() << " bytes); import it on the new unit with 'thecalctl import " << a[0] << "'\n";
  if (!g.json) print_solution(bus);
  return kExitOk;
}

int cmd_import(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 1, 1, "import FILE")) return e;
  const auto text = slurp(a[0]);
  if (!text) {
    std::cerr << "thecalctl: cannot read " << a[0] << ": " << std::strerror(errno) << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "ImportTherapy", &reply, "s", text->c_str());
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  std::cout << "Therapy imported from " << a[0]
            << ". The reservoir is empty: refill with '--withdrawn 0 mL', check the catheter, then start.\n";
  print_solution(bus);
  return kExitOk;
}

/// The events logged since `since_us` of one type (GetEvents), oldest first.
std::vector<std::string> events_of(sd_bus* bus, std::uint64_t since_us, const std::string& type) {
  std::vector<std::string> out;
  sd_bus_message* reply = nullptr;
  if (call(bus, kIface, "GetEvents", &reply, "tu", since_us, 1000U) < 0) return out;
  int r = sd_bus_message_enter_container(reply, 'a', "(tsss)");
  std::uint64_t t = 0;
  const char* ty = nullptr;
  const char* who = nullptr;
  const char* detail = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tsss)", &t, &ty, &who, &detail)) > 0) {
    if (type == ty) out.emplace_back(detail);
  }
  sd_bus_message_unref(reply);
  return out;
}

/// Reads one line from stdin after a prompt; nullopt at end of input.
std::optional<std::string> ask(const std::string& prompt) {
  std::cout << prompt << std::flush;
  std::string line;
  if (!std::getline(std::cin, line)) return std::nullopt;
  if (isatty(STDIN_FILENO) == 0) std::cout << line << "\n";  // a transcript that reads like a session
  line.erase(0, line.find_first_not_of(" \t"));
  line.erase(line.find_last_not_of(" \t\r") + 1);
  return line;
}

/// The guided refill session (docs/maintenance.md): BeginRefill, the withdrawn residual and
/// the new fill asked for (an empty answer or end of input cancels: CancelRefill), Refill,
/// then the refill check and the bridge as the pump logged and computed them.
int guided_refill(sd_bus* bus, const std::string& prescription_text) {
  PumpStatus before;
  if (int r = get_status(bus, before); r < 0) return -r;
  const std::uint64_t started = static_cast<std::uint64_t>(std::time(nullptr)) * 1'000'000ULL;
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "BeginRefill", &reply, "");
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  std::cout << "Refill session begun: the motor is stopped (was " << before.state << ").\n"
            << "The pump estimates " << human_volume(before.reservoir) << " left in the reservoir of "
            << human_volume(before.capacity) << ".\n"
            << "Withdraw the residual through the reservoir port (NOT the catheter access port) and measure it.\n";
  auto cancel = [&](const std::string& why) {
    sd_bus_message* rep = nullptr;
    const int c = call(bus, kIface, "CancelRefill", &rep, "");
    if (c >= 0) sd_bus_message_unref(rep);
    std::cerr << "thecalctl: " << why << ": refill session cancelled, nothing changed\n";
    return c < 0 ? -c : kExitUsage;
  };
  std::string err;
  std::optional<double> w;
  std::optional<double> v;
  while (!w) {
    const auto line = ask("Withdrawn residual (e.g. 4.2 mL; empty to cancel): ");
    if (!line || line->empty()) return cancel("no residual given");
    w = parse_quantity(*line, "volume", err);
    if (!w) std::cerr << "thecalctl: " << err << "\n";
  }
  while (!v) {
    const auto line = ask("New fill volume (at most " + human_volume(before.capacity) + "; empty to cancel): ");
    if (!line || line->empty()) return cancel("no fill volume given");
    v = parse_quantity(*line, "volume", err);
    if (!v) std::cerr << "thecalctl: " << err << "\n";
  }
  r = call(bus, kIface, "Refill", &reply, "dds", *w, *v, prescription_text.c_str());
  if (r < 0) {
    // Refused: nothing changed, the session is still open; close it so the pump goes back.
    (void)cancel("the pump refused the refill");
    return -r;
  }
  sd_bus_message_unref(reply);
  PumpStatus after;
  if (int q = get_status(bus, after); q < 0) return -q;
  std::cout << "Refilled: " << human_volume(*v) << "; the pump is " << after.state << ".\n";
  const auto checks = events_of(bus, started > 60'000'000 ? started - 60'000'000 : 0, "refill");
  if (!checks.empty()) std::cout << "Refill check: " << checks.back() << "\n";
  for (const auto& al : after.alarms) {
    if (al.code == "refill_discrepancy") std::cout << "ALARM " << al.priority << " " << al.code << ": " << al.message << "\n";
  }
  if (after.conc != before.conc && before.conc > 0) {
    std::cout << "Bridge: the catheter still holds " << human_volume(after.catheter_ul) << " of the old solution ("
              << human_conc(before.conc) << "); the pump follows the concentration at the tip, so the prescribed "
              << "mass rate holds while it is pushed through";
    if (before.basal > 0) {
      const double ul_per_day = before.basal / before.conc * 1000.0;  // (mcg/day) / (mcg/mL)
      const double hours = after.catheter_ul / ul_per_day * 24.0;
      std::cout << " (about " << fmt("%.1f", hours) << " h at the basal rate)";
    }
    std::cout << ".\n";
  } else {
    std::cout << "Bridge: none needed (same concentration).\n";
  }
  if (after.solution_expires != 0) std::cout << "Solution expires: " << human_time(after.solution_expires) << "\n";
  return kExitOk;
}

int cmd_refill(sd_bus* bus, const Args& a) {
  std::string withdrawn;
  std::string prescription;
  Args rest;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--withdrawn" && i + 1 < a.size()) withdrawn = a[++i];
    else if (a[i] == "--prescription" && i + 1 < a.size()) prescription = a[++i];
    else rest.push_back(a[i]);
  }
  const char* usage = "refill [--withdrawn VOLUME VOLUME] [--prescription FILE]";
  if (withdrawn.empty() && rest.empty()) {
    std::string text;
    if (!prescription.empty()) {
      const auto t = slurp(prescription);
      if (!t) {
        std::cerr << "thecalctl: cannot read " << prescription << ": " << std::strerror(errno) << "\n";
        return kExitUsage;
      }
      text = *t;
    }
    return guided_refill(bus, text);
  }
  if (int e = need_args(rest, 1, 1, usage)) return e;
  if (withdrawn.empty()) {
    std::cerr << "thecalctl: usage: thecalctl " << usage << " (measure the residual: '--withdrawn 0 mL' on a new unit)\n";
    return kExitUsage;
  }
  std::string err;
  const auto w = parse_quantity(withdrawn, "volume", err);
  const auto v = w ? parse_quantity(rest[0], "volume", err) : std::nullopt;
  if (!w || !v) {
    std::cerr << "thecalctl: " << err << "\n";
    return kExitUsage;
  }
  std::string text;
  if (!prescription.empty()) {
    const auto t = slurp(prescription);
    if (!t) {
      std::cerr << "thecalctl: cannot read " << prescription << ": " << std::strerror(errno) << "\n";
      return kExitUsage;
    }
    text = *t;
  }
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "Refill", &reply, "dds", *w, *v, text.c_str());
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

/// ReviseCatheter: a volume, or a length and a volume per cm ("--length 45cm --per-cm 2.6uL").
int cmd_revise_catheter(sd_bus* bus, const Args& a) {
  const char* usage = "revise-catheter VOLUME | --length LENGTH --per-cm VOLUME (e.g. --length 45cm --per-cm 2.6uL)";
  std::string length;
  std::string per_cm;
  Args rest;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--length" && i + 1 < a.size()) length = a[++i];
    else if (a[i] == "--per-cm" && i + 1 < a.size()) per_cm = a[++i];
    else rest.push_back(a[i]);
  }
  std::string err;
  std::optional<double> v;
  if (length.empty() && per_cm.empty()) {
    if (int e = need_args(rest, 1, 1, usage)) return e;
    v = parse_quantity(rest[0], "volume", err);
  } else {
    if (length.empty() || per_cm.empty() || !rest.empty()) return need_args(Args{}, 1, 1, usage);
    // The length in cm: a number with cm, mm or m.
    std::size_t pos = 0;
    double n = std::nan("");
    try {
      n = std::stod(length, &pos);
    } catch (...) {
    }
    std::string unit = std::isfinite(n) ? length.substr(pos) : "";
    unit.erase(0, unit.find_first_not_of(' '));
    const double cm = unit == "cm" ? n : unit == "mm" ? n / 10 : unit == "m" ? n * 100 : std::nan("");
    if (!std::isfinite(cm) || cm <= 0) {
      std::cerr << "thecalctl: '" << length << "' is not a positive length in cm, mm or m\n";
      return kExitUsage;
    }
    const auto per = parse_quantity(per_cm, "volume", err);
    if (per) v = cm * *per;
  }
  if (!v) {
    std::cerr << "thecalctl: " << err << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "ReviseCatheter", &reply, "d", *v);
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  std::cout << "Catheter revised: dead volume " << human_volume(*v)
            << ". The catheter is empty: prime it ('thecalctl prime " << fmt("%.1f", *v) << " uL'), then start.\n";
  return kExitOk;
}

int cmd_ack(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 1, 1, "ack CODE")) return e;
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kIface, "AcknowledgeAlarm", &reply, "s", a[0].c_str());
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

int cmd_alarms(sd_bus* bus, const Global& g) {
  PumpStatus s;
  const int r = get_status(bus, s);
  if (r < 0) return -r;
  if (g.json) {
    std::cout << "[";
    for (std::size_t i = 0; i < s.alarms.size(); ++i) {
      const auto& a = s.alarms[i];
      std::cout << (i ? "," : "") << "{\"code\":\"" << a.code << "\",\"priority\":\"" << a.priority
                << "\",\"message\":\"" << json_escape(a.message) << "\",\"raised_usec\":" << a.raised << "}";
    }
    std::cout << "]\n";
    return kExitOk;
  }
  if (s.alarms.empty()) std::cout << "No active alarms.\n";
  for (const auto& a : s.alarms) std::printf("%-7s %-20s %s  (%s)\n", a.priority.c_str(), a.code.c_str(), a.message.c_str(), human_time(a.raised).c_str());
  return kExitOk;
}

int cmd_events(sd_bus* bus, const Global& g, const Args& a) {
  if (int e = need_args(a, 0, 1, "events [MAX]")) return e;
  std::uint32_t max = 100;
  if (!a.empty()) max = static_cast<std::uint32_t>(std::stoul(a[0]));
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "GetEvents", &reply, "tu", std::uint64_t{0}, max);
  if (r < 0) return -r;
  r = sd_bus_message_enter_container(reply, 'a', "(tsss)");
  std::uint64_t t = 0;
  const char *type = nullptr, *who = nullptr, *detail = nullptr;
  int n = 0;
  if (g.json) std::cout << "[";
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tsss)", &t, &type, &who, &detail)) > 0) {
    if (g.json) std::cout << (n ? "," : "") << "{\"time_usec\":" << t << ",\"type\":\"" << type << "\",\"who\":\"" << who << "\",\"detail\":\"" << json_escape(detail) << "\"}";
    else std::printf("%s  %-20s %-10s %s\n", human_time(t).c_str(), type, who, detail);
    ++n;
  }
  if (g.json) std::cout << "]\n";
  sd_bus_message_unref(reply);
  return r < 0 ? kExitFailure : kExitOk;
}

int cmd_history(sd_bus* bus, const Global& g, const Args& all) {
  // --drug NAME: one drug of the solution alone (GetDrugDeliveryHistory, an extra member).
  const char* usage = "history [--drug NAME] [SPAN [BUCKET]]  (default: 24 h in 1 h buckets)";
  std::string drug;
  Args a;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i] != "--drug") a.push_back(all[i]);
    else if (i + 1 < all.size()) drug = all[++i];
    else return need_args(Args{}, 1, 1, usage);  // --drug without a name
  }
  if (int e = need_args(a, 0, 2, usage)) return e;
  std::string err;
  double span = 86400e6;
  double bucket = 3600e6;
  if (!a.empty()) {
    const auto s = parse_quantity(a[0], "duration", err);
    if (!s) { std::cerr << "thecalctl: " << err << "\n"; return kExitUsage; }
    span = *s;
  }
  if (a.size() > 1) {
    const auto b = parse_quantity(a[1], "duration", err);
    if (!b) { std::cerr << "thecalctl: " << err << "\n"; return kExitUsage; }
    bucket = *b;
  }
  // "now" is the pump's clock (simulated with the sim backend).
  std::uint64_t now = 0;
  {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    const int rr = sd_bus_get_property_trivial(bus, kService, kPath, kDiagIface, "WallClockUsec", &e, 't', &now);
    if (rr < 0) {
      const int code = report(e, rr);
      sd_bus_error_free(&e);
      return code;
    }
  }
  const std::uint64_t from = now > static_cast<std::uint64_t>(span) ? now - static_cast<std::uint64_t>(span) : 0;
  sd_bus_message* reply = nullptr;
  int r = drug.empty() ? call(bus, kIface, "GetDeliveryHistory", &reply, "ttt", from, now, static_cast<std::uint64_t>(bucket))
                       : call(bus, kIface, "GetDrugDeliveryHistory", &reply, "sttt", drug.c_str(), from, now,
                              static_cast<std::uint64_t>(bucket));
  if (r < 0) return -r;
  r = sd_bus_message_enter_container(reply, 'a', "(tdd)");
  std::uint64_t t = 0;
  double m = 0, v = 0;
  int n = 0;
  if (g.json) std::cout << "[";
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tdd)", &t, &m, &v)) > 0) {
    if (g.json) std::cout << (n ? "," : "") << "{\"start_usec\":" << t << ",\"mcg\":" << json_num(m) << ",\"ul\":" << json_num(v) << "}";
    else std::printf("%s  %12s  %10s\n", human_time(t).c_str(), human_mass(m).c_str(), human_volume(v).c_str());
    ++n;
  }
  if (g.json) std::cout << "]\n";
  sd_bus_message_unref(reply);
  return r < 0 ? kExitFailure : kExitOk;
}

/// A time for `recording`: "now" or "now-DURATION" (the pump's clock), microseconds since
/// the epoch, or "YYYY-MM-DDTHH:MM:SSZ" (UTC).
std::optional<std::uint64_t> parse_when(const std::string& text, std::uint64_t now, std::string& err) {
  if (text == "now") return now;
  if (text.rfind("now-", 0) == 0) {
    const auto d = parse_quantity(text.substr(4), "duration", err);
    if (!d) return std::nullopt;
    return now > static_cast<std::uint64_t>(*d) ? now - static_cast<std::uint64_t>(*d) : 0;
  }
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) return std::stoull(text);
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') {
    err = "'" + text + "' is not a time: now, now-DURATION, microseconds or YYYY-MM-DDTHH:MM:SSZ";
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(::timegm(&tm)) * 1'000'000ULL;
}

int cmd_recording(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 3, 3, "recording FROM TO FILE  (e.g. 'recording now-30d now month.rec')")) return e;
  std::uint64_t now = 0;
  {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    const int rr = sd_bus_get_property_trivial(bus, kService, kPath, kDiagIface, "WallClockUsec", &e, 't', &now);
    if (rr < 0) {
      const int code = report(e, rr);
      sd_bus_error_free(&e);
      return code;
    }
  }
  std::string err;
  const auto from = parse_when(a[0], now, err);
  const auto to = from ? parse_when(a[1], now, err) : std::nullopt;
  if (!from || !to) {
    std::cerr << "thecalctl: " << err << "\n";
    return kExitUsage;
  }
  sd_bus_message* reply = nullptr;
  int r = call(bus, kIface, "GetRecording", &reply, "tt", *from, *to);
  if (r < 0) return -r;
  const void* data = nullptr;
  std::size_t size = 0;
  r = sd_bus_message_read_array(reply, 'y', &data, &size);
  if (r < 0) {
    sd_bus_message_unref(reply);
    std::cerr << "thecalctl: cannot read the reply: " << std::strerror(-r) << "\n";
    return kExitFailure;
  }
  const std::string bytes(static_cast<const char*>(data), size);
  sd_bus_message_unref(reply);
  const std::string tmp = a[2] + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (std::size_t off = 0; ok && off < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<std::size_t>(n);
  }
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  ok = ok && ::rename(tmp.c_str(), a[2].c_str()) == 0;
  if (!ok) {
    std::cerr << "thecalctl: cannot write " << a[2] << ": " << std::strerror(errno) << "\n";
    (void)::unlink(tmp.c_str());
    return kExitFailure;
  }
  std::printf("%zu bytes written to %s; check it with: thecal-replay %s\n", bytes.size(), a[2].c_str(), a[2].c_str());
  return kExitOk;
}

int cmd_time_scale(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 1, 1, "time-scale FACTOR (1..20000)")) return e;
  double v = 0;
  try {
    v = std::stod(a[0]);
  } catch (...) {
    std::cerr << "thecalctl: '" << a[0] << "' is not a number\n";
    return kExitUsage;
  }
  sd_bus_error e = SD_BUS_ERROR_NULL;
  const int r = sd_bus_set_property(bus, kService, kPath, kSimIface, "TimeScale", &e, "d", v);
  if (r < 0) {
    const int code = report(e, r);
    sd_bus_error_free(&e);
    return code;
  }
  return kExitOk;
}

int cmd_fault(sd_bus* bus, const Args& a) {
  if (int e = need_args(a, 2, 2, "fault NAME on|off")) return e;
  if (a[1] != "on" && a[1] != "off") return need_args({}, 1, 0, "fault NAME on|off");
  sd_bus_message* reply = nullptr;
  const int r = call(bus, kSimIface, "InjectFault", &reply, "sb", a[0].c_str(), static_cast<int>(a[1] == "on"));
  if (r < 0) return -r;
  sd_bus_message_unref(reply);
  return kExitOk;
}

int cmd_diagnostics(sd_bus* bus) {
  const char* names[] = {"LoopCycles", "Overruns", "LatencyMaxNs", "LatencyP99Ns", "LatencyP999Ns",
                         "ControlStepMaxNs", "StepsIssued", "EncoderPulses", "JournalWrites"};
  for (const char* n : names) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    std::uint64_t v = 0;
    const int r = sd_bus_get_property_trivial(bus, kService, kPath, kDiagIface, n, &e, 't', &v);
    if (r < 0) {
      const int code = report(e, r);
      sd_bus_error_free(&e);
      return code;
    }
    std::printf("%20s: %llu\n", n, static_cast<unsigned long long>(v));
  }
  return kExitOk;
}

// monitor: print every signal of the pump as it comes.
int on_signal(sd_bus_message* m, void* userdata, sd_bus_error* /*err*/) {
  const bool json = *static_cast<bool*>(userdata);
  const std::string member = sd_bus_message_get_member(m);
  const std::string iface = sd_bus_message_get_interface(m);
  const auto now = static_cast<std::uint64_t>(std::time(nullptr)) * 1'000'000;
  if (iface == "org.freedesktop.DBus.Properties" && member == "PropertiesChanged") {
    const char* which = nullptr;
    if (sd_bus_message_read(m, "s", &which) < 0) return 0;
    if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0) return 0;
    std::string line;
    while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
      const char* name = nullptr;
      const char* contents = nullptr;
      (void)sd_bus_message_read(m, "s", &name);
      (void)sd_bus_message_peek_type(m, nullptr, &contents);
      (void)sd_bus_message_enter_container(m, 'v', contents);
      std::string val;
      const std::string sig = contents;
      if (sig == "s") { const char* v = nullptr; (void)sd_bus_message_read(m, "s", &v); val = v; }
      else if (sig == "d") { double v = 0; (void)sd_bus_message_read(m, "d", &v); val = fmt("%.6g", v); }
      else if (sig == "b") { int v = 0; (void)sd_bus_message_read(m, "b", &v); val = v ? "yes" : "no"; }
      else if (sig == "u") { std::uint32_t v = 0; (void)sd_bus_message_read(m, "u", &v); val = std::to_string(v); }
      else if (sig == "t") { std::uint64_t v = 0; (void)sd_bus_message_read(m, "t", &v); val = std::to_string(v); }
      else if (sig == "a(sddd)") {
        std::vector<DrugFigure> dr;
        (void)read_drugs(m, dr);
        for (const auto& x : dr) val += (val.empty() ? "" : "; ") + x.name + " " + human_mass(x.delivered) + " of " + human_mass(x.limit);
        if (val.empty()) val = "none";
      } else if (sig == "a(ssst)") { std::vector<Alarm> al; (void)read_alarms(m, al); for (auto& a : al) val += a.code + " "; if (val.empty()) val = "none"; }
      else { (void)sd_bus_message_skip(m, contents); val = "?"; }
      (void)sd_bus_message_exit_container(m);
      (void)sd_bus_message_exit_container(m);
      line += std::string(line.empty() ? "" : ", ") + name + "=" + val;
    }
    if (json) std::cout << "{\"time_usec\":" << now << ",\"changed\":\"" << json_escape(line) << "\"}" << std::endl;
    else std::cout << human_time(now) << "  " << line << std::endl;
    return 0;
  }
  std::string args;
  const char* s1 = nullptr;
  const char* s2 = nullptr;
  const char* s3 = nullptr;
  double d = 0;
  if (member == "AlarmRaised" && sd_bus_message_read(m, "sss", &s1, &s2, &s3) >= 0) args = std::string(s2) + " " + s1 + ": " + s3;
  else if (member == "AlarmCleared" && sd_bus_message_read(m, "s", &s1) >= 0) args = s1;
  else if ((member == "BolusStarted" || member == "BolusFinished") && sd_bus_message_read(m, "sd", &s1, &d) >= 0) args = std::string(s1) + " " + human_mass(d);
  if (json) std::cout << "{\"time_usec\":" << now << ",\"signal\":\"" << member << "\",\"detail\":\"" << json_escape(args) << "\"}" << std::endl;
  else std::cout << human_time(now) << "  " << member << " " << args << std::endl;
  return 0;
}

int cmd_monitor(sd_bus* bus, const Global& g) {
  bool json = g.json;
  std::string match = std::string("type='signal',sender='") + kService + "',path='" + kPath + "'";
  int r = sd_bus_add_match(bus, nullptr, match.c_str(), on_signal, &json);
  if (r < 0) {
    std::cerr << "thecalctl: cannot subscribe to the pump's signals: " << std::strerror(-r) << "\n";
    return kExitNoPump;
  }
  if (!g.json) std::cout << "Monitoring " << kService << " (Ctrl-C to stop)…" << std::endl;
  for (;;) {
    r = sd_bus_process(bus, nullptr);
    if (r < 0) {
      std::cerr << "thecalctl: bus connection lost: " << std::strerror(-r) << "\n";
      return kExitNoPump;
    }
    if (r > 0) continue;
    r = sd_bus_wait(bus, UINT64_MAX);
    if (r < 0 && r != -EINTR) return kExitNoPump;
  }
}

const char* kHelp =
    "thecalctl [OPTIONS] COMMAND [ARGS]\n\n"
    "Program and watch the thecal intrathecal pump (thecald) over D-Bus.\n\n"
    "Commands:\n"
    "  status                          show the pump's state (default)\n"
    "  monitor                         print properties, alarms and boluses as they change\n"
    "  validate FILE                   check a prescription file against the pump's rules\n"
    "  preview FILE [--days N] [--with-boluses] [--svg OUT]\n"
    "                                  what FILE would do from now, beside the prescription in\n"
    "                                  force, computed by the pump's core (default 90 days)\n"
    "  load FILE [--yes]               load a prescription (clinician); on a terminal it shows\n"
    "                                  the preview first and asks (--yes: do not ask)\n"
    "  prime VOLUME                    prime the catheter, e.g. 'prime 0.22 mL' (clinician)\n"
    "  start | resume                  start or resume therapy (clinician)\n"
    "  suspend [DURATION]              suspend, e.g. 'suspend 30 min'; none: until resume\n"
    "  bolus                           request the prescribed patient bolus\n"
    "  clinician-bolus DOSE [--over DURATION]   (default over 10 min)\n"
    "  cancel-bolus\n"
    "  refill [--prescription FILE]    guided refill session: asks for the residual and the fill\n"
    "  refill --withdrawn VOLUME VOLUME [--prescription FILE]   the same in one call\n"
    "  begin-refill | cancel-refill    open or cancel a refill session (motor stopped)\n"
    "  revise-catheter VOLUME | --length LENGTH --per-cm VOLUME\n"
    "                                  after a catheter revision: new dead volume, empty (clinician)\n"
    "  test-alarm                      sound the high, medium and low alarm patterns once\n"
    "  alarms | ack CODE               list or acknowledge alarms\n"
    "  events [MAX]                    the event log, oldest first\n"
    "  history [--drug NAME] [SPAN [BUCKET]]\n"
    "                                  delivered mass and volume, e.g. 'history 7 d 1 d'; --drug:\n"
    "                                  that drug's mass alone (primary or admixture)\n"
    "  recording FROM TO FILE          the flight recording of a window (at most 31 d), for thecal-replay;\n"
    "                                  times: now, now-DURATION, microseconds, YYYY-MM-DDTHH:MM:SSZ (clinician)\n"
    "  battery-replaced                record a battery replacement (clinician)\n"
    "  export FILE                     write this unit's therapy for a replacement unit (clinician)\n"
    "  import FILE                     take over an exported therapy on a fresh unit (clinician)\n"
    "  diagnostics                     dosing-loop statistics\n"
    "  time-scale FACTOR               simulator: simulated seconds per real second\n"
    "  fault NAME on|off               simulator: inject a fault\n\n"
    "Units: mass mg|mcg|ug, volume mL|uL, duration us|ms|s|min|h|d ('0.22 mL', '10 min').\n"
    "Exit status: 0 ok, 1 failure, 2 usage, 3 pump unreachable, 4 access denied,\n"
    "             5 refused by the pump, 6 invalid prescription.\n\n"
    "Options";

}  // namespace

int main(int argc, char** argv) {
  Global g;
  std::string address;
  bool system = false;
  bool user = false;
  std::vector<std::string> words;
  po::options_description desc(kHelp);
  desc.add_options()("help,h", "show this help")("system", po::bool_switch(&system), "use the system bus (default)")(
      "user", po::bool_switch(&user), "use the user bus")("address", po::value<std::string>(&address),
                                                           "use the bus at this D-Bus address")(
      "json", po::bool_switch(&g.json), "machine-readable output");
  po::options_description hidden;
  hidden.add_options()("words", po::value<std::vector<std::string>>(&words));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("words", -1);
  po::variables_map vm;
  try {
    // Options after the command (clinician-bolus --over, refill --withdrawn) belong to it.
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).allow_unregistered().run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "thecalctl: " << e.what() << "\n";
    return kExitUsage;
  }
  if (vm.count("help") != 0U) {
    std::cout << desc << "\n";
    return kExitOk;
  }
  // Re-collect the command's own options in order (allow_unregistered keeps them apart).
  {
    std::vector<std::string> raw(argv + 1, argv + argc);
    std::vector<std::string> cmdwords;
    bool seen_cmd = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const std::string& w = raw[i];
      if (!seen_cmd) {
        if (w == "--system" || w == "--user" || w == "--json") continue;
        if (w == "--address") { ++i; continue; }
        if (w.rfind("--address=", 0) == 0) continue;
        seen_cmd = true;
      }
      if (w == "--json") { g.json = true; continue; }
      cmdwords.push_back(w);
    }
    words = cmdwords;
  }
  if (!address.empty()) g.bus = address;
  else if (user) g.bus = "user";
  else g.bus = "system";
  (void)system;

  const std::string cmd = words.empty() ? "status" : words[0];
  const Args args(words.empty() ? words.end() : words.begin() + 1, words.end());

  Bus bus(g.bus);
  if (bus.get() == nullptr) {
    std::cerr << "thecalctl: " << bus.error() << "\n";
    return kExitNoPump;
  }
  sd_bus* b = bus.get();
  auto noargs = [&](const char* usage) { return need_args(args, 0, 0, usage); };
  try {
    if (cmd == "status") return noargs("status") ? kExitUsage : cmd_status(b, g);
    if (cmd == "monitor") return noargs("monitor") ? kExitUsage : cmd_monitor(b, g);
    if (cmd == "validate") return cmd_validate(b, g, args);
    if (cmd == "load") return cmd_load(b, g, args);
    if (cmd == "preview") return cmd_preview(b, g, args);
    if (cmd == "prime") return cmd_prime(b, args);
    if (cmd == "start") return noargs("start") ? kExitUsage : simple(b, "Start");
    if (cmd == "resume") return noargs("resume") ? kExitUsage : simple(b, "Resume");
    if (cmd == "suspend") return cmd_suspend(b, args);
    if (cmd == "bolus") return noargs("bolus") ? kExitUsage : cmd_bolus(b, g);
    if (cmd == "clinician-bolus") return cmd_clinician_bolus(b, g, args);
    if (cmd == "cancel-bolus") return noargs("cancel-bolus") ? kExitUsage : simple(b, "CancelBolus");
    if (cmd == "refill") return cmd_refill(b, args);
    if (cmd == "alarms") return noargs("alarms") ? kExitUsage : cmd_alarms(b, g);
    if (cmd == "ack") return cmd_ack(b, args);
    if (cmd == "events") return cmd_events(b, g, args);
    if (cmd == "history") return cmd_history(b, g, args);
    if (cmd == "export") return cmd_export(b, g, args);
    if (cmd == "recording") return cmd_recording(b, args);
    if (cmd == "import") return cmd_import(b, args);
    if (cmd == "begin-refill") return noargs("begin-refill") ? kExitUsage : simple(b, "BeginRefill");
    if (cmd == "cancel-refill") return noargs("cancel-refill") ? kExitUsage : simple(b, "CancelRefill");
    if (cmd == "revise-catheter") return cmd_revise_catheter(b, args);
    if (cmd == "test-alarm") return noargs("test-alarm") ? kExitUsage : simple(b, "TestAlarm");
    if (cmd == "battery-replaced") return noargs("battery-replaced") ? kExitUsage : simple(b, "ReplaceBattery");
    if (cmd == "diagnostics") return noargs("diagnostics") ? kExitUsage : cmd_diagnostics(b);
    if (cmd == "time-scale") return cmd_time_scale(b, args);
    if (cmd == "fault") return cmd_fault(b, args);
  } catch (const std::exception& e) {
    std::cerr << "thecalctl: " << e.what() << "\n";
    return kExitUsage;
  }
  std::cerr << "thecalctl: unknown command '" << cmd << "'; see 'thecalctl --help'\n";
  return kExitUsage;
}
