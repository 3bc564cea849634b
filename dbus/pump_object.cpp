#include "dbus/pump_object.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string_view>

#include "config/prescription.hpp"
#include "config/sha256.hpp"
#include "daemon/log.hpp"
#include "daemon/therapy_document.hpp"
#include "dbus/roles.hpp"
#include "io/atomic_file.hpp"

namespace thecal::dbus {

namespace {

constexpr const char* kErrInvalidPrescription = "org.thecal.Pump1.Error.InvalidPrescription";
constexpr const char* kErrInvalidState = "org.thecal.Pump1.Error.InvalidState";
constexpr const char* kErrOutOfRange = "org.thecal.Pump1.Error.OutOfRange";
constexpr const char* kErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
// ImportTherapy: a document that is truncated, corrupt, of a future format or whose parts
// do not agree.  None of SPEC's names fits (OutOfRange is for numbers, InvalidPrescription
// for prescription problems, InvalidState for the unit's state): see docs/maintenance.md.
constexpr const char* kErrInvalidDocument = "org.thecal.Pump1.Error.InvalidDocument";

constexpr std::int64_t kFastPropertyIntervalUs = 1'000'000;  // "at most once a second"
constexpr std::uint64_t kIdlePollUs = 20'000;
constexpr std::uint64_t kFastPollUs = 1'000;
// Until the journal (issue 7) reserves budgets with fsync, the daemon grants the dosing
// thread step budgets of this size whenever less than half is left.
constexpr std::int64_t kBudgetGrant = 4096;
constexpr std::size_t kMaxPrescriptionBytes = 64 * 1024;
constexpr std::uint32_t kMaxEventsPerCall = 10'000;

PumpObject* self(void* userdata) { return static_cast<PumpObject*>(userdata); }

std::uint64_t wall_or_zero(WallTime t) {
  const auto us = to_usec(t);
  return us > 0 ? static_cast<std::uint64_t>(us) : 0;
}

/// The caller and the role check in one step: sets AccessDenied and returns false when the
/// caller lacks the role.
enum class Need { any, patient, clinician };

bool authorize(sd_bus_message* m, Need need, CallerInfo& who, sd_bus_error* err) {
  const int r = caller_info(m, who);
  if (r < 0) {
    sd_bus_error_setf(err, kErrAccessDenied, "Cannot determine the caller's uid: %s", std::strerror(-r));
    return false;
  }
  const bool ok = need == Need::any || (need == Need::patient && who.patient) ||
                  (need == Need::clinician && who.clinician);
  if (!ok) {
    sd_bus_error_setf(err, kErrAccessDenied, "uid %u lacks the %s role for this call", who.uid,
                      need == Need::clinician ? "clinician" : "patient");
  }
  return ok;
}

Caller to_caller(const CallerInfo& c) { return {c.uid, c.clinician}; }

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0.0; }

}  // namespace

/// A call waiting for the dosing thread's reply.
struct PumpObject::Pending {
  sd_bus_message* msg = nullptr;
  CommandKind kind = CommandKind::start;
  std::unique_ptr<TherapyPlan> plan;  // freed when the reply comes back
  std::string store_path;             // prescription to commit on success
  bool internal = false;              // issued by the daemon itself (no D-Bus reply)
  std::unique_ptr<CoreState> state;   // the core's state after the command (journal)
  std::int64_t grant = 0;             // grant_budget: the steps granted
  std::uint32_t uid = kSystemUid;     // the caller (export/import log)
  std::unique_ptr<daemon::TherapyDocument> import;  // import_therapy: the document read
  PumpState exported_state = PumpState::idle;        // import_therapy: the old unit's state
  ~Pending() {
    if (msg != nullptr) sd_bus_message_unref(msg);
  }
};

PumpObject::PumpObject(PumpContext ctx) : ctx_(std::move(ctx)) {
  status_.refill_accuracy_percent = std::numeric_limits<double>::quiet_NaN();
}

PumpObject::~PumpObject() { detach(); }

void PumpObject::detach() {
  fail_pending("the pump daemon is shutting down");
  for (auto*& s : slots_) s = sd_bus_slot_unref(s);
  timer_ = sd_event_source_disable_unref(timer_);
  bus_ = nullptr;
}

int PumpObject::submit(sd_bus_message* m, Command cmd, std::unique_ptr<Pending> p, sd_bus_error* err) {
  if (!p) p = std::make_unique<Pending>();
  cmd.id = next_id_++;
  p->kind = cmd.kind;
  if (p->plan) cmd.plan = p->plan.get();
  if ((ctx_.journal != nullptr && cmd.kind != CommandKind::grant_budget) || cmd.kind == CommandKind::export_therapy) {
    p->state = std::make_unique<CoreState>();
    cmd.state_out = p->state.get();
  }
  if (!ctx_.loop->post(cmd)) {
    if (!p->store_path.empty()) io::discard_temp(p->store_path);
    return sd_bus_error_set(err, kErrInvalidState, "The dosing thread is busy; try again");
  }
  if (m != nullptr) p->msg = sd_bus_message_ref(m);
  else p->internal = true;
  pending_.emplace(cmd.id, std::move(p));
  arm_timer(true);
  return 1;
}

void PumpObject::fail_pending(const char* why) {
  for (auto& [id, p] : pending_) {
    if (p->msg != nullptr) (void)sd_bus_reply_method_errorf(p->msg, kErrInvalidState, "%s", why);
  }
  pending_.clear();
}

// ---------------------------------------------------------------------------------------
// Methods of org.thecal.Pump1

