#include "app/pump_service.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "app/therapy_document.hpp"
#include "config/sha256.hpp"
#include "io/log.hpp"

namespace thecal::app {

namespace {

constexpr std::uint64_t kMaxSuspendUs = 365ULL * 24 * 3600 * 1'000'000;
constexpr std::uint64_t kMaxBolusDurationUs = 7ULL * 24 * 3600 * 1'000'000;

Command command(CommandKind kind, const Identity& who) {
  Command c;
  c.kind = kind;
  c.caller = {who.uid, who.clinician};
  return c;
}

void complete(const Completion& done, ErrorCode code, std::string message) {
  if (!done) return;
  CallResult r;
  r.error = Error{code, std::move(message)};
  done(r);
}

std::vector<LoggedEvent> whole(const EventLog& log) { return log.since(0, std::numeric_limits<std::uint32_t>::max()); }

}  // namespace

/// A call waiting for the dosing thread's reply.
struct PumpService::Pending {
  CommandKind kind = CommandKind::start;
  Completion done;                    // empty: the daemon's own command
  std::unique_ptr<TherapyPlan> plan;  // freed when the reply comes back
  bool staged = false;                // a prescription text to commit on success
  std::unique_ptr<CoreState> state;   // the core's state after the command (journal)
  std::int64_t grant = 0;             // grant_budget: the steps granted
  std::uint32_t uid = kSystemUid;     // the caller (export/import log)
  std::unique_ptr<TherapyDocument> import;    // import_therapy: the document read
  PumpState exported_state = PumpState::idle;  // import_therapy: the old unit's state
  std::unique_ptr<PreviewRequest> preview;     // preview_prescription: the request (its plan in `plan`)
  PreviewDone preview_done;
};

PumpService::PumpService(PrescriptionStore store, const ServiceParts& parts)
    : store_(std::move(store)),
      loop_(*parts.loop),
      sim_(parts.sim),
      events_(*parts.events),
      history_(*parts.history),
      recorder_(parts.recorder),
      mono_us_(parts.mono_us),
      durability_(*parts.journal, *parts.events, parts.mono_us) {
  status_.refill_accuracy_percent = std::numeric_limits<double>::quiet_NaN();
}

PumpService::~PumpService() { fail_pending("the pump daemon is shutting down"); }

// ---------------------------------------------------------------------------------------
// The pending-call table

bool PumpService::submit(Command cmd, std::unique_ptr<Pending> p) {
  cmd.id = next_id_++;
  p->kind = cmd.kind;
  if (p->plan && !p->preview) cmd.plan = p->plan.get();
  if (cmd.kind != CommandKind::grant_budget) {
    p->state = std::make_unique<CoreState>();
    cmd.state_out = p->state.get();
  }
  if (!loop_.post(cmd)) {
    if (p->preview) {
      previews_.release();
      p->preview_done(Outcome<PreviewResult>::fail(ErrorCode::invalid_state, "The dosing thread is busy; try again"));
    }
    if (p->staged) store_.discard();
    if (p->kind == CommandKind::grant_budget) durability_.grant_answered(false, p->grant);
    complete(p->done, ErrorCode::invalid_state, "The dosing thread is busy; try again");
    return false;
  }
  pending_.emplace(cmd.id, std::move(p));
  return true;
}

void PumpService::fail_pending(const std::string& why) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    if (p->preview) {
      previews_.release();
      p->preview_done(Outcome<PreviewResult>::fail(ErrorCode::invalid_state, why));
    }
    complete(p->done, ErrorCode::invalid_state, why);
  }
}

void PumpService::simple(const Identity& who, CommandKind kind, Completion done) {
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  p->uid = who.uid;
  (void)submit(command(kind, who), std::move(p));
}

void PumpService::with_prescription(const Identity& who, Command cmd, std::string_view yaml, Completion done) {
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  p->uid = who.uid;
  if (!yaml.empty()) {
    std::string problems;
    p->plan = store_.compile(yaml, loop_.now().wall, &problems);
    if (!p->plan) return complete(p->done, ErrorCode::invalid_prescription, problems);
    if (auto e = store_.stage(yaml)) {
      return complete(p->done, ErrorCode::invalid_state, "Cannot store the prescription: " + *e);
    }
    p->staged = true;
  }
  (void)submit(cmd, std::move(p));
}

