// PumpCore: construction, programming commands, events and status.  The control cycle
// (tick, integration, supervisor, step issue) is in pump_core_cycle.cpp.
#include "control/pump_core.hpp"
#include "control/solution.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "control/buzzer.hpp"
#include "control/local_time.hpp"

namespace thecal {

namespace {

MassRate rate_of(Mass m, Duration d) {
  return MassRate::canonical(to_mcg(m) / static_cast<double>(d.count()));
}

bool is_trial(const TherapyPlan& p) { return p.phase == Phase::trial && p.trial_ends.has_value(); }

}  // namespace

PumpCore::PumpCore(const BoardParams& board, Now now)
    : board_(board),
      acc_(board.volume_per_step),
      battery_(board.battery),
      last_(now.mono),
      last_tick_(now.mono),
      wall_offset_((now.wall - WallTime{}) - (now.mono - MonoTime{})),
      tokens_t_(now.mono) {
  status_.refill_accuracy_percent = std::nan("");
  refill_accuracy_ = std::nan("");
  publish(now, true);
}

// ---- events and alarms -----------------------------------------------------------------

void PumpCore::emit(const Event& e) {
  if (ev_count_ == kEventCapacity) {
    // Full: drop the oldest (the daemon drains every few ms; this only counts a stall).
    ev_head_ = (ev_head_ + 1) % kEventCapacity;
    --ev_count_;
    ++events_dropped_;
  }
  events_[(ev_head_ + ev_count_) % kEventCapacity] = e;
  ++ev_count_;
  ++emitted_;
}

Event PumpCore::make_event(EventType t, MonoTime mono, WallTime wall, std::uint32_t uid) const {
  Event e;
  e.type = t;
  e.when = wall;
  e.mono = mono;
  e.uid = uid;
  e.old_state = e.new_state = state_;
  return e;
}

void PumpCore::emit_simple(EventType t, Now now, std::uint32_t uid) { emit(make_event(t, now.mono, now.wall, uid)); }

bool PumpCore::transition(Trigger t, Now now, std::uint32_t uid) {
  const auto to = next_state(state_, t);
  if (!to) return false;
  set_state(*to, now, uid);
  return true;
}

void PumpCore::set_state(PumpState to, Now now, std::uint32_t uid) {
  if (to == state_) return;
  Event e = make_event(EventType::state_changed, now.mono, now.wall, uid);
  e.old_state = state_;
  e.new_state = to;
  state_ = to;
  stretch_.valid = false;
  emit(e);
  // S14: a stop of delivery runs from leaving `infusing` to entering it again, whatever the
  // states between (suspended, stopped, refilling, idle, priming, trial_finished, ...): the
  // tip gets nothing of the prescription meanwhile.  Its 48 h mark is a risk event when it
  // is reached (on_instant, a boundary); a stop that reached it is logged again, with its
  // whole length, when delivery resumes (the moment a clinician must weigh it).
  if (e.old_state == PumpState::infusing) {
    stopped_since_ = now.wall;
    stop_began_ = now.mono;
    long_stop_logged_ = false;
  }
  if (to == PumpState::infusing) {
    if (stop_began_ && long_stop_logged_) {
      Event r = make_event(EventType::risk_event, now.mono, now.wall, uid);
      r.index = kRiskLongStopEnded;
      r.duration = now.mono - *stop_began_;
      emit(r);
    }
    stopped_since_.reset();
    stop_began_.reset();
    long_stop_logged_ = false;
  }
}

void PumpCore::raise_alarm(AlarmCode c, Now now) {
  auto& a = alarms_[static_cast<std::size_t>(c)];
  if (a.active) return;
  a.active = true;
  a.acknowledged = false;
  a.raised = now.wall;
  a.silenced_until = MonoTime{};
  Event e = make_event(EventType::alarm_raised, now.mono, now.wall, kSystemUid);
  e.alarm = c;
  if (c == AlarmCode::daily_limit) e.drug = limit_drug_;
  emit(e);
}

void PumpCore::clear_alarm(AlarmCode c, Now now) {
  auto& a = alarms_[static_cast<std::size_t>(c)];
  if (!a.active) return;
  const bool cause = a.cause_present;
  a = AlarmStatus{};
  a.cause_present = cause;
  Event e = make_event(EventType::alarm_cleared, now.mono, now.wall, kSystemUid);
  e.alarm = c;
  emit(e);
}

void PumpCore::set_cause(AlarmCode c, bool present, bool may_raise, Now now) {
  auto& a = alarms_[static_cast<std::size_t>(c)];
  a.cause_present = present;
  if (present && may_raise) raise_alarm(c, now);
  if (!a.active || present) return;
  switch (latch_of(c)) {
    case AlarmLatch::conditional: clear_alarm(c, now); break;
    case AlarmLatch::latched:
      if (a.acknowledged) clear_alarm(c, now);
      break;
    case AlarmLatch::until_ack: break;
  }
}

bool PumpCore::any_high_alarm() const {
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (alarms_[i].active && priority_of(static_cast<AlarmCode>(i)) == AlarmPriority::high) return true;
  }
  return false;
}

// ---- delivery helpers ------------------------------------------------------------------

MassRate PumpCore::basal_rate_at(WallTime w) const {
  if (!plan_) return MassRate{};
  if (plan_->basal_mode == BasalMode::continuous || plan_->flex_steps.empty()) return plan_->continuous_rate;
  const Duration tod = local_time(*plan_, w).time_of_day;
  MassRate r = plan_->flex_steps.front().rate;
  for (const auto& s : plan_->flex_steps) {
    if (s.start <= tod) r = s.rate;
    else break;
  }
  return r;
}

MassRate PumpCore::basal_rate_guarded(MonoTime t, Duration offset) const {
  const MassRate r = basal_rate_at(WallTime{} + (t - MonoTime{}) + offset);
  if (!jump_guard_until_ || t >= *jump_guard_until_) return r;
  const MassRate before = basal_rate_at(WallTime{} + (t - MonoTime{}) + pre_jump_offset_);
  return std::min(r, before);
}

MassRate PumpCore::bolus_rate_total() const {
  MassRate r{};
  for (const auto& b : boluses_) {
    if (b.active) r += b.rate;
  }
  return r;
}