namespace {

int method_validate(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  auto* o = self(userdata);
  const char* yaml = nullptr;
  int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  config::PrescriptionContext pc{&o->context().drugs, o->context().config.board, o->context().loop->now().wall};
  const auto loaded = config::parse_prescription(yaml, "prescription.yaml", pc);
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', "(sus)");
  for (const auto& p : loaded.problems) {
    if (r < 0) break;
    const std::string msg = "column " + std::to_string(p.column) + ": " + p.message;
    r = sd_bus_message_append(reply, "(sus)", p.path.c_str(), static_cast<std::uint32_t>(p.line), msg.c_str());
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

/// Parses prescription text for LoadPrescription/Refill; sets InvalidPrescription on error.
std::unique_ptr<TherapyPlan> parse_or_error(PumpObject* o, const char* yaml, sd_bus_error* err) {
  if (std::strlen(yaml) > kMaxPrescriptionBytes) {
    sd_bus_error_setf(err, kErrInvalidPrescription, "prescription larger than %zu bytes", kMaxPrescriptionBytes);
    return nullptr;
  }
  config::PrescriptionContext pc{&o->context().drugs, o->context().config.board, o->context().loop->now().wall};
  auto loaded = config::parse_prescription(yaml, "prescription.yaml", pc);
  if (!loaded.plan || !loaded.problems.empty()) {
    const std::string text = config::format_all(loaded.problems);
    sd_bus_error_setf(err, kErrInvalidPrescription, "%s", text.empty() ? "invalid prescription" : text.c_str());
    return nullptr;
  }
  return std::make_unique<TherapyPlan>(*loaded.plan);
}

int method_describe(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  auto* o = self(userdata);
  const char* yaml = nullptr;
  const int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto plan = parse_or_error(o, yaml, err);
  if (!plan) return -EINVAL;
  const std::string summary = config::summarize(*plan, o->context().config.board);
  return sd_bus_reply_method_return(m, "s", summary.c_str());
}

int submit_with_prescription(sd_bus_message* m, PumpObject* o, Command cmd, const char* yaml, sd_bus_error* err) {
  auto p = std::make_unique<PumpObject::Pending>();
  if (yaml != nullptr && *yaml != '\0') {
    p->plan = parse_or_error(o, yaml, err);
    if (!p->plan) return -EINVAL;
    p->store_path = o->context().config.prescription_path;
    if (auto e = io::write_temp(p->store_path, yaml)) {
      return sd_bus_error_setf(err, kErrInvalidState, "Cannot store the prescription: %s", e->c_str());
    }
  }
  return o->submit(m, cmd, std::move(p), err);
}

int method_load(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  auto* o = self(userdata);
  const char* yaml = nullptr;
  int r = sd_bus_message_read(m, "s", &yaml);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (*yaml == '\0') return sd_bus_error_set(err, kErrInvalidPrescription, "empty prescription");
  Command cmd;
  cmd.kind = CommandKind::load_prescription;
  cmd.caller = to_caller(who);
  return submit_with_prescription(m, o, cmd, yaml, err);
}

int method_prime(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double volume = 0;
  int r = sd_bus_message_read(m, "d", &volume);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (!std::isfinite(volume) || volume <= 0) {
    return sd_bus_error_setf(err, kErrOutOfRange, "priming volume must be a positive number of uL, got %g", volume);
  }
  Command cmd;
  cmd.kind = CommandKind::prime;
  cmd.caller = to_caller(who);
  cmd.volume = uL(volume);
  return self(userdata)->submit(m, cmd, nullptr, err);
}

int simple_command(sd_bus_message* m, void* userdata, sd_bus_error* err, CommandKind kind, Need need) {
  CallerInfo who;
  if (!authorize(m, need, who, err)) return -EACCES;
  Command cmd;
  cmd.kind = kind;
  cmd.caller = to_caller(who);
  return self(userdata)->submit(m, cmd, nullptr, err);
}

int method_start(sd_bus_message* m, void* u, sd_bus_error* e) {
  return simple_command(m, u, e, CommandKind::start, Need::clinician);
}
int method_resume(sd_bus_message* m, void* u, sd_bus_error* e) {
  return simple_command(m, u, e, CommandKind::resume, Need::clinician);
}
int method_request_bolus(sd_bus_message* m, void* u, sd_bus_error* e) {
  return simple_command(m, u, e, CommandKind::patient_bolus, Need::patient);
}
int method_cancel_bolus(sd_bus_message* m, void* u, sd_bus_error* e) {
  return simple_command(m, u, e, CommandKind::cancel_bolus, Need::patient);
}
int method_replace_battery(sd_bus_message* m, void* u, sd_bus_error* e) {
  return simple_command(m, u, e, CommandKind::replace_battery, Need::clinician);
}

int method_suspend(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t duration = 0;
  int r = sd_bus_message_read(m, "t", &duration);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  constexpr std::uint64_t kMax = 365ULL * 24 * 3600 * 1'000'000;
  if (duration > kMax) return sd_bus_error_setf(err, kErrOutOfRange, "suspend duration beyond one year");
  Command cmd;
  cmd.kind = CommandKind::suspend;
  cmd.caller = to_caller(who);
  cmd.duration = Duration{static_cast<std::int64_t>(duration)};
  return self(userdata)->submit(m, cmd, nullptr, err);
}

int method_clinician_bolus(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double dose = 0;
  std::uint64_t duration = 0;
  int r = sd_bus_message_read(m, "dt", &dose, &duration);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (!std::isfinite(dose) || dose <= 0) return sd_bus_error_setf(err, kErrOutOfRange, "dose must be a positive number of mcg");
  if (duration > 7ULL * 24 * 3600 * 1'000'000) return sd_bus_error_set(err, kErrOutOfRange, "bolus duration beyond 7 days");
  Command cmd;
  cmd.kind = CommandKind::clinician_bolus;
  cmd.caller = to_caller(who);
  cmd.dose = mcg(dose);
  cmd.duration = Duration{static_cast<std::int64_t>(duration)};
  return self(userdata)->submit(m, cmd, nullptr, err);
}

int method_refill(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  double withdrawn = 0;
  double volume = 0;
  const char* yaml = nullptr;
  int r = sd_bus_message_read(m, "dds", &withdrawn, &volume, &yaml);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  if (!finite_nonneg(withdrawn)) return sd_bus_error_set(err, kErrOutOfRange, "withdrawn volume must be a number of uL >= 0");
  if (!std::isfinite(volume) || volume <= 0) return sd_bus_error_set(err, kErrOutOfRange, "refill volume must be a positive number of uL");
  Command cmd;
  cmd.kind = CommandKind::refill;
  cmd.caller = to_caller(who);
  cmd.withdrawn = uL(withdrawn);
  cmd.volume = uL(volume);
  return submit_with_prescription(m, self(userdata), cmd, yaml, err);
}

int method_ack(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* code = nullptr;
  int r = sd_bus_message_read(m, "s", &code);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::patient, who, err)) return -EACCES;
  const auto alarm = alarm_from_string(code);
  if (!alarm) return sd_bus_error_setf(err, kErrOutOfRange, "unknown alarm code '%s'", code);
  if (priority_of(*alarm) == AlarmPriority::high && !who.clinician) {
    return sd_bus_error_setf(err, kErrAccessDenied, "only a clinician may acknowledge the high alarm '%s'", code);
  }
  Command cmd;
  cmd.kind = CommandKind::acknowledge_alarm;
  cmd.caller = to_caller(who);
  cmd.alarm = *alarm;
  return self(userdata)->submit(m, cmd, nullptr, err);
}

int method_get_events(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t since = 0;
  std::uint32_t max = 0;
  int r = sd_bus_message_read(m, "tu", &since, &max);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  if (since > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return sd_bus_error_set(err, kErrOutOfRange, "since_usec out of range");
  }
  const auto events = self(userdata)->context().events->since(static_cast<std::int64_t>(since),
                                                               std::min(max, kMaxEventsPerCall));
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', "(tsss)");
  for (const auto& e : events) {
    if (r < 0) break;
    r = sd_bus_message_append(reply, "(tsss)", static_cast<std::uint64_t>(e.wall_us), e.type.c_str(), e.who.c_str(),
                              e.detail.c_str());
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

int method_get_history(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::uint64_t bucket = 0;
  int r = sd_bus_message_read(m, "ttt", &from, &to, &bucket);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  const auto buckets = self(userdata)->context().history->query(from, to, bucket);
  if (!buckets) {
    return sd_bus_error_setf(err, kErrOutOfRange,
                             "need bucket_usec > 0, to_usec > from_usec and at most %zu buckets",
                             daemon::DeliveryHistory::kMaxBuckets);
  }
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', "(tdd)");
  for (const auto& b : *buckets) {
    if (r < 0) break;
    r = sd_bus_message_append(reply, "(tdd)", b.start_us, b.mcg, b.ul);
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

int method_get_refills(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  std::uint64_t from = 0;
  int r = sd_bus_message_read(m, "t", &from);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::any, who, err)) return -EACCES;
  if (from > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return sd_bus_error_set(err, kErrOutOfRange, "from_usec out of range");
  }
  const auto refills = self(userdata)->context().history->refills_since(static_cast<std::int64_t>(from));
  sd_bus_message* reply = nullptr;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', "(tdddddb)");
  for (const auto& x : refills) {
    if (r < 0) break;
    r = sd_bus_message_append(reply, "(tdddddb)", static_cast<std::uint64_t>(std::max<std::int64_t>(0, x.wall_us)),
                              x.filled_ul, x.withdrawn_ul, x.estimate_ul, x.pumped_ul, x.accuracy_percent,
                              static_cast<int>(x.discrepancy));
  }
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

int method_export(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  Command cmd;
  cmd.kind = CommandKind::export_therapy;
  cmd.caller = to_caller(who);
  auto p = std::make_unique<PumpObject::Pending>();
  p->uid = who.uid;
  return self(userdata)->submit(m, cmd, std::move(p), err);
}

int method_import(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  auto* o = self(userdata);
  const char* text = nullptr;
  int r = sd_bus_message_read(m, "s", &text);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  // A refused import changes nothing but is recorded (who tried to load what, S11).
  auto refused = [&](const char* name, const std::string& why) {
    o->context().events->append({to_usec(o->context().loop->now().wall), "command_refused",
                                 daemon::EventLog::who(who.uid), "import_therapy refused: " + why}, 4);
    return sd_bus_error_setf(err, name, "%s", why.c_str());
  };
  std::string why;
  auto doc = daemon::decode_therapy_document(text, &why);
  if (!doc) return refused(kErrInvalidDocument, "therapy document refused: " + why);
  // The prescription must be valid on this unit too (its drug library and board), and is
  // compiled here afresh; it is the same text, so the same id.
  config::PrescriptionContext pc{&o->context().drugs, o->context().config.board, o->context().loop->now().wall};
  auto loaded = config::parse_prescription(doc->prescription, "prescription.yaml", pc);
  if (!loaded.plan || !loaded.problems.empty()) {
    return refused(kErrInvalidPrescription,
                   "the exported prescription is not valid on this unit:\n" + config::format_all(loaded.problems));
  }
  if (!(loaded.plan->id == doc->state.plan->id)) {
    return refused(kErrInvalidDocument, "therapy document refused: the prescription id does not match");
  }
  doc->state.plan = *loaded.plan;
  auto p = std::make_unique<PumpObject::Pending>();
  p->uid = who.uid;
  p->store_path = o->context().config.prescription_path;
  if (auto e = io::write_temp(p->store_path, doc->prescription)) {
    return sd_bus_error_setf(err, kErrInvalidState, "Cannot store the prescription: %s", e->c_str());
  }
  Command cmd;
  cmd.kind = CommandKind::import_therapy;
  cmd.caller = to_caller(who);
  cmd.state_in = &doc->state;  // the core rewrites its unit-specific fields
  p->exported_state = doc->state.state;
  p->import = std::move(doc);
  return o->submit(m, cmd, std::move(p), err);
}

// ---------------------------------------------------------------------------------------
// Properties of org.thecal.Pump1: one table, used by the getter and by the change tracker.

struct PropertyDef {
  const char* name;
  const char* signature;
  bool fast;  // fast-moving: PropertiesChanged at most once a second
  int (*append)(sd_bus_message* reply, const Status& s);
};

int append_alarms(sd_bus_message* reply, const Status& s, const PumpObject* o = nullptr) {
  int r = sd_bus_message_open_container(reply, 'a', "(ssst)");
  for (std::size_t i = 0; i < kAlarmCount && r >= 0; ++i) {
    const auto& a = s.alarms[i];
    if (!a.active) continue;
    const auto code = static_cast<AlarmCode>(i);
    const std::string c(to_string(code));
    const std::string p(to_string(priority_of(code)));
    const std::string msg = o != nullptr ? o->alarm_text(code) : std::string(alarm_message(code));
    r = sd_bus_message_append(reply, "(ssst)", c.c_str(), p.c_str(), msg.c_str(), wall_or_zero(a.raised));
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(reply);
}

std::string phase_text(const Status& s) {
  if (!s.has_prescription) return "";
  return s.phase == Phase::trial ? "trial" : "maintenance";
}

const PropertyDef kProperties[] = {
    {"State", "s", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "s", std::string(to_string(s.state)).c_str()); }},
    {"Phase", "s", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "s", phase_text(s).c_str()); }},
    {"PrescriptionId", "s", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "s", s.prescription_id.c_str()); }},
    {"Drug", "s", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "s", s.drug.c_str()); }},
    {"ConcentrationMcgPerMl", "d", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_mcg_per_mL(s.concentration)); }},
    {"BasalRateMcgPerDay", "d", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_mcg_per_day(s.basal_rate)); }},
    {"ReservoirUl", "d", true, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_uL(s.reservoir)); }},
    {"ReservoirCapacityUl", "d", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_uL(s.reservoir_capacity)); }},
    {"CatheterPrimed", "b", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "b", static_cast<int>(s.catheter_primed)); }},
    {"Delivered24hMcg", "d", true, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_mcg(s.delivered_24h)); }},
    {"DailyLimitMcg", "d", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", to_mcg(s.daily_limit)); }},
    {"PatientBolusesToday", "u", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "u", s.patient_boluses_24h); }},
    {"NextPatientBolusUsec", "t", true, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "t", wall_or_zero(s.next_patient_bolus)); }},
    {"BolusActive", "b", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "b", static_cast<int>(s.bolus_active)); }},
    {"ActiveAlarms", "a(ssst)", false, [](sd_bus_message* r, const Status& s) { return append_alarms(r, s); }},
    {"BatteryPercent", "d", true, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", s.battery_percent); }},
    {"RefillDueUsec", "t", true, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "t", wall_or_zero(s.refill_due)); }},
    {"TrialEndsUsec", "t", false, [](sd_bus_message* r, const Status& s) {
       return sd_bus_message_append(r, "t", s.has_prescription && s.phase == Phase::trial ? wall_or_zero(s.trial_ends) : std::uint64_t{0});
     }},
    {"RefillAccuracyPercent", "d", false, [](sd_bus_message* r, const Status& s) { return sd_bus_message_append(r, "d", s.refill_accuracy_percent); }},
};