// ---------------------------------------------------------------------------------------
// Calls through the dosing thread

void PumpService::load_prescription(const Identity& who, std::string_view yaml, Completion done) {
  if (yaml.empty()) return complete(done, ErrorCode::invalid_prescription, "empty prescription");
  with_prescription(who, command(CommandKind::load_prescription, who), yaml, std::move(done));
}

void PumpService::prime(const Identity& who, Volume volume, Completion done) {
  const double ul = to_uL(volume);
  if (!std::isfinite(ul) || ul <= 0) {
    char buf[96];
    (void)std::snprintf(buf, sizeof buf, "priming volume must be a positive number of uL, got %g", ul);
    return complete(done, ErrorCode::out_of_range, buf);
  }
  Command c = command(CommandKind::prime, who);
  c.volume = volume;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  (void)submit(c, std::move(p));
}

void PumpService::start(const Identity& who, Completion done) { simple(who, CommandKind::start, std::move(done)); }
void PumpService::resume(const Identity& who, Completion done) { simple(who, CommandKind::resume, std::move(done)); }
void PumpService::request_bolus(const Identity& who, Completion done) {
  simple(who, CommandKind::patient_bolus, std::move(done));
}
void PumpService::cancel_bolus(const Identity& who, Completion done) {
  simple(who, CommandKind::cancel_bolus, std::move(done));
}
void PumpService::replace_battery(const Identity& who, Completion done) {
  simple(who, CommandKind::replace_battery, std::move(done));
}
void PumpService::export_therapy(const Identity& who, Completion done) {
  simple(who, CommandKind::export_therapy, std::move(done));
}
void PumpService::begin_refill(const Identity& who, Completion done) {
  simple(who, CommandKind::begin_refill, std::move(done));
}
void PumpService::cancel_refill(const Identity& who, Completion done) {
  simple(who, CommandKind::cancel_refill, std::move(done));
}
void PumpService::test_alarm(const Identity& who, Completion done) { simple(who, CommandKind::test_alarm, std::move(done)); }

void PumpService::revise_catheter(const Identity& who, Volume volume, Completion done) {
  const double ul = to_uL(volume);
  if (!std::isfinite(ul) || ul <= 0 || ul > PumpCore::kMaxCatheterUl) {
    char buf[112];
    (void)std::snprintf(buf, sizeof buf, "catheter volume must be within 0 < volume <= 2000 uL, got %g", ul);
    return complete(done, ErrorCode::out_of_range, buf);
  }
  Command c = command(CommandKind::revise_catheter, who);
  c.volume = volume;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  p->uid = who.uid;
  (void)submit(c, std::move(p));
}

void PumpService::suspend(const Identity& who, Duration duration, Completion done) {
  if (to_usec(duration) < 0 || static_cast<std::uint64_t>(to_usec(duration)) > kMaxSuspendUs) {
    return complete(done, ErrorCode::out_of_range, "suspend duration beyond one year");
  }
  Command c = command(CommandKind::suspend, who);
  c.duration = duration;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  (void)submit(c, std::move(p));
}

void PumpService::clinician_bolus(const Identity& who, Mass dose, Duration duration, Completion done) {
  const double m = to_mcg(dose);
  if (!std::isfinite(m) || m <= 0) return complete(done, ErrorCode::out_of_range, "dose must be a positive number of mcg");
  if (to_usec(duration) < 0 || static_cast<std::uint64_t>(to_usec(duration)) > kMaxBolusDurationUs) {
    return complete(done, ErrorCode::out_of_range, "bolus duration beyond 7 days");
  }
  Command c = command(CommandKind::clinician_bolus, who);
  c.dose = dose;
  c.duration = duration;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  (void)submit(c, std::move(p));
}