Mass PumpCore::bolus_mass_remaining() const {
  Mass m = mcg(0);
  for (const auto& b : boluses_) {
    if (b.active && b.programmed < b.dose) m += b.dose - b.programmed;
  }
  return m;
}

Volume PumpCore::pending_volume() const {
  const double steps = static_cast<double>(due_steps_) + std::max(0.0, acc_.remainder_steps());
  return step_volume() * steps;
}

Mass PumpCore::planned_daily_mass() const {
  if (!plan_) return mcg(0);
  const TherapyPlan& p = *plan_;
  Mass m = mcg(0);
  if (p.basal_mode == BasalMode::continuous || p.flex_steps.empty()) {
    m += p.continuous_rate * days(1);
  } else {
    for (std::size_t i = 0; i < p.flex_steps.size(); ++i) {
      const Duration end = i + 1 < p.flex_steps.size() ? p.flex_steps[i + 1].start : days(1);
      m += p.flex_steps[i].rate * (end - p.flex_steps[i].start);
    }
  }
  for (const auto& d : p.periodic) m += d.dose;
  if (p.patient_bolus) m += p.patient_bolus->dose * static_cast<double>(p.patient_bolus->max_per_day);
  return m;
}

void PumpCore::finish_bolus(BolusSource s, Now now, std::uint32_t uid, bool cancelled) {
  auto& b = boluses_[static_cast<std::size_t>(s)];
  if (!b.active) return;
  if (cancelled) {
    Event c = make_event(EventType::bolus_cancelled, now.mono, now.wall, uid);
    c.source = s;
    c.mass = b.dose;
    emit(c);
  }
  Event e = make_event(EventType::bolus_finished, now.mono, now.wall, cancelled ? uid : b.uid);
  e.source = s;
  const Mass delivered = b.programmed - b.held;
  e.mass = delivered > mcg(0) ? delivered : mcg(0);
  e.duration = now.mono - b.start;
  emit(e);
  b = ActiveBolus{};
  stretch_.valid = false;
}

void PumpCore::stop_delivery(Now now, std::uint32_t uid) {
  // What was programmed but not yet stepped is dropped, never owed (S1, S6).
  const double frac = std::max(0.0, acc_.remainder_steps());
  dropped_volume_ += step_volume() * (static_cast<double>(due_steps_) + frac);
  steps_dropped_ += static_cast<std::uint64_t>(std::max<std::int64_t>(0, due_steps_));
  due_steps_ = 0;
  acc_.reset();
  stretch_.valid = false;
  prime_prog_left_ = uL(0);
  prime_steps_left_ = 0;
  for (std::size_t i = 0; i < boluses_.size(); ++i) finish_bolus(static_cast<BolusSource>(i), now, uid, true);
}

void PumpCore::prune_patient_history(MonoTime now) {
  while (!patient_starts_.empty() && patient_starts_.front() <= now - days(1)) patient_starts_.erase(patient_starts_.begin());
}

void PumpCore::reset_trial_guard(Now now) {
  trial_end_logged_ = false;
  if (plan_ && is_trial(*plan_)) {
    trial_end_mono_ = now.mono + (*plan_->trial_ends - now.wall);
  } else {
    trial_end_mono_.reset();
  }
}

void PumpCore::rebase_periodic(WallTime w) {
  // Each dose is marked as handled for every local day up to the one whose time has
  // already passed, so loading a plan (or a clock jump) never fires a dose "late".
  if (!plan_) return;
  const LocalTime lt = local_time(*plan_, w);
  for (std::size_t i = 0; i < plan_->periodic.size(); ++i) {
    const std::int64_t handled = lt.time_of_day >= plan_->periodic[i].at ? lt.day : lt.day - 1;
    periodic_last_day_[i] = handled;
  }
}

// ---- commands --------------------------------------------------------------------------

Reply PumpCore::refuse(const Command& cmd, Now now, Refusal why, std::string_view message) {
  Reply r;
  r.id = cmd.id;
  r.refusal = why;
  r.message.assign(message);
  Event e = make_event(EventType::command_refused, now.mono, now.wall, cmd.caller.uid);
  e.command = cmd.kind;
  e.refusal = why;
  e.alarm = cmd.alarm;
  emit(e);
  return r;
}

Reply PumpCore::refuse_state(const Command& cmd, Now now, Trigger t) {
  FixedString<160> m;
  m.append(to_string(t)).append(" is not allowed while the pump is ").append(to_string(state_));
  return refuse(cmd, now, Refusal::invalid_state, m.view());
}

std::optional<std::string_view> PumpCore::plan_problem(const TherapyPlan& p) {
  auto bad = [](auto q) { return !q.is_finite() || q < decltype(q){}; };
  if (!p.concentration.is_finite() || p.concentration <= Concentration{}) return "concentration must be positive";
  if (!p.reservoir_capacity.is_finite() || p.reservoir_capacity <= uL(0)) return "reservoir capacity must be positive";
  if (bad(p.low_alarm) || p.low_alarm >= p.reservoir_capacity) return "low alarm must be below the reservoir capacity";
  if (bad(p.catheter_volume)) return "catheter volume must not be negative";
  if (!p.max_daily_dose.is_finite() || p.max_daily_dose <= mcg(0)) return "max_daily_dose must be positive";
  if (p.phase == Phase::trial && !p.trial_ends) return "a trial needs trial.ends";
  if (p.basal_mode == BasalMode::continuous) {
    if (bad(p.continuous_rate)) return "basal rate must not be negative";
  } else {
    if (p.flex_steps.empty() || p.flex_steps.front().start != Duration{0}) return "flex steps must start at 00:00";
    for (std::size_t i = 0; i < p.flex_steps.size(); ++i) {
      if (bad(p.flex_steps[i].rate)) return "flex rates must not be negative";
      if (p.flex_steps[i].start >= days(1)) return "flex step starts must be within the day";
      if (i > 0 && p.flex_steps[i].start <= p.flex_steps[i - 1].start) return "flex steps must be in ascending order";
    }
  }
  for (const auto& d : p.periodic) {
    if (d.at < Duration{0} || d.at >= days(1)) return "periodic dose times must be within the day";
    if (!d.dose.is_finite() || d.dose <= mcg(0) || d.duration <= Duration{0}) return "periodic doses need a positive dose and duration";
    if (d.duration >= kPeriodicMinSpacing) return "a periodic dose must last less than 22 h";
  }
  if (p.patient_bolus) {
    const auto& b = *p.patient_bolus;
    if (!b.dose.is_finite() || b.dose <= mcg(0) || b.duration <= Duration{0}) return "patient bolus needs a positive dose and duration";
    if (b.lockout < Duration{0}) return "patient bolus lockout must not be negative";
    if (b.max_per_day > kMaxPatientBolusesPerDay) return "patient bolus max_per_day is above 64";
  }
  for (std::size_t i = 1; i < p.utc_offsets.size(); ++i) {
    if (p.utc_offsets[i].from <= p.utc_offsets[i - 1].from) return "UTC offset table is not sorted";
  }
  for (std::size_t i = 0; i < p.admixture.size(); ++i) {
    const auto& x = p.admixture[i];
    if (x.name.empty() || x.name == p.drug) return "an admixture drug needs a name other than the prescription's drug";
    if (!x.concentration.is_finite() || x.concentration <= Concentration{}) return "admixture concentrations must be positive";
    if (!x.max_daily_dose.is_finite() || x.max_daily_dose <= mcg(0)) return "admixture max_daily_dose must be positive";
    for (std::size_t j = 0; j < i; ++j) {
      if (p.admixture[j].name == x.name) return "an admixture drug appears twice";
    }
  }
  return std::nullopt;
}