const PropertyDef* find_property(const char* name) {
  for (const auto& p : kProperties) {
    if (std::strcmp(p.name, name) == 0) return &p;
  }
  return nullptr;
}

int get_pump_property(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* property,
                      sd_bus_message* reply, void* userdata, sd_bus_error* err) {
  const PropertyDef* p = find_property(property);
  if (p == nullptr) return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
  if (std::string_view(property) == "ActiveAlarms") return append_alarms(reply, self(userdata)->status(), self(userdata));
  return p->append(reply, self(userdata)->status());
}

/// A comparable text of a property's value, for change tracking.
std::string serialize(const PropertyDef& p, const Status& s) {
  std::string out;
  char buf[128];
  const std::string name = p.name;
  if (name == "State") return std::string(to_string(s.state));
  if (name == "Phase") return phase_text(s);
  if (name == "PrescriptionId") return std::string(s.prescription_id.view());
  if (name == "Drug") return std::string(s.drug.view());
  if (name == "ActiveAlarms") {
    for (std::size_t i = 0; i < kAlarmCount; ++i) {
      if (s.alarms[i].active) out += std::string(to_string(static_cast<AlarmCode>(i))) + std::to_string(to_usec(s.alarms[i].raised)) + ",";
    }
    return out;
  }
  double v = 0;
  if (name == "ConcentrationMcgPerMl") v = to_mcg_per_mL(s.concentration);
  else if (name == "BasalRateMcgPerDay") v = to_mcg_per_day(s.basal_rate);
  else if (name == "ReservoirUl") v = to_uL(s.reservoir);
  else if (name == "ReservoirCapacityUl") v = to_uL(s.reservoir_capacity);
  else if (name == "CatheterPrimed") v = s.catheter_primed;
  else if (name == "Delivered24hMcg") v = to_mcg(s.delivered_24h);
  else if (name == "DailyLimitMcg") v = to_mcg(s.daily_limit);
  else if (name == "PatientBolusesToday") v = s.patient_boluses_24h;
  else if (name == "NextPatientBolusUsec") v = static_cast<double>(wall_or_zero(s.next_patient_bolus));
  else if (name == "BolusActive") v = s.bolus_active;
  else if (name == "BatteryPercent") v = s.battery_percent;
  else if (name == "RefillDueUsec") v = static_cast<double>(wall_or_zero(s.refill_due));
  else if (name == "TrialEndsUsec") v = static_cast<double>(wall_or_zero(s.trial_ends));
  else if (name == "RefillAccuracyPercent") v = s.refill_accuracy_percent;
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// ---------------------------------------------------------------------------------------
// org.thecal.Diagnostics1

int get_diag(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* property,
             sd_bus_message* reply, void* userdata, sd_bus_error* err) {
  auto* o = self(userdata);
  const auto d = o->context().loop->diagnostics();
  const std::string_view p = property;
  std::uint64_t v = 0;
  if (p == "RealtimeScheduling") return sd_bus_message_append(reply, "b", static_cast<int>(d.realtime));
  if (p == "LatencyHistogram") {
    // Non-empty bins as (lower edge ns, count): 1 us wide below 4.096 ms, 64 us wide up to
    // 69.632 ms; the overflow bin is (max_ns, count).
    int r = sd_bus_message_open_container(reply, 'a', "(tt)");
    for (std::size_t i = 0; r >= 0 && i < d.latency.counts.size(); ++i) {
      if (d.latency.counts[i] == 0) continue;
      const std::uint64_t edge = i < daemon::LatencyHistogram::kBins ? daemon::LatencyHistogram::lower_edge_ns(i) : d.latency.max_ns;
      r = sd_bus_message_append(reply, "(tt)", edge, d.latency.counts[i]);
    }
    return r < 0 ? r : sd_bus_message_close_container(reply);
  }
  if (p == "LoopCycles") v = d.cycles;
  else if (p == "Overruns") v = d.overruns;
  else if (p == "LatencyMaxNs") v = d.latency.max_ns;
  else if (p == "LatencyP50Ns") v = d.latency.quantile_ns(0.5);
  else if (p == "LatencyP99Ns") v = d.latency.quantile_ns(0.99);
  else if (p == "LatencyP999Ns") v = d.latency.quantile_ns(0.999);
  else if (p == "LatencyMaxNsLastMinute") v = o->last_minute_.max_ns;
  else if (p == "LatencyP99NsLastMinute") v = o->last_minute_.quantile_ns(0.99);
  else if (p == "LatencyP999NsLastMinute") v = o->last_minute_.quantile_ns(0.999);
  else if (p == "ControlStepMaxNs") v = d.control_step_max_ns;
  else if (p == "StepsIssued") v = o->status().steps_issued;
  else if (p == "EncoderPulses") v = o->status().encoder_pulses;
  else if (p == "JournalWrites") v = o->context().journal_writes;
  else if (p == "WallClockUsec") v = wall_or_zero(o->context().loop->now().wall);
  else return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
  return sd_bus_message_append(reply, "t", v);
}

// ---------------------------------------------------------------------------------------
// org.thecal.Simulator1

int method_inject_fault(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* fault = nullptr;
  int active = 0;
  int r = sd_bus_message_read(m, "sb", &fault, &active);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(m, Need::clinician, who, err)) return -EACCES;
  const auto f = io::sim_fault_from_string(fault);
  if (!f) {
    return sd_bus_error_setf(err, kErrOutOfRange,
                             "unknown fault '%s' (occlusion, disconnect, motor_stall, driver_fault, "
                             "encoder_failure, low_battery, bolus_button)", fault);
  }
  auto* o = self(userdata);
  o->context().sim->inject(*f, active != 0);
  o->context().events->append({to_usec(o->context().loop->now().wall), "fault_injected",
                               daemon::EventLog::who(who.uid), std::string(fault) + (active ? " on" : " off")}, 4);
  return sd_bus_reply_method_return(m, "");
}