void PumpService::refill(const Identity& who, Volume withdrawn, Volume volume, std::string_view yaml, Completion done) {
  const double w = to_uL(withdrawn);
  const double v = to_uL(volume);
  if (!std::isfinite(w) || w < 0) return complete(done, ErrorCode::out_of_range, "withdrawn volume must be a number of uL >= 0");
  if (!std::isfinite(v) || v <= 0) return complete(done, ErrorCode::out_of_range, "refill volume must be a positive number of uL");
  Command c = command(CommandKind::refill, who);
  c.withdrawn = withdrawn;
  c.volume = volume;
  with_prescription(who, c, yaml, std::move(done));
}

void PumpService::acknowledge_alarm(const Identity& who, std::string_view code, Completion done) {
  const auto alarm = alarm_from_string(code);
  if (!alarm) return complete(done, ErrorCode::out_of_range, "unknown alarm code '" + std::string(code) + "'");
  if (priority_of(*alarm) == AlarmPriority::high && !who.clinician) {
    return complete(done, ErrorCode::access_denied,
                    "only a clinician may acknowledge the high alarm '" + std::string(code) + "'");
  }
  Command c = command(CommandKind::acknowledge_alarm, who);
  c.alarm = *alarm;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  (void)submit(c, std::move(p));
}

void PumpService::log_refused(const Identity& who, const std::string& what) {
  events_.append({to_usec(loop_.now().wall), "command_refused", EventLog::who(who.uid), what}, 4);
}

void PumpService::import_therapy(const Identity& who, std::string_view document, Completion done) {
  // A refused import changes nothing but is recorded (who tried to load what, S11).
  auto refused = [&](ErrorCode code, const std::string& why) {
    log_refused(who, "import_therapy refused: " + why);
    complete(done, code, why);
  };
  std::string why;
  auto doc = decode_therapy_document(document, &why);
  if (!doc) return refused(ErrorCode::invalid_document, "therapy document refused: " + why);
  // The prescription must be valid on this unit too (its drug library and board), and is
  // compiled here afresh; it is the same text, so the same id.
  auto loaded = store_.parse(doc->prescription, loop_.now().wall);
  if (!loaded.plan || !loaded.problems.empty()) {
    return refused(ErrorCode::invalid_prescription,
                   "the exported prescription is not valid on this unit:\n" + config::format_all(loaded.problems));
  }
  if (!(loaded.plan->id == doc->state.plan->id)) {
    return refused(ErrorCode::invalid_document, "therapy document refused: the prescription id does not match");
  }
  doc->state.plan = *loaded.plan;
  if (auto e = store_.stage(doc->prescription)) {
    return complete(done, ErrorCode::invalid_state, "Cannot store the prescription: " + *e);
  }
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  p->uid = who.uid;
  p->staged = true;
  Command c = command(CommandKind::import_therapy, who);
  c.state_in = &doc->state;  // the core rewrites its unit-specific fields
  p->exported_state = doc->state.state;
  p->import = std::move(doc);
  (void)submit(c, std::move(p));
}

// ---------------------------------------------------------------------------------------
// PreviewPrescription

void PumpService::preview_prescription(const Identity& who, std::string_view yaml, bool with_patient_boluses,
                                       std::uint64_t horizon_us, std::uint64_t bucket_us, PreviewDone done) {
  using Out = Outcome<PreviewResult>;
  if (auto e = check_preview_limits(horizon_us, bucket_us)) return done(Out::fail(e->code, e->message));
  auto p = std::make_unique<Pending>();
  if (!yaml.empty()) {
    std::string problems;
    p->plan = store_.compile(yaml, loop_.now().wall, &problems);
    if (!p->plan) return done(Out::fail(ErrorCode::invalid_prescription, problems));
  }
  if (!previews_.admit()) {
    return done(Out::fail(ErrorCode::invalid_state,
                          "the pump is already computing " + std::to_string(PreviewRunner::kMaxAdmitted) +
                              " previews: try again when one has finished"));
  }
  p->preview = std::make_unique<PreviewRequest>();
  p->preview->with_patient_boluses = with_patient_boluses;
  p->preview->horizon = Duration{static_cast<std::int64_t>(horizon_us)};
  p->preview->bucket = Duration{static_cast<std::int64_t>(bucket_us)};
  p->preview->uid = who.uid;
  p->preview_done = std::move(done);
  (void)submit(command(CommandKind::export_state, who), std::move(p));  // p->plan: the candidate
}