// ---- admixture (SPEC 2, S1) --------------------------------------------------------------

bool same_solution(const TherapyPlan& a, const TherapyPlan& b) {
  if (!(a.drug == b.drug) || a.concentration != b.concentration || a.admixture.size() != b.admixture.size()) {
    return false;
  }
  return std::all_of(a.admixture.begin(), a.admixture.end(), [&](const AdmixtureDrug& x) {
    return std::any_of(b.admixture.begin(), b.admixture.end(), [&](const AdmixtureDrug& y) {
      return x.name == y.name && x.concentration == y.concentration;
    });
  });
}

std::optional<std::string_view> PumpCore::bind_slots(const TherapyPlan& p, SlotMap& out, Now now) const {
  std::array<bool, kDrugSlots> taken{};
  out = SlotMap{};
  auto idle = [&](std::size_t k) {
    return reservoir_admix_[k] <= Concentration{} && !catheter_.holds(k) && slots_[k].ledger.sum_pg(now.mono) == 0;
  };
  // A drug does not change between primary and admixture while it is still counted: its
  // two ledgers would each see only part of its rolling 24 h.
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    if (!slots_[k].name.empty() && slots_[k].name == p.drug && !idle(k)) {
      return "the new primary drug is still counted as an admixture drug (in the line or the last 24 h)";
    }
  }
  if (plan_ && !(plan_->drug == p.drug)) {
    const bool counted = ledger_.sum_pg(now.mono) > 0 || !catheter_.segments().empty() || reservoir_ > uL(0);
    for (const auto& x : p.admixture) {
      if (x.name == plan_->drug && counted) {
        return "the old primary drug is still counted as the primary (in the line or the last 24 h): it cannot join the "
               "admixture yet";
      }
    }
  }
  for (std::size_t i = 0; i < p.admixture.size(); ++i) {
    std::size_t found = kDrugSlots;
    for (std::size_t k = 0; k < kDrugSlots && found == kDrugSlots; ++k) {
      if (!taken[k] && !slots_[k].name.empty() && slots_[k].name == p.admixture[i].name) found = k;
    }
    // A slot is free once its drug is in none of the reservoir, the line and the rolling 24 h.
    for (std::size_t k = 0; k < kDrugSlots && found == kDrugSlots; ++k) {
      if (taken[k]) continue;
      const bool in_p = std::any_of(p.admixture.begin(), p.admixture.end(),
                                    [&](const AdmixtureDrug& x) { return x.name == slots_[k].name; });
      if (slots_[k].name.empty() || (!in_p && idle(k))) found = k;
    }
    if (found == kDrugSlots) return "too many drugs still counted in the line or the last 24 h";
    taken[found] = true;
    out[i] = static_cast<std::uint8_t>(found);
  }
  return std::nullopt;
}

AdmixConc PumpCore::take_slots(const TherapyPlan& p, const SlotMap& map) {
  AdmixConc sol{};
  for (std::size_t i = 0; i < p.admixture.size(); ++i) {
    DrugSlot& d = slots_[map[i]];
    if (!(d.name == p.admixture[i].name)) {
      d.name = p.admixture[i].name;
      d.ledger = RollingLedger{};
      d.total = Mass{};
    }
    d.limit = p.admixture[i].max_daily_dose;
    sol[map[i]] = p.admixture[i].concentration;
  }
  plan_slots_ = map;
  return sol;
}

bool PumpCore::admix_fits(MonoTime now, const AdmixMass& m, std::size_t* over) const {
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    const std::int64_t add = RollingLedger::to_pg_ceil(m[k]);
    if (add == 0 || slots_[k].name.empty()) continue;
    if (slots_[k].ledger.sum_pg(now) + add > RollingLedger::to_pg_floor(slots_[k].limit)) {
      if (over != nullptr) *over = k;
      return false;
    }
  }
  return true;
}

std::optional<std::pair<Refusal, std::string_view>> PumpCore::delivery_guard(Now now) const {
  if (!plan_) return std::pair{Refusal::invalid_state, std::string_view{"no prescription loaded"}};
  if (!catheter_.full(step_volume())) return std::pair{Refusal::invalid_state, std::string_view{"the catheter is not primed"}};
  if (reservoir_ < step_volume()) return std::pair{Refusal::reservoir_low, std::string_view{"the reservoir is empty"}};
  if (any_high_alarm()) {
    return std::pair{Refusal::invalid_state,
                     std::string_view{"a high alarm is active: acknowledge it once its cause is gone"}};
  }
  if (plan_ && is_trial(*plan_) && (now.wall >= *plan_->trial_ends || (trial_end_mono_ && now.mono >= *trial_end_mono_))) {
    return std::pair{Refusal::invalid_state, std::string_view{"the trial has ended"}};
  }
  return std::nullopt;
}