int get_time_scale(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* /*property*/,
                   sd_bus_message* reply, void* userdata, sd_bus_error* /*err*/) {
  return sd_bus_message_append(reply, "d", self(userdata)->context().loop->time_scale());
}

int set_time_scale(sd_bus* bus, const char* path, const char* iface, const char* property, sd_bus_message* value,
                   void* userdata, sd_bus_error* err) {
  double v = 0;
  int r = sd_bus_message_read(value, "d", &v);
  if (r < 0) return r;
  CallerInfo who;
  if (!authorize(value, Need::clinician, who, err)) return -EACCES;
  if (!std::isfinite(v) || v < 1.0 || v > 20000.0) {
    return sd_bus_error_setf(err, kErrOutOfRange, "TimeScale must be within 1..20000, got %g", v);
  }
  auto* o = self(userdata);
  o->context().loop->set_time_scale(v);
  char buf[64];
  std::snprintf(buf, sizeof buf, "time scale %g", v);
  o->context().events->append({to_usec(o->context().loop->now().wall), "time_scale", daemon::EventLog::who(who.uid), buf}, 5);
  (void)sd_bus_emit_properties_changed(bus, path, iface, property, nullptr);
  return 1;
}

int get_true_delivered(sd_bus* /*bus*/, const char* /*path*/, const char* /*iface*/, const char* /*property*/,
                       sd_bus_message* reply, void* userdata, sd_bus_error* /*err*/) {
  return sd_bus_message_append(reply, "d", self(userdata)->context().sim->true_delivered_ul());
}