// ---------------------------------------------------------------------------------------
// Calls answered at once

config::Problems PumpService::validate_prescription(std::string_view yaml) const {
  return store_.parse(yaml, loop_.now().wall).problems;
}

Outcome<std::string> PumpService::describe_prescription(std::string_view yaml) const {
  std::string problems;
  const auto plan = store_.compile(yaml, loop_.now().wall, &problems);
  if (!plan) return Outcome<std::string>::fail(ErrorCode::invalid_prescription, problems);
  return {std::nullopt, store_.summarize(*plan)};
}

Outcome<std::vector<LoggedEvent>> PumpService::events(std::uint64_t since_us, std::uint32_t max) const {
  if (since_us > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return Outcome<std::vector<LoggedEvent>>::fail(ErrorCode::out_of_range, "since_usec out of range");
  }
  return {std::nullopt, events_.since(static_cast<std::int64_t>(since_us), std::min(max, kMaxEventsPerCall))};
}

Outcome<std::vector<DeliveryHistory::Bucket>> PumpService::delivery_history(std::uint64_t from_us, std::uint64_t to_us,
                                                                           std::uint64_t bucket_us) const {
  auto buckets = history_.query(from_us, to_us, bucket_us);
  if (!buckets) {
    return Outcome<std::vector<DeliveryHistory::Bucket>>::fail(
        ErrorCode::out_of_range, "need bucket_usec > 0, to_usec > from_usec and at most " +
                                     std::to_string(DeliveryHistory::kMaxBuckets) + " buckets");
  }
  return {std::nullopt, std::move(*buckets)};
}

Outcome<std::vector<DeliveryHistory::Bucket>> PumpService::drug_delivery_history(std::string_view drug,
                                                                                std::uint64_t from_us,
                                                                                std::uint64_t to_us,
                                                                                std::uint64_t bucket_us) const {
  const bool in_solution = std::any_of(status_.drugs.begin(), status_.drugs.end(),
                                       [&](const Status::DrugFigures& d) { return d.name.view() == drug; });
  if (!in_solution && !history_.knows_drug(drug)) {
    return Outcome<std::vector<DeliveryHistory::Bucket>>::fail(
        ErrorCode::out_of_range, "no drug '" + std::string(drug) + "' in the prescription or the delivery history");
  }
  auto buckets = history_.query_drug(drug, from_us, to_us, bucket_us);
  if (!buckets) return delivery_history(from_us, to_us, bucket_us);  // the same refusal
  return {std::nullopt, std::move(*buckets)};
}

void PumpService::record_drug_totals() {
  std::vector<DeliveryHistory::DrugTotal> totals;
  totals.push_back({status_.drugs.empty() ? std::string{} : std::string(status_.drugs[0].name.view()),
                    to_mcg(status_.total_delivered_mass)});
  for (const auto& d : status_.drug_totals) totals.push_back({std::string(d.name.view()), to_mcg(d.total)});
  history_.record_drug_totals(to_usec(status_.wall), totals);
}

Outcome<std::vector<DeliveryHistory::Refill>> PumpService::refill_history(std::uint64_t from_us) const {
  if (from_us > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return Outcome<std::vector<DeliveryHistory::Refill>>::fail(ErrorCode::out_of_range, "from_usec out of range");
  }
  return {std::nullopt, history_.refills_since(static_cast<std::int64_t>(from_us))};
}

Outcome<Nothing> PumpService::inject_fault(const Identity& who, std::string_view fault, bool active) {
  if (sim_ == nullptr) return Outcome<Nothing>::fail(ErrorCode::invalid_state, "no simulator: backend is not sim");
  if (!sim_->inject(fault, active)) {
    return Outcome<Nothing>::fail(ErrorCode::out_of_range,
                                  "unknown fault '" + std::string(fault) +
                                      "' (occlusion, disconnect, motor_stall, driver_fault, encoder_failure, "
                                      "low_battery, bolus_button)");
  }
  events_.append({to_usec(loop_.now().wall), "fault_injected", EventLog::who(who.uid),
                  std::string(fault) + (active ? " on" : " off")}, 4);
  return {};
}