Reply PumpCore::apply(const Command& cmd, Now now) {
  if (now.mono < last_) now.mono = last_;
  detect_wall_jump(now);
  integrate(now);  // the settings before this command hold up to `now`
  stretch_.valid = false;  // a command may change any setting: the next stretch starts anew
  Reply r;
  switch (cmd.kind) {
    case CommandKind::load_prescription: r = do_load(cmd, now); break;
    case CommandKind::prime: r = do_prime(cmd, now); break;
    case CommandKind::start: r = do_start_resume(cmd, now, Trigger::start); break;
    case CommandKind::resume: r = do_start_resume(cmd, now, Trigger::resume); break;
    case CommandKind::suspend: r = do_suspend(cmd, now); break;
    case CommandKind::patient_bolus: r = do_bolus(cmd, now, BolusSource::patient); break;
    case CommandKind::clinician_bolus: r = do_bolus(cmd, now, BolusSource::clinician); break;
    case CommandKind::cancel_bolus: r = do_cancel_bolus(cmd, now); break;
    case CommandKind::refill: r = do_refill(cmd, now); break;
    case CommandKind::acknowledge_alarm: r = do_acknowledge(cmd, now); break;
    case CommandKind::replace_battery: r = do_replace_battery(cmd, now); break;
    case CommandKind::raise_alarm: r = do_raise_alarm(cmd, now); break;
    case CommandKind::grant_budget:
      if (cmd.steps.count <= 0) {
        r = refuse(cmd, now, Refusal::out_of_range, "budget must be positive");
        break;
      }
      budget_ += cmd.steps;
      budget_exhausted_logged_ = false;
      r.id = cmd.id;
      break;
    case CommandKind::export_state: r.id = cmd.id; break;
    case CommandKind::export_therapy: r = do_export(cmd, now); break;
    case CommandKind::import_therapy: r = do_import(cmd, now); break;
    case CommandKind::begin_refill: r = do_begin_refill(cmd, now); break;
    case CommandKind::cancel_refill: r = do_cancel_refill(cmd, now); break;
    case CommandKind::revise_catheter: r = do_revise_catheter(cmd, now); break;
    case CommandKind::test_alarm: r = do_test_alarm(cmd, now); break;
  }
  publish(now, true);
  if (cmd.state_out != nullptr) export_state(*cmd.state_out, now);
  return r;
}