#define PUMP_PROP(name, sig, flags) SD_BUS_PROPERTY(name, sig, get_pump_property, 0, flags)
constexpr auto kEmits = SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE;

const sd_bus_vtable kPumpVtable[] = {
    SD_BUS_VTABLE_START(0),
    PUMP_PROP("State", "s", kEmits),
    PUMP_PROP("Phase", "s", kEmits),
    PUMP_PROP("PrescriptionId", "s", kEmits),
    PUMP_PROP("Drug", "s", kEmits),
    PUMP_PROP("ConcentrationMcgPerMl", "d", kEmits),
    PUMP_PROP("BasalRateMcgPerDay", "d", kEmits),
    PUMP_PROP("ReservoirUl", "d", kEmits),
    PUMP_PROP("ReservoirCapacityUl", "d", kEmits),
    PUMP_PROP("CatheterPrimed", "b", kEmits),
    PUMP_PROP("Delivered24hMcg", "d", kEmits),
    PUMP_PROP("DailyLimitMcg", "d", kEmits),
    PUMP_PROP("PatientBolusesToday", "u", kEmits),
    PUMP_PROP("NextPatientBolusUsec", "t", kEmits),
    PUMP_PROP("BolusActive", "b", kEmits),
    PUMP_PROP("ActiveAlarms", "a(ssst)", kEmits),
    PUMP_PROP("BatteryPercent", "d", kEmits),
    PUMP_PROP("RefillDueUsec", "t", kEmits),
    PUMP_PROP("TrialEndsUsec", "t", kEmits),
    PUMP_PROP("RefillAccuracyPercent", "d", kEmits),
    SD_BUS_METHOD_WITH_ARGS("ValidatePrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("a(sus)", problems),
                            method_validate, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("DescribePrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("s", summary),
                            method_describe, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("LoadPrescription", SD_BUS_ARGS("s", yaml), SD_BUS_RESULT("s", id), method_load,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Prime", SD_BUS_ARGS("d", volume_ul), SD_BUS_NO_RESULT, method_prime, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Start", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_start, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Suspend", SD_BUS_ARGS("t", duration_usec), SD_BUS_NO_RESULT, method_suspend,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Resume", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_resume, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RequestBolus", SD_BUS_NO_ARGS, SD_BUS_RESULT("d", dose_mcg, "t", ends_usec),
                            method_request_bolus, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ClinicianBolus", SD_BUS_ARGS("d", dose_mcg, "t", duration_usec),
                            SD_BUS_RESULT("t", ends_usec), method_clinician_bolus, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CancelBolus", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_cancel_bolus, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Refill", SD_BUS_ARGS("d", withdrawn_ul, "d", volume_ul, "s", prescription_yaml),
                            SD_BUS_NO_RESULT, method_refill, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("AcknowledgeAlarm", SD_BUS_ARGS("s", code), SD_BUS_NO_RESULT, method_ack,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetEvents", SD_BUS_ARGS("t", since_usec, "u", max), SD_BUS_RESULT("a(tsss)", events),
                            method_get_events, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetDeliveryHistory", SD_BUS_ARGS("t", from_usec, "t", to_usec, "t", bucket_usec),
                            SD_BUS_RESULT("a(tdd)", buckets), method_get_history, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetRefillHistory", SD_BUS_ARGS("t", from_usec), SD_BUS_RESULT("a(tdddddb)", refills),
                            method_get_refills, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ReplaceBattery", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_replace_battery,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ExportTherapy", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", document), method_export,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ImportTherapy", SD_BUS_ARGS("s", document), SD_BUS_NO_RESULT, method_import,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS("AlarmRaised", SD_BUS_ARGS("s", code, "s", priority, "s", message), 0),
    SD_BUS_SIGNAL_WITH_ARGS("AlarmCleared", SD_BUS_ARGS("s", code), 0),
    SD_BUS_SIGNAL_WITH_ARGS("BolusStarted", SD_BUS_ARGS("s", source, "d", dose_mcg), 0),
    SD_BUS_SIGNAL_WITH_ARGS("BolusFinished", SD_BUS_ARGS("s", source, "d", delivered_mcg), 0),
    SD_BUS_VTABLE_END};

#define DIAG_PROP(name, sig) SD_BUS_PROPERTY(name, sig, get_diag, 0, 0)

const sd_bus_vtable kDiagVtable[] = {
    SD_BUS_VTABLE_START(0),
    DIAG_PROP("LoopCycles", "t"),
    DIAG_PROP("Overruns", "t"),
    DIAG_PROP("LatencyMaxNs", "t"),
    DIAG_PROP("LatencyP50Ns", "t"),
    DIAG_PROP("LatencyP99Ns", "t"),
    DIAG_PROP("LatencyP999Ns", "t"),
    DIAG_PROP("LatencyMaxNsLastMinute", "t"),
    DIAG_PROP("LatencyP99NsLastMinute", "t"),
    DIAG_PROP("LatencyP999NsLastMinute", "t"),
    DIAG_PROP("LatencyHistogram", "a(tt)"),
    DIAG_PROP("ControlStepMaxNs", "t"),
    DIAG_PROP("StepsIssued", "t"),
    DIAG_PROP("EncoderPulses", "t"),
    DIAG_PROP("JournalWrites", "t"),
    DIAG_PROP("WallClockUsec", "t"),
    SD_BUS_PROPERTY("RealtimeScheduling", "b", get_diag, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END};

const sd_bus_vtable kSimVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("InjectFault", SD_BUS_ARGS("s", fault, "b", active), SD_BUS_NO_RESULT,
                            method_inject_fault, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("TimeScale", "d", get_time_scale, set_time_scale, 0,
                             SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("TrueDeliveredUl", "d", get_true_delivered, 0, 0),
    SD_BUS_VTABLE_END};

int on_timer(sd_event_source* /*s*/, std::uint64_t /*usec*/, void* userdata) {
  self(userdata)->poll();
  return 0;
}

}  // namespace

int PumpObject::attach(sd_bus* bus, sd_event* event) {
  bus_ = bus;
  int r = sd_bus_add_object_vtable(bus, &slots_[0], kObjectPath, kPumpInterface, kPumpVtable, this);
  if (r < 0) return r;
  r = sd_bus_add_object_vtable(bus, &slots_[1], kObjectPath, kDiagnosticsInterface, kDiagVtable, this);
  if (r < 0) return r;
  if (ctx_.sim != nullptr) {
    r = sd_bus_add_object_vtable(bus, &slots_[2], kObjectPath, kSimulatorInterface, kSimVtable, this);
    if (r < 0) return r;
  }
  r = sd_event_add_time_relative(event, &timer_, CLOCK_MONOTONIC, kIdlePollUs, 0, on_timer, this);
  if (r < 0) return r;
  // sd-event coalesces timers within their accuracy, 250 ms by default: the poll must
  // fire on time, or every reply waits a quarter of a second.
  r = sd_event_source_set_time_accuracy(timer_, 1);
  if (r < 0) return r;
  r = sd_event_source_set_enabled(timer_, SD_EVENT_ON);
  if (r < 0) return r;
  (void)sd_event_source_set_description(timer_, "thecal-poll");
  grant_budget_if_needed();
  return 0;
}

void PumpObject::arm_timer(bool fast) {
  if (timer_ == nullptr) return;
  (void)sd_event_source_set_time_relative(timer_, fast ? kFastPollUs : kIdlePollUs);
  (void)sd_event_source_set_enabled(timer_, SD_EVENT_ON);
}

void PumpObject::load_stored_prescription() {
  const std::string& path = ctx_.config.prescription_path;
  std::string err;
  const auto text = io::read_file(path, &err);
  if (!text) {
    log_notice("No stored prescription at %s: the pump starts without one", path.c_str());
    return;
  }
  config::PrescriptionContext pc{&ctx_.drugs, ctx_.config.board, ctx_.loop->now().wall};
  auto loaded = config::parse_prescription(*text, path, pc);
  if (!loaded.plan) {
    const std::string problems = config::format_all(loaded.problems);
    log_error("The stored prescription %s is not valid; the pump starts without one:\n%s", path.c_str(), problems.c_str());
    ctx_.events->append({to_usec(ctx_.loop->now().wall), "prescription_rejected", "pump", problems}, 3);
    raise_alarm(AlarmCode::prescription_rejected);
    return;
  }
  auto p = std::make_unique<Pending>();
  p->plan = std::make_unique<TherapyPlan>(*loaded.plan);
  Command cmd;
  cmd.kind = CommandKind::load_prescription;
  cmd.caller = {kSystemUid, false};
  sd_bus_error e = SD_BUS_ERROR_NULL;
  (void)submit(nullptr, cmd, std::move(p), &e);
  sd_bus_error_free(&e);
}

void PumpObject::raise_alarm(AlarmCode code) {
  Command cmd;
  cmd.kind = CommandKind::raise_alarm;
  cmd.caller = {kSystemUid, false};
  cmd.alarm = code;
  sd_bus_error e = SD_BUS_ERROR_NULL;
  (void)submit(nullptr, cmd, nullptr, &e);
  sd_bus_error_free(&e);
}

bool PumpObject::take_first_status(int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; ++waited) {
    if (ctx_.loop->latest_status(status_)) {
      for (const auto& p : kProperties) last_emitted_[p.name] = serialize(p, status_);
      return true;
    }
    ::usleep(1000);
  }
  return false;
}

bool PumpObject::settle_startup(int timeout_ms) {
  if (!take_first_status(timeout_ms)) return false;
  for (int waited = 0; waited <= timeout_ms; ++waited) {
    poll();
    if (pending_.empty()) return true;
    ::usleep(1000);
  }
  return false;
}

void PumpObject::grant_budget_if_needed() {
  if (ctx_.journal != nullptr) {
    daemon::JournalKeeper& j = *ctx_.journal;
    post_grant();
    if (checkpoint_in_flight_) return;
    const auto size = static_cast<std::int64_t>(j.reservation_steps(status_.pump_rate, status_.prime_left));
    const auto left = static_cast<std::int64_t>(j.reserved()) - static_cast<std::int64_t>(status_.steps_issued);
    bool want = checkpoint_wanted_ || left < size / 2 || j.needs_compaction();
    if (!j.healthy()) {
      // Try a rewrite into a new file now and then (it clears a poisoned journal).
      const std::int64_t now_us = daemon::real_monotonic_us();
      want = now_us - last_rewrite_try_us_ >= 10'000'000;
      if (want) last_rewrite_try_us_ = now_us;
    }
    if (!want) {
      if (j.healthy()) {
        if (auto e = j.flush_events()) log_warning("Failed to write event records to the journal: %s", e->c_str());
      }
      return;
    }
    Command cmd;
    cmd.kind = CommandKind::export_state;
    cmd.caller = {kSystemUid, false};
    sd_bus_error e = SD_BUS_ERROR_NULL;
    if (submit(nullptr, cmd, nullptr, &e) > 0) {
      checkpoint_in_flight_ = true;
      checkpoint_wanted_ = false;
    }
    sd_bus_error_free(&e);
    return;
  }
  if (budget_in_flight_) return;
  const auto left = granted_steps_ - static_cast<std::int64_t>(status_.steps_issued);
  if (left > kBudgetGrant / 2) return;
  Command cmd;
  cmd.kind = CommandKind::grant_budget;
  cmd.caller = {kSystemUid, false};
  cmd.steps = Steps{kBudgetGrant};
  sd_bus_error e = SD_BUS_ERROR_NULL;
  if (submit(nullptr, cmd, nullptr, &e) > 0) {
    budget_in_flight_ = true;
    granted_steps_ += kBudgetGrant;
  }
  sd_bus_error_free(&e);
}

void PumpObject::post_grant() {
  // Grants exactly what the journal holds durably and the core does not have yet.
  if (ctx_.journal == nullptr || budget_in_flight_) return;
  const auto delta = static_cast<std::int64_t>(ctx_.journal->reserved()) - granted_steps_;
  if (delta <= 0) return;
  auto p = std::make_unique<Pending>();
  p->grant = delta;
  Command cmd;
  cmd.kind = CommandKind::grant_budget;
  cmd.caller = {kSystemUid, false};
  cmd.steps = Steps{delta};
  sd_bus_error e = SD_BUS_ERROR_NULL;
  if (submit(nullptr, cmd, std::move(p), &e) > 0) {
    budget_in_flight_ = true;
    granted_steps_ += delta;
  }
  sd_bus_error_free(&e);
}

std::optional<std::string> PumpObject::journal_state(const CoreState& s, bool force_rewrite) {
  daemon::JournalKeeper& j = *ctx_.journal;
  VolumeRate rate = status_.pump_rate;
  // The state exported with this command is newer than the last status: a priming that has
  // just ended must not be reserved for at the prime rate.
  if (status_.state == PumpState::priming && !(s.prime_left > Volume{})) rate = VolumeRate{};
  const std::uint64_t target = s.steps_issued + j.reservation_steps(rate, s.prime_left);
  std::optional<std::string> err;
  if (force_rewrite || j.needs_compaction() || !j.healthy()) {
    err = j.rewrite(s, target, ctx_.events->since(0, std::numeric_limits<std::uint32_t>::max()));
  } else {
    err = j.checkpoint(s, target);
  }
  ctx_.journal_writes = j.fsyncs();
  if (err) {
    log_error("Journal write failed: %s; no new delivery budget", err->c_str());
    if (!storage_fault_raised_) {
      storage_fault_raised_ = true;
      raise_alarm(AlarmCode::storage_fault);
    }
    return err;
  }
  storage_fault_raised_ = false;
  post_grant();
  return std::nullopt;
}

void PumpObject::set_granted(std::int64_t steps) { granted_steps_ = steps; }

std::string PumpObject::alarm_text(AlarmCode code) const {
  const auto i = static_cast<std::size_t>(code);
  if (i < kAlarmCount && !alarm_detail_[i].empty()) return alarm_detail_[i];
  return std::string(alarm_message(code));
}

void PumpObject::handle_reply(const Reply& r) {
  auto it = pending_.find(r.id);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  if (p->kind == CommandKind::grant_budget) {
    budget_in_flight_ = false;
    if (!r.ok()) granted_steps_ -= ctx_.journal != nullptr ? p->grant : kBudgetGrant;
  }
  if (p->kind == CommandKind::export_state) checkpoint_in_flight_ = false;
  if (r.ok() && p->kind == CommandKind::export_therapy) {
    finish_export(*p);
    return;
  }
  if (r.ok() && p->kind == CommandKind::import_therapy) {
    finish_import(*p);
    return;
  }
  // SPEC S7: a programming act is durable before its reply.  Refused commands changed
  // nothing but the event log (whose records go with the next write).
  if (p->state && ctx_.journal != nullptr && (r.ok() || p->kind == CommandKind::export_state)) {
    if (auto e = journal_state(*p->state)) {
      if (p->msg != nullptr) {
        (void)sd_bus_reply_method_errorf(p->msg, kErrInvalidState,
                                         "%s was applied but could not be made durable (%s): the pump is stopped "
                                         "with the storage_fault alarm",
                                         std::string(to_string(p->kind)).c_str(), e->c_str());
        if (!p->store_path.empty()) (void)io::commit_temp(p->store_path);
        return;
      }
    }
  }
  if (!p->store_path.empty()) {
    if (r.ok()) {
      if (auto e = io::commit_temp(p->store_path)) log_error("Failed to store the prescription: %s", e->c_str());
    } else {
      io::discard_temp(p->store_path);
    }
  }
  if (p->internal && !r.ok()) {
    log_warning("The pump refused its own %s: %s", std::string(to_string(p->kind)).c_str(), r.message.c_str());
  }
  if (p->msg == nullptr) return;
  if (!r.ok()) {
    const std::string name(dbus_error_name(r.refusal));
    (void)sd_bus_reply_method_errorf(p->msg, name.c_str(), "%s", r.message.c_str());
    return;
  }
  switch (p->kind) {
    case CommandKind::load_prescription:
      (void)sd_bus_reply_method_return(p->msg, "s", p->plan ? p->plan->id.c_str() : "");
      break;
    case CommandKind::patient_bolus:
      (void)sd_bus_reply_method_return(p->msg, "dt", to_mcg(r.dose), wall_or_zero(r.ends));
      break;
    case CommandKind::clinician_bolus:
      (void)sd_bus_reply_method_return(p->msg, "t", wall_or_zero(r.ends));
      break;
    default:
      (void)sd_bus_reply_method_return(p->msg, "");
      break;
  }
}

void PumpObject::finish_export(Pending& p) {
  const CoreState& s = *p.state;
  auto fail = [&](const std::string& why) {
    if (p.msg != nullptr) (void)sd_bus_reply_method_errorf(p.msg, kErrInvalidState, "%s", why.c_str());
  };
  if (!s.plan) return fail("no prescription is loaded: there is no therapy to export");
  std::string err;
  const auto text = io::read_file(ctx_.config.prescription_path, &err);
  if (!text || config::sha256_hex(*text) != s.plan->id.view()) {
    return fail("the stored prescription file does not match the active prescription (" +
                (text ? std::string("different text") : err) + "): cannot export it");
  }
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "therapy exported for a replacement unit: prescription %.12s, state %s, %.3f mcg in the last 24 h, "
                "%u patient boluses in the last 24 h, %zu events",
                s.plan->id.c_str(), std::string(to_string(s.state)).c_str(), to_mcg(status_.delivered_24h),
                status_.patient_boluses_24h, ctx_.events->size() + 1);
  ctx_.events->append({to_usec(s.wall), "therapy_exported", daemon::EventLog::who(p.uid), buf}, 5);
  const std::string doc =
      daemon::encode_therapy_document(s, *text, ctx_.events->since(0, std::numeric_limits<std::uint32_t>::max()));
  if (ctx_.journal != nullptr) {
    if (auto e = journal_state(s)) return fail("the export could not be made durable in the journal: " + *e);
  }
  if (p.msg != nullptr) (void)sd_bus_reply_method_return(p.msg, "s", doc.c_str());
}

void PumpObject::finish_import(Pending& p) {
  const daemon::TherapyDocument& d = *p.import;
  // The old unit's log, marked as such, in time order with this unit's.
  std::vector<daemon::LoggedEvent> imported = d.events;
  for (auto& e : imported) e.detail = "[replaced unit] " + e.detail;
  ctx_.events->merge(imported);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "therapy imported from a replaced unit (%s there, exported at wall %lld us): prescription %.12s, "
                "%zu patient bolus starts, %zu events; monotonic times mapped as if no time had passed since the "
                "export (ledger and lockouts never shorter; the wall-clock difference is logged as a wall_clock_jump); "
                "reservoir empty until the first refill",
                std::string(to_string(p.exported_state)).c_str(), static_cast<long long>(to_usec(d.state.wall)),
                d.state.plan ? d.state.plan->id.c_str() : "", d.state.patient_starts.size(), d.events.size());
  ctx_.events->append({to_usec(ctx_.loop->now().wall), "therapy_imported", daemon::EventLog::who(p.uid), buf}, 5);
  // The journal first (a rewrite, so the imported events are in the file with the state),
  // then the prescription file: after a crash in between, the journal's plan is the one
  // restored (the stored file is read only when the journal has none).
  std::optional<std::string> journal_error;
  if (ctx_.journal != nullptr && p.state) journal_error = journal_state(*p.state, true);
  if (auto e = io::commit_temp(p.store_path)) log_error("Failed to store the imported prescription: %s", e->c_str());
  p.store_path.clear();
  if (journal_error) {
    if (p.msg != nullptr) {
      (void)sd_bus_reply_method_errorf(p.msg, kErrInvalidState,
                                       "the therapy was imported but could not be made durable (%s): the pump is "
                                       "stopped with the storage_fault alarm",
                                       journal_error->c_str());
    }
    return;
  }
  if (p.msg != nullptr) (void)sd_bus_reply_method_return(p.msg, "");
}

void PumpObject::handle_event(const Event& e) {
  const auto d = daemon::describe(e);
  ctx_.events->append({to_usec(e.when), d.type, daemon::EventLog::who(e.uid), d.detail}, d.priority);
  if (e.type == EventType::refill) {
    ctx_.history->record_refill({to_usec(e.when), to_uL(e.volume), to_uL(e.volume2), to_uL(e.estimate), to_uL(e.pumped),
                                 e.percent, e.flagged});
    // The core raises refill_discrepancy right after this event: its message gets the figures.
    if (e.flagged) {
      char buf[256];
      (void)std::snprintf(buf, sizeof buf, "%s: measured %.1f uL, estimate %.1f uL (allowed difference %.1f uL)",
                          std::string(alarm_message(AlarmCode::refill_discrepancy)).c_str(), to_uL(e.volume2),
                          to_uL(e.estimate), to_uL(e.tolerance));
      alarm_detail_[static_cast<std::size_t>(AlarmCode::refill_discrepancy)] = buf;
    }
  }
  if (e.type == EventType::alarm_cleared && static_cast<std::size_t>(e.alarm) < kAlarmCount) {
    alarm_detail_[static_cast<std::size_t>(e.alarm)].clear();
  }
  if (bus_ == nullptr) return;
  switch (e.type) {
    case EventType::alarm_raised: {
      const std::string code(to_string(e.alarm));
      const std::string prio(to_string(priority_of(e.alarm)));
      const std::string msg = alarm_text(e.alarm);
      (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "AlarmRaised", "sss", code.c_str(), prio.c_str(), msg.c_str());
      break;
    }
    case EventType::alarm_cleared: {
      const std::string code(to_string(e.alarm));
      (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "AlarmCleared", "s", code.c_str());
      break;
    }
    case EventType::bolus_started: {
      const std::string src(to_string(e.source));
      (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "BolusStarted", "sd", src.c_str(), to_mcg(e.mass));
      break;
    }
    case EventType::bolus_finished: {
      const std::string src(to_string(e.source));
      (void)sd_bus_emit_signal(bus_, kObjectPath, kPumpInterface, "BolusFinished", "sd", src.c_str(), to_mcg(e.mass));
      break;
    }
    default:
      break;
  }
}

void PumpObject::emit_changed_properties(bool force_fast) {
  if (bus_ == nullptr) return;
  const std::int64_t now_us = daemon::real_monotonic_us();
  const bool fast_due = force_fast || now_us - last_fast_emit_us_ >= kFastPropertyIntervalUs;
  std::vector<std::string> changed;
  for (const auto& p : kProperties) {
    if (p.fast && !fast_due) continue;
    std::string v = serialize(p, status_);
    auto& last = last_emitted_[p.name];
    if (last != v) {
      last = std::move(v);
      changed.emplace_back(p.name);
    }
  }
  if (fast_due) last_fast_emit_us_ = now_us;
  if (changed.empty()) return;
  std::vector<char*> names;
  names.reserve(changed.size() + 1);
  for (auto& n : changed) names.push_back(n.data());
  names.push_back(nullptr);
  (void)sd_bus_emit_properties_changed_strv(bus_, kObjectPath, kPumpInterface, names.data());
}

void PumpObject::poll() {
  // Order matters: the dosing thread publishes a cycle's events, then its status, then its
  // replies.  Taking the replies first, then the events and the newest status, and only
  // then answering, means a reply is never sent before the status that follows it.
  std::vector<Reply> replies;
  ctx_.loop->drain_replies([&](const Reply& r) { replies.push_back(r); });
  bool state_changed = false;
  ctx_.loop->drain_events([&](const Event& e) {
    if (e.type == EventType::state_changed || e.type == EventType::alarm_raised || e.type == EventType::alarm_cleared) {
      state_changed = true;
    }
    // Anything that changed the therapy state is journaled at once (a crash must not bring
    // back, say, an infusing pump that an occlusion had stopped).
    if (e.type != EventType::budget_exhausted && e.type != EventType::command_refused) checkpoint_wanted_ = true;
    handle_event(e);
  });
  if (ctx_.loop->latest_status(status_)) {
    ctx_.history->record_totals(to_usec(status_.wall), to_mcg(status_.total_delivered_mass), to_uL(status_.total_pumped_volume));
    emit_changed_properties(state_changed);
  }
  for (const Reply& r : replies) handle_reply(r);
  grant_budget_if_needed();

  // Diagnostics: the last completed minute.
  const std::int64_t now_us = daemon::real_monotonic_us();
  if (now_us - minute_started_us_ >= 60'000'000) {
    const auto d = ctx_.loop->diagnostics();
    const std::uint64_t minute_max = ctx_.loop->take_interval_max();
    if (minute_started_us_ != 0) {
      last_minute_ = d.latency - minute_base_;
      last_minute_.max_ns = minute_max;  // exact, not a bin edge
    }
    minute_base_ = d.latency;
    minute_started_us_ = now_us;
  }
  arm_timer(!pending_.empty());
}

}  // namespace thecal::dbus