Outcome<Nothing> PumpService::set_time_scale(const Identity& who, double scale) {
  if (sim_ == nullptr) return Outcome<Nothing>::fail(ErrorCode::invalid_state, "no simulator: backend is not sim");
  if (!std::isfinite(scale) || scale < 1.0 || scale > 20000.0) {
    char buf[96];
    (void)std::snprintf(buf, sizeof buf, "TimeScale must be within 1..20000, got %g", scale);
    return Outcome<Nothing>::fail(ErrorCode::out_of_range, buf);
  }
  sim_->set_time_scale(scale);
  char buf[64];
  (void)std::snprintf(buf, sizeof buf, "time scale %g", scale);
  events_.append({to_usec(loop_.now().wall), "time_scale", EventLog::who(who.uid), buf}, 5);
  return {};
}

double PumpService::time_scale() const { return sim_ != nullptr ? sim_->time_scale() : 1.0; }
double PumpService::true_delivered_ul() const { return sim_ != nullptr ? sim_->true_delivered_ul() : 0.0; }

// ---------------------------------------------------------------------------------------
// The daemon's own commands

void PumpService::load_stored_prescription() {
  std::string err;
  const auto text = store_.read(&err);
  if (!text) {
    log_notice("No stored prescription at %s: the pump starts without one", store_.path().c_str());
    return;
  }
  auto loaded = store_.parse(*text, loop_.now().wall, store_.path());
  if (!loaded.plan) {
    const std::string problems = config::format_all(loaded.problems);
    log_error("The stored prescription %s is not valid; the pump starts without one:\n%s", store_.path().c_str(),
              problems.c_str());
    events_.append({to_usec(loop_.now().wall), "prescription_rejected", "pump", problems}, 3);
    raise_alarm(AlarmCode::prescription_rejected);
    return;
  }
  auto p = std::make_unique<Pending>();
  p->plan = std::make_unique<TherapyPlan>(*loaded.plan);
  (void)submit(command(CommandKind::load_prescription, kPump), std::move(p));
}

void PumpService::raise_alarm(AlarmCode code) {
  Command c = command(CommandKind::raise_alarm, kPump);
  c.alarm = code;
  (void)submit(c, std::make_unique<Pending>());
}

std::string PumpService::alarm_text(AlarmCode code) const {
  const auto i = static_cast<std::size_t>(code);
  if (i < kAlarmCount && !alarm_detail_[i].empty()) return alarm_detail_[i];
  return std::string(alarm_message(code));
}

// ---------------------------------------------------------------------------------------
// Durability (SPEC S7)

void PumpService::post_grant() {
  const std::int64_t steps = durability_.take_grant();
  if (steps <= 0) return;
  auto p = std::make_unique<Pending>();
  p->grant = steps;
  Command c = command(CommandKind::grant_budget, kPump);
  c.steps = Steps{steps};
  (void)submit(c, std::move(p));
}

void PumpService::keep_durable() {
  post_grant();
  if (!durability_.checkpoint_due(status_)) return;
  if (submit(command(CommandKind::export_state, kPump), std::make_unique<Pending>())) durability_.checkpoint_sent();
}

std::optional<std::string> PumpService::journal_state(const CoreState& s, bool force_rewrite) {
  bool raise_fault = false;
  auto err = durability_.journal_state(s, status_, force_rewrite, raise_fault);
  if (raise_fault) raise_alarm(AlarmCode::storage_fault);
  if (!err) post_grant();
  return err;
}

// ---------------------------------------------------------------------------------------
// Replies