Reply PumpCore::do_load(const Command& cmd, Now now) {
  if (cmd.plan == nullptr) return refuse(cmd, now, Refusal::invalid_prescription, "no prescription");
  const TherapyPlan& p = *cmd.plan;
  if (auto problem = plan_problem(p)) return refuse(cmd, now, Refusal::invalid_prescription, *problem);
  if (is_trial(p) && *p.trial_ends <= now.wall) return refuse(cmd, now, Refusal::invalid_prescription, "trial.ends is not in the future");
  if (!next_state(state_, Trigger::load_prescription)) return refuse_state(cmd, now, Trigger::load_prescription);
  if (plan_ && reservoir_ > uL(0) && !same_solution(*plan_, p)) {
    return refuse(cmd, now, Refusal::invalid_state,
                  "the reservoir holds the current drug and concentration: a change needs Refill");
  }
  if (auto m = catheter_mismatch(p)) return refuse(cmd, now, Refusal::invalid_prescription, m->view());
  SlotMap map{};
  if (auto why = bind_slots(p, map, now)) return refuse(cmd, now, Refusal::invalid_state, *why);
  if (state_ == PumpState::infusing && plan_ && plan_->catheter_volume != p.catheter_volume) {
    return refuse(cmd, now, Refusal::invalid_state, "a change of catheter volume needs the pump suspended and primed");
  }
  const bool first = !plan_.has_value();
  plan_ = p;
  catheter_.set_capacity(plan_->catheter_volume);
  const AdmixConc sol = take_slots(*plan_, map);
  if (first || reservoir_ <= uL(0)) {
    reservoir_conc_ = plan_->concentration;
    reservoir_admix_ = sol;
  }
  reset_trial_guard(now);
  rebase_periodic(now.wall);
  (void)transition(Trigger::load_prescription, now, cmd.caller.uid);
  emit_simple(EventType::prescription_loaded, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_prime(const Command& cmd, Now now) {
  if (!next_state(state_, Trigger::prime)) return refuse_state(cmd, now, Trigger::prime);
  if (!plan_) return refuse(cmd, now, Refusal::invalid_state, "no prescription loaded");
  if (!cmd.volume.is_finite() || cmd.volume <= uL(0)) return refuse(cmd, now, Refusal::out_of_range, "priming volume must be positive");
  if (any_high_alarm()) return refuse(cmd, now, Refusal::invalid_state, "a high alarm is active");
  const Volume vps = step_volume();
  const Volume room = catheter_.capacity() - catheter_.contents();
  if (room < vps) {
    return refuse(cmd, now, Refusal::invalid_state,
                  "the catheter is already primed (after a catheter revision, ReviseCatheter empties it)");
  }
  const auto steps = static_cast<std::int64_t>(std::ceil(cmd.volume / vps - 1e-9));
  const Volume v = vps * static_cast<double>(steps);
  if (v > room + vps) {
    FixedString<160> m;
    m.append("priming volume exceeds the empty catheter volume (")
        .append(static_cast<std::int64_t>(std::floor(to_uL(room))))
        .append(" uL): the excess would reach the patient");
    return refuse(cmd, now, Refusal::out_of_range, m.view());
  }
  if (v > reservoir_) return refuse(cmd, now, Refusal::reservoir_low, "the reservoir holds less than the priming volume");
  stop_delivery(now, cmd.caller.uid);
  prime_prog_left_ = v;
  prime_steps_left_ = steps;
  suspend_until_.reset();
  (void)transition(Trigger::prime, now, cmd.caller.uid);
  Event e = make_event(EventType::prime_started, now.mono, now.wall, cmd.caller.uid);
  e.volume = v;
  emit(e);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_start_resume(const Command& cmd, Now now, Trigger trig) {
  if (!next_state(state_, trig)) return refuse_state(cmd, now, trig);
  if (auto g = delivery_guard(now)) return refuse(cmd, now, g->first, g->second);
  suspend_until_.reset();
  (void)transition(trig, now, cmd.caller.uid);
  emit_simple(trig == Trigger::start ? EventType::started : EventType::resumed, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_suspend(const Command& cmd, Now now) {
  if (cmd.duration < Duration{0}) return refuse(cmd, now, Refusal::out_of_range, "suspend duration must not be negative");
  if (!next_state(state_, Trigger::suspend)) return refuse_state(cmd, now, Trigger::suspend);
  stop_delivery(now, cmd.caller.uid);
  if (cmd.duration > Duration{0}) suspend_until_ = now.mono + cmd.duration;
  else suspend_until_.reset();
  (void)transition(Trigger::suspend, now, cmd.caller.uid);
  Event e = make_event(EventType::suspended, now.mono, now.wall, cmd.caller.uid);
  e.duration = cmd.duration;
  emit(e);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_bolus(const Command& cmd, Now now, BolusSource src) {
  const bool patient = src == BolusSource::patient;
  if (patient && (!plan_ || !plan_->patient_bolus)) {
    return refuse(cmd, now, Refusal::invalid_state, "the prescription has no patient bolus");
  }
  if (!next_state(state_, Trigger::bolus)) return refuse_state(cmd, now, Trigger::bolus);
  Mass dose;
  Duration duration{0};
  if (patient) {
    dose = plan_->patient_bolus->dose;
    duration = plan_->patient_bolus->duration;
  } else {
    dose = cmd.dose;
    duration = cmd.duration;
    if (!dose.is_finite() || dose <= mcg(0)) return refuse(cmd, now, Refusal::out_of_range, "bolus dose must be positive");
    if (duration <= Duration{0} || duration > days(1)) {
      return refuse(cmd, now, Refusal::out_of_range, "bolus duration must be positive and at most 24 h");
    }
    if (dose > plan_->max_daily_dose) return refuse(cmd, now, Refusal::out_of_range, "bolus dose is above the daily limit");
  }
  const auto& slot = boluses_[static_cast<std::size_t>(src)];
  if (patient) {
    const auto& rule = *plan_->patient_bolus;
    prune_patient_history(now.mono);
    if (!patient_starts_.empty() && now.mono - patient_starts_.back() < rule.lockout) {
      FixedString<160> m;
      const Duration left = patient_starts_.back() + rule.lockout - now.mono;
      m.append("lockout active: next patient bolus in ").append((to_usec(left) + 999'999) / 1'000'000).append(" s");
      return refuse(cmd, now, Refusal::lockout_active, m.view());
    }
    if (slot.active) return refuse(cmd, now, Refusal::invalid_state, "a patient bolus is still running");
    if (patient_starts_.size() >= rule.max_per_day) {
      FixedString<160> m;
      m.append("already ").append(static_cast<std::int64_t>(patient_starts_.size())).append(" patient boluses in the last 24 h");
      return refuse(cmd, now, Refusal::bolus_limit_reached, m.view());
    }
  } else if (slot.active) {
    return refuse(cmd, now, Refusal::invalid_state, "a clinician bolus is still running");
  }
  // S1: what is counted, what the running boluses still owe, this dose, and the basal
  // over its duration must all fit in the rolling 24 h.
  const Mass basal_during = basal_rate_at(now.wall) * duration;
  const std::int64_t need_pg = ledger_.sum_pg(now.mono) + RollingLedger::to_pg_ceil(bolus_mass_remaining() + dose + basal_during);
  if (need_pg > RollingLedger::to_pg_floor(plan_->max_daily_dose)) {
    return refuse(cmd, now, Refusal::daily_limit_reached, "the bolus would exceed the rolling 24 h limit");
  }
  const Volume vol = catheter_.volume_for_mass(bolus_mass_remaining() + dose + basal_during, reservoir_conc_, pending_volume());
  if (vol.is_finite() && tracks_admix()) {
    // Each admixture drug in what that volume (after what is pending) brings to the tip.
    AdmixMass am{};
    (void)catheter_.mass_out_if_pushed(pending_volume() + vol, reservoir_conc_, reservoir_admix_, &am);
    std::size_t over = 0;
    if (!admix_fits(now.mono, am, &over)) {
      FixedString<160> m;
      m.append("the bolus would exceed the rolling 24 h limit of ").append(slots_[over].name.view());
      return refuse(cmd, now, Refusal::daily_limit_reached, m.view());
    }
  }
  if (!vol.is_finite() || vol > reservoir_) {
    return refuse(cmd, now, Refusal::reservoir_low, "the reservoir cannot hold the bolus");
  }
  const MassRate rate = rate_of(dose, duration);
  const Concentration cmin = catheter_.min_concentration(reservoir_conc_);
  const VolumeRate max_rate = VolumeRate::canonical(to_uL(step_volume()) * board_.max_steps_per_second / 1e6);
  if (cmin <= Concentration{} || (basal_rate_at(now.wall) + bolus_rate_total() + rate) / cmin > max_rate * 0.9) {
    return refuse(cmd, now, Refusal::out_of_range, "the bolus is faster than the motor can deliver");
  }
  auto& b = boluses_[static_cast<std::size_t>(src)];
  b = ActiveBolus{};
  b.active = true;
  b.dose = dose;
  b.rate = rate;
  b.start = now.mono;
  b.end = now.mono + duration;
  b.uid = cmd.caller.uid;
  if (patient) {
    if (patient_starts_.size() == patient_starts_.capacity()) patient_starts_.erase(patient_starts_.begin());
    patient_starts_.push_back(now.mono);
  }
  (void)transition(Trigger::bolus, now, cmd.caller.uid);
  Event e = make_event(EventType::bolus_started, now.mono, now.wall, cmd.caller.uid);
  e.source = src;
  e.mass = dose;
  e.duration = duration;
  emit(e);
  Reply r;
  r.id = cmd.id;
  r.dose = dose;
  r.ends = to_wall(b.end, now);
  return r;
}

Reply PumpCore::do_cancel_bolus(const Command& cmd, Now now) {
  bool any = false;
  for (const auto& b : boluses_) any = any || b.active;
  if (!any) return refuse(cmd, now, Refusal::invalid_state, "no bolus is running");
  for (std::size_t i = 0; i < boluses_.size(); ++i) finish_bolus(static_cast<BolusSource>(i), now, cmd.caller.uid, true);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_refill(const Command& cmd, Now now) {
  if (!next_state(state_, Trigger::refill)) return refuse_state(cmd, now, Trigger::refill);
  const TherapyPlan* next = cmd.plan != nullptr ? cmd.plan : (plan_ ? &*plan_ : nullptr);
  if (next == nullptr) return refuse(cmd, now, Refusal::invalid_state, "no prescription loaded");
  if (cmd.plan != nullptr) {
    if (auto problem = plan_problem(*cmd.plan)) return refuse(cmd, now, Refusal::invalid_prescription, *problem);
    if (is_trial(*cmd.plan) && *cmd.plan->trial_ends <= now.wall) {
      return refuse(cmd, now, Refusal::invalid_prescription, "trial.ends is not in the future");
    }
    if (auto m = catheter_mismatch(*cmd.plan)) return refuse(cmd, now, Refusal::invalid_prescription, m->view());
  }
  if (!cmd.volume.is_finite() || !cmd.withdrawn.is_finite() || cmd.volume <= uL(0) || cmd.withdrawn < uL(0) ||
      cmd.withdrawn > (plan_ ? plan_->reservoir_capacity : next->reservoir_capacity) * 1.1) {
    return refuse(cmd, now, Refusal::out_of_range, "refill volumes must be positive numbers of uL (withdrawn may be 0)");
  }
  if (cmd.volume > next->reservoir_capacity) {
    // Overfilling is a known cause of over-infusion (SPEC 4).
    FixedString<160> m;
    m.append("refill volume ").append(static_cast<std::int64_t>(std::ceil(to_uL(cmd.volume))))
        .append(" uL is beyond the reservoir capacity of ")
        .append(static_cast<std::int64_t>(std::floor(to_uL(next->reservoir_capacity)))).append(" uL");
    return refuse(cmd, now, Refusal::out_of_range, m.view());
  }
  SlotMap map{};
  if (auto why = bind_slots(*next, map, now)) return refuse(cmd, now, Refusal::invalid_state, *why);
  const bool drug_change = plan_ && cmd.plan != nullptr && !(plan_->drug == cmd.plan->drug);
  const bool in_session = state_ == PumpState::refilling;
  // Outside a session, a Refill is a session of one call: what BeginRefill stops stops.
  if (state_ == PumpState::infusing) stop_delivery(now, cmd.caller.uid);
  // The refill check (SPEC 2): the measured residual against the estimate.
  double accuracy = std::nan("");
  const Volume estimate = reservoir_;  // the pump's estimate of the residual
  const Volume delivered = pumped_since_refill_;
  Volume tolerance = uL(0);
  bool flagged = false;
  if (has_filled_) {
    tolerance = std::max(mL(1), delivered * 0.15);
    const Volume diff = cmd.withdrawn > estimate ? cmd.withdrawn - estimate : estimate - cmd.withdrawn;
    flagged = diff > tolerance;
    if (delivered > uL(0)) accuracy = 100.0 * ((last_fill_ - cmd.withdrawn) / delivered);
    if (std::isfinite(accuracy)) refill_accuracy_ = accuracy;
  }
  if (cmd.plan != nullptr) {
    plan_ = *cmd.plan;
    catheter_.set_capacity(plan_->catheter_volume);
    reset_trial_guard(now);
    rebase_periodic(now.wall);
  }
  reservoir_ = cmd.volume;
  reservoir_conc_ = plan_->concentration;
  reservoir_admix_ = take_slots(*plan_, map);
  last_fill_ = cmd.volume;
  last_fill_wall_ = now.wall;
  pumped_since_refill_ = uL(0);
  has_filled_ = true;
  if (drug_change && suspend_until_) {
    suspend_until_.reset();  // a change of drug stays suspended until Resume
    emit_simple(EventType::suspend_extended, now, cmd.caller.uid);
  }
  if (in_session) {
    end_refill_session(now, cmd.caller.uid, drug_change);
  } else if (state_ == PumpState::infusing && drug_change) {
    set_state(PumpState::suspended, now, cmd.caller.uid);  // a change of drug: until Resume
  } else {
    (void)transition(Trigger::refill, now, cmd.caller.uid);
  }
  Event e = make_event(EventType::refill, now.mono, now.wall, cmd.caller.uid);
  e.volume = cmd.volume;
  e.volume2 = cmd.withdrawn;
  e.percent = accuracy;
  e.mass = reservoir_conc_ * cmd.volume;
  e.estimate = estimate;
  e.pumped = delivered;
  e.tolerance = tolerance;
  e.flagged = flagged;
  emit(e);
  // After the refill record, so that the log reads: the figures, then the alarm.
  if (flagged) raise_alarm(AlarmCode::refill_discrepancy, now);
  if (cmd.plan != nullptr) emit_simple(EventType::prescription_loaded, now, cmd.caller.uid);
  update_timed_alarms(now);  // a new fill: solution_expired clears (after the refill record)
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_acknowledge(const Command& cmd, Now now) {
  if (static_cast<std::size_t>(cmd.alarm) >= kAlarmCount) return refuse(cmd, now, Refusal::out_of_range, "no such alarm");
  auto& a = alarms_[static_cast<std::size_t>(cmd.alarm)];
  if (!a.active) return refuse(cmd, now, Refusal::out_of_range, "that alarm is not active");
  if (priority_of(cmd.alarm) == AlarmPriority::high && !cmd.caller.clinician) {
    return refuse(cmd, now, Refusal::access_denied, "only a clinician may acknowledge a high alarm");
  }
  a.acknowledged = true;
  a.silenced_until = now.mono + kSilence;  // never longer: the sound comes back
  if (cmd.alarm == AlarmCode::motor_stall) {
    steps_since_pulse_ = 0;  // the clinician tries again: the encoder must answer anew
    a.cause_present = false;
  }
  Event e = make_event(EventType::alarm_acknowledged, now.mono, now.wall, cmd.caller.uid);
  e.alarm = cmd.alarm;
  emit(e);
  const AlarmLatch l = latch_of(cmd.alarm);
  if (l == AlarmLatch::until_ack || (l == AlarmLatch::latched && !a.cause_present)) clear_alarm(cmd.alarm, now);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_replace_battery(const Command& cmd, Now now) {
  if (!next_state(state_, Trigger::replace_battery)) return refuse_state(cmd, now, Trigger::replace_battery);
  battery_.replace();
  alarms_[static_cast<std::size_t>(AlarmCode::battery_eri)].cause_present = false;
  alarms_[static_cast<std::size_t>(AlarmCode::battery_eos)].cause_present = false;
  clear_alarm(AlarmCode::battery_eri, now);
  clear_alarm(AlarmCode::battery_eos, now);
  suspend_until_.reset();
  emit_simple(EventType::battery_replaced, now, cmd.caller.uid);
  (void)transition(Trigger::replace_battery, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_raise_alarm(const Command& cmd, Now now) {
  switch (cmd.alarm) {
    case AlarmCode::restart:
    case AlarmCode::prescription_rejected:
    case AlarmCode::state_lost:
    case AlarmCode::storage_fault: break;
    default: return refuse(cmd, now, Refusal::out_of_range, "the core raises that alarm by itself");
  }
  raise_alarm(cmd.alarm, now);
  if (priority_of(cmd.alarm) == AlarmPriority::high && next_state(state_, Trigger::high_alarm)) {
    stop_delivery(now, kSystemUid);
    (void)transition(Trigger::high_alarm, now, kSystemUid);
  }
  Reply r;
  r.id = cmd.id;
  return r;
}

// ---- issue 17: refill session, catheter revision, alarm test ----------------------------

Reply PumpCore::do_begin_refill(const Command& cmd, Now now) {
  if (!next_state(state_, Trigger::begin_refill)) return refuse_state(cmd, now, Trigger::begin_refill);
  stop_delivery(now, cmd.caller.uid);  // the motor stops; an active bolus is cancelled
  refill_before_ = state_;
  refill_began_ = now.mono;
  Event e = make_event(EventType::refill_begun, now.mono, now.wall, cmd.caller.uid);
  emit(e);
  (void)transition(Trigger::begin_refill, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_cancel_refill(const Command& cmd, Now now) {
  if (!next_state(state_, Trigger::cancel_refill)) return refuse_state(cmd, now, Trigger::cancel_refill);
  end_refill_session(now, cmd.caller.uid, false);
  Event e = make_event(EventType::refill_cancelled, now.mono, now.wall, cmd.caller.uid);
  emit(e);
  Reply r;
  r.id = cmd.id;
  return r;
}

void PumpCore::end_refill_session(Now now, std::uint32_t uid, bool drug_change) {
  PumpState to = refill_before_;
  if (drug_change && to == PumpState::infusing) to = PumpState::suspended;
  // A high alarm raised during the session (catheter_port_injection, ...) stops what it
  // would have stopped: delivery resumes only by Resume (S4).
  if (any_high_alarm()) {
    if (auto h = next_state(to, Trigger::high_alarm)) to = *h;
  }
  set_state(to, now, uid);
  update_timed_alarms(now);
}

std::optional<FixedString<160>> PumpCore::catheter_mismatch(const TherapyPlan& p) const {
  if (!catheter_revised_) return std::nullopt;
  const double have = to_uL(catheter_.capacity());
  if (std::abs(to_uL(p.catheter_volume) - have) <= 1e-6) return std::nullopt;
  FixedString<160> m;
  m.append("catheter.volume (").append(static_cast<std::int64_t>(std::llround(to_uL(p.catheter_volume))))
      .append(" uL) is not the revised catheter's (").append(static_cast<std::int64_t>(std::llround(have)))
      .append(" uL, ReviseCatheter)");
  return m;
}

std::optional<WallTime> PumpCore::solution_expires() const {
  if (!plan_ || !has_filled_ || plan_->max_in_reservoir <= Duration{0}) return std::nullopt;
  return last_fill_wall_ + plan_->max_in_reservoir;
}

void PumpCore::update_timed_alarms(Now now) {
  set_cause(AlarmCode::refill_unfinished,
            state_ == PumpState::refilling && now.mono - refill_began_ >= kRefillUnfinished, true, now);
  const auto exp = solution_expires();
  set_cause(AlarmCode::solution_expired, exp && now.wall >= *exp, true, now);
}

Reply PumpCore::do_revise_catheter(const Command& cmd, Now now) {
  if (!cmd.volume.is_finite() || cmd.volume <= uL(0) || cmd.volume > uL(kMaxCatheterUl)) {
    return refuse(cmd, now, Refusal::out_of_range, "catheter volume must be within 0 < volume <= 2000 uL");
  }
  if (!next_state(state_, Trigger::revise_catheter)) return refuse_state(cmd, now, Trigger::revise_catheter);
  const Volume old = catheter_.capacity();
  stop_delivery(now, cmd.caller.uid);
  catheter_.set_capacity(cmd.volume);
  catheter_.clear();  // the new catheter holds no drug until primed (S3)
  catheter_revised_ = true;
  suspend_until_.reset();
  Event e = make_event(EventType::catheter_revised, now.mono, now.wall, cmd.caller.uid);
  e.volume = cmd.volume;
  e.volume2 = old;
  emit(e);
  (void)transition(Trigger::revise_catheter, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_test_alarm(const Command& cmd, Now now) {
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = alarms_[i];
    if (a.active && priority_of(static_cast<AlarmCode>(i)) == AlarmPriority::high &&
        !(a.acknowledged && now.mono < a.silenced_until)) {
      return refuse(cmd, now, Refusal::invalid_state, "a high alarm is sounding: the test would hide it");
    }
  }
  if (alarm_test_since_) return refuse(cmd, now, Refusal::invalid_state, "an alarm test is sounding already");
  alarm_test_since_ = now.mono;
  Event e = make_event(EventType::alarm_test, now.mono, now.wall, cmd.caller.uid);
  e.duration = msec(kAlarmTestMs);
  emit(e);
  Reply r;
  r.id = cmd.id;
  return r;
}

// ---- status ----------------------------------------------------------------------------

void PumpCore::compute_slow_status(Now now) {
  Status& s = status_;
  // Refill due: the reservoir above its low alarm over the planned daily volume with
  // every allowed bolus taken (basal + periodic + patient bolus x max_per_day).
  s.refill_due = WallTime{};
  if (plan_ && reservoir_conc_ > Concentration{}) {
    const Volume per_day = planned_daily_mass() / reservoir_conc_;
    if (reservoir_ <= plan_->low_alarm) {
      s.refill_due = now.wall;
    } else if (per_day > uL(0)) {
      const double d = (reservoir_ - plan_->low_alarm) / per_day;
      const double us = std::min(d * 86400e6, 100.0 * 365 * 86400e6);
      s.refill_due = now.wall + Duration{static_cast<std::int64_t>(us)};
    }
  }
  // S13: never later than the solution's stability date.
  if (const auto exp = solution_expires(); exp && (s.refill_due == WallTime{} || *exp < s.refill_due)) {
    s.refill_due = *exp;
  }
  // Next patient bolus: lockout, count and room in the rolling 24 h (0: now).
  s.next_patient_bolus = WallTime{};
  if (plan_ && plan_->patient_bolus) {
    const auto& rule = *plan_->patient_bolus;
    MonoTime t = now.mono;
    if (!patient_starts_.empty()) t = std::max(t, patient_starts_.back() + rule.lockout);
    if (rule.max_per_day > 0 && patient_starts_.size() >= rule.max_per_day) {
      t = std::max(t, patient_starts_[patient_starts_.size() - rule.max_per_day] + days(1));
    }
    const Mass need = rule.dose + bolus_mass_remaining() + basal_rate_at(now.wall) * rule.duration;
    MonoTime room = ledger_.when_room_for(now.mono, need, plan_->max_daily_dose);
    for (std::size_t i = 0; i < plan_->admixture.size() && reservoir_conc_ > Concentration{}; ++i) {
      // Each admixture drug in the ratio of the reservoir's solution.
      const DrugSlot& d = slots_[plan_slots_[i]];
      const Mass need_i = need * (reservoir_admix_[plan_slots_[i]] / reservoir_conc_);
      room = std::max(room, d.ledger.when_room_for(now.mono, need_i, d.limit));
    }
    if (room == MonoTime::max()) room = now.mono + days(1) + minutes(1);
    t = std::max(t, room);
    if (t > now.mono) s.next_patient_bolus = to_wall(t, now);
  }
  next_slow_ = now.mono + kSlowStatusPeriod;
}

void PumpCore::publish(Now now, bool slow) {
  Status& s = status_;
  s.mono = now.mono;
  s.wall = now.wall;
  s.state = state_;
  s.has_prescription = plan_.has_value();
  if (plan_) {
    s.phase = plan_->phase;
    s.prescription_id = plan_->id;
    s.drug = plan_->drug;
    s.reservoir_capacity = plan_->reservoir_capacity;
    s.daily_limit = plan_->max_daily_dose;
    s.trial_ends = is_trial(*plan_) ? *plan_->trial_ends : WallTime{};
  }
  s.trial_remaining = trial_end_mono_ && *trial_end_mono_ > now.mono ? *trial_end_mono_ - now.mono : Duration{0};
  s.suspended_until = state_ == PumpState::suspended && suspend_until_ ? to_wall(*suspend_until_, now) : WallTime{};
  s.concentration = reservoir_conc_;
  const MassRate basal = state_ == PumpState::infusing ? basal_rate_guarded(now.mono, now.wall - WallTime{} - (now.mono - MonoTime{})) : MassRate{};
  s.basal_rate = basal;
  s.mass_rate = state_ == PumpState::infusing ? basal + bolus_rate_total() : MassRate{};
  const Concentration tip = catheter_.tip_concentration(reservoir_conc_);
  s.pump_rate = state_ == PumpState::priming ? board_.prime_rate
                : tip > Concentration{}     ? s.mass_rate / tip
                                            : VolumeRate{};
  s.prime_left = state_ == PumpState::priming ? prime_left() : Volume{};
  s.reservoir = reservoir_;
  s.catheter_primed = plan_.has_value() && catheter_.full(step_volume());
  s.delivered_24h = ledger_.sum(now.mono);
  s.room_24h = plan_ && plan_->max_daily_dose > s.delivered_24h ? plan_->max_daily_dose - s.delivered_24h : mcg(0);
  s.daily_limit_hold = daily_hold_;
  s.drugs.clear();
  if (plan_) {
    s.drugs.push_back({plan_->drug, reservoir_conc_, s.delivered_24h, plan_->max_daily_dose});
    for (std::size_t i = 0; i < plan_->admixture.size(); ++i) {
      const DrugSlot& d = slots_[plan_slots_[i]];
      s.drugs.push_back({d.name, reservoir_admix_[plan_slots_[i]], d.ledger.sum(now.mono), d.limit});
    }
  }
  static_assert(std::tuple_size_v<decltype(s.drug_totals)> == kDrugSlots);
  for (std::size_t k = 0; k < kDrugSlots; ++k) s.drug_totals[k] = {slots_[k].name, slots_[k].total};
  std::uint32_t n = 0;
  for (const auto& t : patient_starts_) {
    if (t > now.mono - days(1)) ++n;
  }
  s.patient_boluses_24h = n;
  s.bolus_active = false;
  for (std::size_t i = 0; i < boluses_.size(); ++i) {
    const auto& b = boluses_[i];
    auto& o = s.boluses[i];
    o.active = b.active;
    if (b.active) {
      s.bolus_active = true;
      o.dose = b.dose;
      o.delivered = b.programmed - b.held > mcg(0) ? b.programmed - b.held : mcg(0);
      o.started = to_wall(b.start, now);
      o.ends = to_wall(b.end, now);
    } else {
      o = Status::Bolus{};
    }
  }
  s.alarms = alarms_;
  s.battery_percent = battery_.percent();
  s.battery_used_mAs = battery_.used_mAs();
  s.refill_accuracy_percent = refill_accuracy_;
  s.total_delivered_mass = total_mass_;
  s.total_pumped_volume = total_volume_;
  s.steps_issued = steps_issued_;
  s.encoder_pulses = last_encoder_;
  s.programmed_volume = programmed_volume_;
  s.dropped_volume = dropped_volume_;
  s.pending_volume = pending_volume();
  s.steps_dropped = steps_dropped_;
  s.pumped_since_refill = pumped_since_refill_;
  s.last_fill = last_fill_;
  s.buzzer_pattern = sound_pattern_;
  s.events_dropped = events_dropped_;
  s.catheter_volume = catheter_.capacity();
  s.solution_expires = solution_expires().value_or(WallTime{});
  s.refill_began = state_ == PumpState::refilling ? to_wall(refill_began_, now) : WallTime{};
  s.refill_before = refill_before_;
  s.alarm_test = alarm_test_since_.has_value();
  if (slow || now.mono >= next_slow_) compute_slow_status(now);
}

}  // namespace thecal