void PumpService::handle_reply(const Reply& r) {
  auto it = pending_.find(r.id);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  if (p->preview) {  // a copy of the state for a preview: nothing to journal, nothing changed
    p->preview->plan = nullptr;
    previews_.submit(store_.board(), std::move(p->state), std::move(p->plan), *p->preview, std::move(p->preview_done));
    return;
  }
  if (p->kind == CommandKind::grant_budget) durability_.grant_answered(r.ok(), p->grant);
  if (p->kind == CommandKind::export_state) durability_.checkpoint_answered();
  if (r.ok() && p->kind == CommandKind::export_therapy) return finish_export(*p);
  if (r.ok() && p->kind == CommandKind::import_therapy) return finish_import(*p);
  // SPEC S7: a programming act is durable before its reply.  Refused commands changed
  // nothing but the event log (whose records go with the next write).
  if (p->state && (r.ok() || p->kind == CommandKind::export_state)) {
    if (auto e = journal_state(*p->state)) {
      if (p->done) {
        if (p->staged) (void)store_.commit();
        return complete(p->done, ErrorCode::invalid_state,
                        std::string(to_string(p->kind)) + " was applied but could not be made durable (" + *e +
                            "): the pump is stopped with the storage_fault alarm");
      }
    }
  }
  if (p->staged) {
    if (r.ok()) {
      if (auto e = store_.commit()) log_error("Failed to store the prescription: %s", e->c_str());
    } else {
      store_.discard();
    }
  }
  if (!p->done) {
    if (!r.ok()) log_warning("The pump refused its own %s: %s", std::string(to_string(p->kind)).c_str(), r.message.c_str());
    return;
  }
  if (!r.ok()) return complete(p->done, error_code(r.refusal), std::string(r.message.view()));
  CallResult res;
  if (p->kind == CommandKind::load_prescription && p->plan) res.text = std::string(p->plan->id.view());
  res.dose = r.dose;
  res.ends = r.ends;
  p->done(res);
}

void PumpService::finish_export(Pending& p) {
  const CoreState& s = *p.state;
  if (!s.plan) return complete(p.done, ErrorCode::invalid_state, "no prescription is loaded: there is no therapy to export");
  std::string err;
  const auto text = store_.read(&err);
  if (!text || config::sha256_hex(*text) != s.plan->id.view()) {
    return complete(p.done, ErrorCode::invalid_state,
                    "the stored prescription file does not match the active prescription (" +
                        (text ? std::string("different text") : err) + "): cannot export it");
  }
  char buf[320];
  (void)std::snprintf(buf, sizeof buf,
                      "therapy exported for a replacement unit: prescription %.12s, state %s, %.3f mcg in the last "
                      "24 h, %u patient boluses in the last 24 h, %zu events",
                      s.plan->id.c_str(), std::string(to_string(s.state)).c_str(), to_mcg(status_.delivered_24h),
                      status_.patient_boluses_24h, events_.size() + 1);
  events_.append({to_usec(s.wall), "therapy_exported", EventLog::who(p.uid), buf}, 5);
  CallResult res;
  res.text = encode_therapy_document(s, *text, whole(events_));
  if (auto e = journal_state(s)) {
    return complete(p.done, ErrorCode::invalid_state, "the export could not be made durable in the journal: " + *e);
  }
  if (p.done) p.done(res);
}

void PumpService::finish_import(Pending& p) {
  const TherapyDocument& d = *p.import;
  // The old unit's log, marked as such, in time order with this unit's.
  std::vector<LoggedEvent> imported = d.events;
  for (auto& e : imported) e.detail = "[replaced unit] " + e.detail;
  events_.merge(imported);
  char buf[512];
  (void)std::snprintf(
      buf, sizeof buf,
      "therapy imported from a replaced unit (%s there, exported at wall %lld us): prescription %.12s, "
      "%zu patient bolus starts, %zu events; monotonic times mapped as if no time had passed since the "
      "export (ledger and lockouts never shorter; the wall-clock difference is logged as a wall_clock_jump); "
      "reservoir empty until the first refill",
      std::string(to_string(p.exported_state)).c_str(), static_cast<long long>(to_usec(d.state.wall)),
      d.state.plan ? d.state.plan->id.c_str() : "", d.state.patient_starts.size(), d.events.size());
  events_.append({to_usec(loop_.now().wall), "therapy_imported", EventLog::who(p.uid), buf}, 5);
  // The journal first (a rewrite, so the imported events are in the file with the state),
  // then the prescription file: after a crash in between, the journal's plan is the one
  // restored (the stored file is read only when the journal has none).
  std::optional<std::string> journal_error;
  if (p.state) journal_error = journal_state(*p.state, true);
  if (auto e = store_.commit()) log_error("Failed to store the imported prescription: %s", e->c_str());
  p.staged = false;
  if (journal_error) {
    return complete(p.done, ErrorCode::invalid_state,
                    "the therapy was imported but could not be made durable (" + *journal_error +
                        "): the pump is stopped with the storage_fault alarm");
  }
  if (p.done) p.done(CallResult{});
}

// ---------------------------------------------------------------------------------------
// Events and status

void PumpService::handle_event(const Event& e) {
  const auto d = describe(e);
  events_.append({to_usec(e.when), d.type, EventLog::who(e.uid), d.detail}, d.priority);
  if (e.type == EventType::refill) {
    history_.record_refill({to_usec(e.when), to_uL(e.volume), to_uL(e.volume2), to_uL(e.estimate), to_uL(e.pumped),
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
  // S1 with an admixture: the daily_limit alarm says which drug is at its limit.
  if (e.type == EventType::alarm_raised && e.alarm == AlarmCode::daily_limit && !e.drug.empty()) {
    alarm_detail_[static_cast<std::size_t>(AlarmCode::daily_limit)] =
        "rolling 24 h dose limit of " + std::string(e.drug.view()) + " reached: basal held back";
  }
  if (e.type == EventType::alarm_cleared && static_cast<std::size_t>(e.alarm) < kAlarmCount) {
    alarm_detail_[static_cast<std::size_t>(e.alarm)].clear();
  }
  if (listener_ == nullptr) return;
  switch (e.type) {
    case EventType::alarm_raised: listener_->alarm_raised(e.alarm, alarm_text(e.alarm)); break;
    case EventType::alarm_cleared: listener_->alarm_cleared(e.alarm); break;
    case EventType::bolus_started: listener_->bolus_started(e.source, e.mass); break;
    case EventType::bolus_finished: listener_->bolus_finished(e.source, e.mass); break;
    default: break;
  }
}

void PumpService::take_minute() {
  const std::int64_t now_us = mono_us_();
  if (now_us - minute_started_us_ < kMinuteUs) return;
  const auto d = loop_.diagnostics();
  const std::uint64_t minute_max = loop_.take_interval_max();
  if (minute_started_us_ != 0) {
    last_minute_ = d.latency - minute_base_;
    last_minute_.max_ns = minute_max;  // exact, not a bin edge
  }
  minute_base_ = d.latency;
  minute_started_us_ = now_us;
}

void PumpService::poll() {
  // Order matters: the dosing thread publishes a cycle's events, then its status, then its
  // replies.  Taking the replies first, then the events and the newest status, and only
  // then answering, means a reply is never sent before the status that follows it.
  std::vector<Reply> replies;
  loop_.drain_replies([&](const Reply& r) { replies.push_back(r); });
  bool urgent = false;
  loop_.drain_events([&](const Event& e) {
    if (e.type == EventType::state_changed || e.type == EventType::alarm_raised || e.type == EventType::alarm_cleared) {
      urgent = true;
    }
    // Anything that changed the therapy state is journaled at once (a crash must not bring
    // back, say, an infusing pump that an occlusion had stopped).
    if (e.type != EventType::budget_exhausted && e.type != EventType::command_refused) durability_.state_changed();
    handle_event(e);
  });
  if (loop_.latest_status(status_)) {
    have_status_ = true;
    history_.record_totals(to_usec(status_.wall), to_mcg(status_.total_delivered_mass), to_uL(status_.total_pumped_volume));
    record_drug_totals();
    if (listener_ != nullptr) listener_->status_changed(status_, urgent);
  }
  for (const Reply& r : replies) handle_reply(r);
  keep_durable();
  take_minute();
  (void)previews_.take();
}

}  // namespace thecal::app
