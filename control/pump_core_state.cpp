// PumpCore: export and restore of the whole persistent state (SPEC S7, issue 7).
#include <algorithm>
#include <array>
#include <cmath>

#include "control/pump_core.hpp"

namespace thecal {

namespace {

/// ceil(a / b) for b > 0, any sign of a.
std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && a > 0) ? q + 1 : q;
}

}  // namespace

void PumpCore::export_state(CoreState& out, Now now) const {
  out.mono = now.mono;
  out.wall = now.wall;
  out.state = state_;
  out.plan = plan_;
  out.reservoir_conc = reservoir_conc_;
  out.reservoir = reservoir_;
  out.catheter_capacity = catheter_.capacity();
  out.catheter = catheter_.segments();
  out.ledger = ledger_.buckets();
  out.battery_used_mAs = battery_.used_mAs();
  out.jump_guard_until = jump_guard_until_;
  out.pre_jump_offset = pre_jump_offset_;
  out.suspend_until = suspend_until_;
  out.trial_end_mono = trial_end_mono_;
  out.trial_end_logged = trial_end_logged_;
  out.prime_left = prime_left();
  for (std::size_t i = 0; i < boluses_.size(); ++i) {
    const auto& b = boluses_[i];
    out.boluses[i] = CoreBolusState{b.active, b.dose, b.rate, b.start, b.end, b.programmed, b.held, b.uid};
  }
  out.patient_starts.clear();
  for (const auto t : patient_starts_) out.patient_starts.push_back(t);
  out.periodic_last_day = periodic_last_day_;
  out.periodic_last_fired = periodic_last_fired_;
  out.alarms = alarms_;
  out.daily_hold = daily_hold_;
  out.total_mass = total_mass_;
  out.total_volume = total_volume_;
  out.programmed_volume = programmed_volume_;
  out.dropped_volume = dropped_volume_ + pending_volume();  // what is due now is never owed
  out.steps_dropped = steps_dropped_;
  out.steps_issued = steps_issued_;
  out.pumped_since_refill = pumped_since_refill_;
  out.last_fill = last_fill_;
  out.has_filled = has_filled_;
  out.refill_accuracy = refill_accuracy_;
  out.catheter_revised = catheter_revised_;
  out.refill_before = refill_before_;
  out.refill_began = refill_began_;
  out.last_fill_wall = last_fill_wall_;
  out.stopped_since = stopped_since_;
  out.stop_began = stop_began_;
  out.long_stop_logged = long_stop_logged_;
  out.reservoir_admix = reservoir_admix_;
  out.plan_slots = plan_slots_;
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    out.drug_slots[k].name = slots_[k].name;
    out.drug_slots[k].limit = slots_[k].limit;
    out.drug_slots[k].ledger = slots_[k].ledger.buckets();
  }
}

RestoreReport PumpCore::restore_state(const CoreState& in, const RestoreClock& clock, std::int64_t unconfirmed_steps) {
  RestoreReport rep;
  const Now now = clock.now;
  const Duration elapsed = std::max(Duration{0}, clock.elapsed);
  const Duration shift = (now.mono - elapsed) - in.mono;
  rep.shift = shift;
  restore_fields(in, shift, now);
  budget_ = Steps{0};
  budget_exhausted_logged_ = false;

  last_ = now.mono;
  last_tick_ = now.mono;
  // The wall offset the new clock should show if exactly `elapsed` has passed on both
  // clocks; the check below logs (and guards, S8) any difference as a wall-clock jump.
  wall_offset_ = (in.wall - WallTime{}) - ((in.mono + shift) - MonoTime{});
  due_steps_ = 0;
  acc_.reset();
  stretch_.valid = false;
  tokens_ = 1.0;
  tokens_t_ = now.mono;
  prime_prog_left_ = uL(0);
  prime_steps_left_ = 0;
  alarm_test_since_.reset();

  // Supervisor windows start again; the encoder's count is the new backend's.
  encoder_seen_ = false;
  last_encoder_ = 0;
  steps_since_pulse_ = 0;
  flow_time_ = Duration{0};
  flow_cmd_steps_ = 0;
  flow_enc_steps_ = 0;
  flow_deviating_ = false;
  sound_pattern_ = BuzzerPattern::off;
  sound_since_ = now.mono;
  next_slow_ = now.mono;

  if (state_ == PumpState::priming) {
    // Priming does not resume by itself: the clinician primes again (what was pumped is
    // in the catheter already).
    state_ = PumpState::suspended;
    suspend_until_.reset();
    rep.priming_interrupted = true;
    Event e = make_event(EventType::state_changed, now.mono, now.wall, kSystemUid);
    e.old_state = PumpState::priming;
    e.new_state = PumpState::suspended;
    emit(e);
  }

  // S7: every reserved step not confirmed by the state was pumped, now.
  if (unconfirmed_steps > 0) {
    const Volume v = step_volume() * static_cast<double>(unconfirmed_steps);
    const Mass m = push_and_count(v, now.mono);
    reservoir_ = reservoir_ > v ? reservoir_ - v : uL(0);
    total_mass_ += m;
    total_volume_ += v;
    programmed_volume_ += v;
    pumped_since_refill_ += v;
    steps_issued_ += static_cast<std::uint64_t>(unconfirmed_steps);
    rep.unconfirmed_steps = unconfirmed_steps;
    rep.unconfirmed_mass = m;
  }
  detect_wall_jump(now);
  publish(now, true);
  return rep;
}

void PumpCore::restore_fields(const CoreState& in, Duration shift, Now now) {
  auto mv = [&](MonoTime t) { return t + shift; };
  auto mv_opt = [&](const std::optional<MonoTime>& t) -> std::optional<MonoTime> {
    if (!t) return std::nullopt;
    return *t + shift;
  };

  state_ = in.state;
  plan_ = in.plan;
  reservoir_conc_ = in.reservoir_conc;
  reservoir_ = in.reservoir;
  catheter_.set_capacity(in.catheter_capacity);
  catheter_.restore(in.catheter);
  // Ledger buckets move by whole minutes, rounded towards later: a bucket never leaves the
  // window before its mass really would have.
  const std::int64_t minute = to_usec(RollingLedger::kBucket);
  const std::int64_t k = ceil_div(to_usec(shift), minute);
  auto buckets = in.ledger;
  for (auto& b : buckets) {
    if (b.index != RollingLedger::kEmpty) b.index += k;
  }
  ledger_ = RollingLedger{};
  ledger_.restore(buckets, now.mono);
  reservoir_admix_ = in.reservoir_admix;
  plan_slots_ = in.plan_slots;
  for (std::size_t d = 0; d < kDrugSlots; ++d) {
    slots_[d].name = in.drug_slots[d].name;
    slots_[d].limit = in.drug_slots[d].limit;
    buckets = in.drug_slots[d].ledger;
    for (auto& b : buckets) {
      if (b.index != RollingLedger::kEmpty) b.index += k;
    }
    slots_[d].ledger = RollingLedger{};
    slots_[d].ledger.restore(buckets, now.mono);
  }
  if (plan_) {
    // A state built by hand (not decoded) may lack the slot table: bind the plan's drugs.
    bool bound = true;
    for (std::size_t i = 0; i < plan_->admixture.size(); ++i) {
      bound = bound && plan_slots_[i] < kDrugSlots && slots_[plan_slots_[i]].name == plan_->admixture[i].name;
    }
    SlotMap map{};
    if (!bound && !bind_slots(*plan_, map, now)) (void)take_slots(*plan_, map);
  }
  battery_.restore(in.battery_used_mAs);
  jump_guard_until_ = mv_opt(in.jump_guard_until);
  pre_jump_offset_ = in.pre_jump_offset - shift;
  suspend_until_ = mv_opt(in.suspend_until);
  trial_end_mono_ = mv_opt(in.trial_end_mono);
  trial_end_logged_ = in.trial_end_logged;
  for (std::size_t i = 0; i < boluses_.size(); ++i) {
    const auto& b = in.boluses[i];
    boluses_[i] = ActiveBolus{b.active, b.dose, b.rate, mv(b.start), mv(b.end), b.programmed, b.held, b.uid};
  }
  patient_starts_.clear();
  for (const auto t : in.patient_starts) {
    if (patient_starts_.size() < patient_starts_.capacity()) patient_starts_.push_back(mv(t));
  }
  periodic_last_day_ = in.periodic_last_day;
  for (std::size_t i = 0; i < periodic_last_fired_.size(); ++i) periodic_last_fired_[i] = mv_opt(in.periodic_last_fired[i]);
  alarms_ = in.alarms;
  for (auto& a : alarms_) {
    if (a.silenced_until != MonoTime{}) a.silenced_until = mv(a.silenced_until);
  }
  daily_hold_ = in.daily_hold;
  total_mass_ = in.total_mass;
  total_volume_ = in.total_volume;
  programmed_volume_ = in.programmed_volume;
  dropped_volume_ = in.dropped_volume;
  steps_dropped_ = in.steps_dropped;
  steps_issued_ = in.steps_issued;
  pumped_since_refill_ = in.pumped_since_refill;
  last_fill_ = in.last_fill;
  has_filled_ = in.has_filled;
  refill_accuracy_ = in.refill_accuracy;
  catheter_revised_ = in.catheter_revised;
  // A pump restarted in a refill session comes back in it (motor stopped: the needle may
  // still be in; refill_unfinished still counts from the session's start).
  refill_before_ = in.refill_before;
  refill_began_ = mv(in.refill_began);
  last_fill_wall_ = in.last_fill_wall;
  stopped_since_ = in.stopped_since;
  stop_began_ = mv_opt(in.stop_began);  // across a reboot: the time off does not count
  long_stop_logged_ = in.long_stop_logged;
}

namespace {

CoreLedgerCursor to_cursor(const RollingLedger::Cursor& c) {
  return {c.total_pg, c.next_to_expire, c.latest_minute, c.started};
}
RollingLedger::Cursor from_cursor(const CoreLedgerCursor& c) {
  return {c.total_pg, c.next_to_expire, c.latest_minute, c.started};
}

}  // namespace

bool PumpCore::export_image(CoreImage& out) const {
  if (ev_count_ != 0) return false;
  export_state(out.state, Now{status_.mono, status_.wall});
  CoreRuntime& r = out.runtime;
  r.limit_drug = limit_drug_;
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    r.slot_totals[k] = slots_[k].total;
    r.slot_ledger_cursors[k] = to_cursor(slots_[k].ledger.cursor());
  }
  r.ledger_cursor = to_cursor(ledger_.cursor());
  const BatteryModel::Raw b = battery_.raw();
  r.battery_base_mAs = b.base_mAs;
  r.battery_us = b.us;
  r.battery_steps = b.steps;
  r.battery_used_mAs = b.used_mAs;
  r.budget = budget_.count;
  r.budget_exhausted_logged = budget_exhausted_logged_;
  r.last = last_;
  r.last_tick = last_tick_;
  r.wall_offset = wall_offset_;
  r.due_steps = due_steps_;
  r.acc_remainder = acc_.remainder_steps();
  r.tokens = tokens_;
  r.tokens_t = tokens_t_;
  CoreStretch& st = r.stretch;
  st.valid = stretch_.valid;
  st.priming = stretch_.priming;
  st.t0 = stretch_.t0;
  st.t_end = stretch_.t_end;
  st.rate = stretch_.rate;
  st.conc = stretch_.conc;
  st.r0 = stretch_.r0;
  st.pv0 = stretch_.pv0;
  st.skip0 = stretch_.skip0;
  st.prime0 = stretch_.prime0;
  st.bp0 = stretch_.bp0;
  st.whole = stretch_.whole;
  st.r_end = stretch_.r_end;
  st.cath_capacity = stretch_.cath.capacity();
  st.cath = stretch_.cath.segments();
  st.cath_admix.clear();
  for (const auto& seg : stretch_.cath.segments()) st.cath_admix.push_back(seg.admix);
  r.prime_prog_left = prime_prog_left_;
  r.prime_steps_left = prime_steps_left_;
  r.dropped_volume = dropped_volume_;
  r.last_encoder = last_encoder_;
  r.encoder_seen = encoder_seen_;
  r.steps_since_pulse = steps_since_pulse_;
  r.flow_time = flow_time_;
  r.flow_cmd_steps = flow_cmd_steps_;
  r.flow_enc_steps = flow_enc_steps_;
  r.flow_deviating = flow_deviating_;
  r.sound_since = sound_since_;
  r.sound_pattern = sound_pattern_;
  r.heartbeat = heartbeat_;
  r.bolus_button_was = bolus_button_was_;
  r.alarm_test_since = alarm_test_since_;
  r.events_dropped = events_dropped_;
  r.emitted = emitted_;
  r.next_slow = next_slow_;
  r.refill_due = status_.refill_due;
  r.next_patient_bolus = status_.next_patient_bolus;
  return true;
}

void PumpCore::restore_image(const CoreImage& im) {
  const CoreState& in = im.state;
  const CoreRuntime& r = im.runtime;
  const Now now{in.mono, in.wall};
  restore_fields(in, Duration{0}, now);
  // What restore_fields maps as a restart would, taken exactly instead.
  ledger_.restore_exact(in.ledger, from_cursor(r.ledger_cursor));
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    slots_[k].ledger.restore_exact(in.drug_slots[k].ledger, from_cursor(r.slot_ledger_cursors[k]));
    slots_[k].total = r.slot_totals[k];
  }
  battery_.restore_exact({r.battery_base_mAs, r.battery_us, r.battery_steps, r.battery_used_mAs});
  limit_drug_ = r.limit_drug;
  budget_ = Steps{r.budget};
  budget_exhausted_logged_ = r.budget_exhausted_logged;
  last_ = r.last;
  last_tick_ = r.last_tick;
  wall_offset_ = r.wall_offset;
  due_steps_ = r.due_steps;
  acc_.restore_exact(r.acc_remainder);
  tokens_ = r.tokens;
  tokens_t_ = r.tokens_t;
  const CoreStretch& st = r.stretch;
  stretch_.valid = st.valid;
  stretch_.priming = st.priming;
  stretch_.t0 = st.t0;
  stretch_.t_end = st.t_end;
  stretch_.rate = st.rate;
  stretch_.conc = st.conc;
  stretch_.r0 = st.r0;
  stretch_.pv0 = st.pv0;
  stretch_.skip0 = st.skip0;
  stretch_.prime0 = st.prime0;
  stretch_.bp0 = st.bp0;
  stretch_.whole = st.whole;
  stretch_.r_end = st.r_end;
  auto segs = st.cath;
  for (std::size_t i = 0; i < segs.size() && i < st.cath_admix.size(); ++i) segs[i].admix = st.cath_admix[i];
  stretch_.cath.set_capacity(st.cath_capacity);
  stretch_.cath.restore(segs);
  prime_prog_left_ = r.prime_prog_left;
  prime_steps_left_ = r.prime_steps_left;
  dropped_volume_ = r.dropped_volume;
  last_encoder_ = r.last_encoder;
  encoder_seen_ = r.encoder_seen;
  steps_since_pulse_ = r.steps_since_pulse;
  flow_time_ = r.flow_time;
  flow_cmd_steps_ = r.flow_cmd_steps;
  flow_enc_steps_ = r.flow_enc_steps;
  flow_deviating_ = r.flow_deviating;
  sound_since_ = r.sound_since;
  sound_pattern_ = r.sound_pattern;
  heartbeat_ = r.heartbeat;
  bolus_button_was_ = r.bolus_button_was;
  alarm_test_since_ = r.alarm_test_since;
  ev_head_ = 0;
  ev_count_ = 0;
  events_dropped_ = r.events_dropped;
  emitted_ = r.emitted;
  next_slow_ = r.next_slow;
  // The status as it was published at the image's time: its fast fields are a function of
  // the fields above and that time (next_slow_ is later, so publish computes no slow one);
  // the two once-a-second ones were computed earlier and are taken as they were.
  publish(now, false);
  status_.refill_due = r.refill_due;
  status_.next_patient_bolus = r.next_patient_bolus;
}

}  // namespace thecal

namespace thecal {

// Pump replacement (SPEC 2, issue 11): the therapy of another unit, taken over by a fresh
// one.  What moves: the prescription, the rolling 24 h ledger, the patient bolus starts
// (lockout and count), periodic-dose bookkeeping, the catheter's contents, the jump guard
// and the therapy alarms.  What stays this unit's own: the battery, the (empty) reservoir,
// the step counters and totals (the journal's reservation arithmetic and the delivery
// history are this unit's), the supervisor.  Monotonic times do not transfer between
// units: they are mapped as if no time had passed since the export (elapsed = 0), so an
// imported ledger entry or lockout start looks younger than it is, never older: the
// ledger keeps its mass at least as long and a lockout lasts at least as long as on the
// old unit.  Neither unit's wall clock is trusted to say how long the handover took.
// The export is the old unit's last act: what it delivers afterwards would not be in the
// new unit's ledger.  So it is allowed only while the pump cannot deliver by itself:
// not priming or infusing, and not in a timed suspend that would resume on its own.
Reply PumpCore::do_export(const Command& cmd, Now now) {
  if (!plan_) return refuse(cmd, now, Refusal::invalid_state, "no prescription is loaded: there is no therapy to export");
  if (state_ == PumpState::infusing || state_ == PumpState::priming) {
    return refuse(cmd, now, Refusal::invalid_state,
                  "suspend the pump (until Resume) before exporting: it must not deliver after the export");
  }
  if (state_ == PumpState::suspended && suspend_until_) {
    return refuse(cmd, now, Refusal::invalid_state,
                  "a timed suspend would resume delivery after the export: suspend until Resume first");
  }
  Reply r;
  r.id = cmd.id;
  return r;
}

Reply PumpCore::do_import(const Command& cmd, Now now) {
  if (cmd.state_in == nullptr) return refuse(cmd, now, Refusal::out_of_range, "no therapy to import");
  if (state_ != PumpState::idle) {
    FixedString<160> m;
    m.append("a therapy can only be imported on a unit in idle; this one is ").append(to_string(state_));
    return refuse(cmd, now, Refusal::invalid_state, m.view());
  }
  if (steps_issued_ != 0 || has_filled_ || total_volume_ > uL(0) || ledger_.sum_pg(now.mono) > 0) {
    return refuse(cmd, now, Refusal::invalid_state,
                  "this unit has a delivery history (it was filled or has pumped): import only on a fresh unit");
  }
  CoreState& in = *cmd.state_in;
  if (!in.plan) return refuse(cmd, now, Refusal::out_of_range, "the exported therapy has no prescription");
  if (auto problem = plan_problem(*in.plan)) return refuse(cmd, now, Refusal::invalid_prescription, *problem);

  // This unit's own hardware and counters.
  in.battery_used_mAs = battery_.used_mAs();
  in.reservoir = uL(0);  // empty until its first Refill (withdrawn 0), SPEC 4
  in.reservoir_conc = in.plan->concentration;
  in.reservoir_admix = AdmixConc{};
  in.has_filled = false;
  in.last_fill = uL(0);
  in.pumped_since_refill = uL(0);
  in.refill_accuracy = std::nan("");
  in.prime_left = uL(0);
  in.total_mass = total_mass_;
  in.total_volume = total_volume_;
  in.programmed_volume = programmed_volume_;
  in.dropped_volume = dropped_volume_;
  in.steps_dropped = steps_dropped_;
  in.steps_issued = steps_issued_;
  // The new unit does not deliver until a clinician starts it: no bolus runs on, no
  // timer resumes; the bolus starts stay (lockout and count).
  for (auto& b : in.boluses) b.active = false;
  in.suspend_until.reset();
  in.daily_hold = false;
  in.state = in.state == PumpState::trial_finished ? PumpState::trial_finished : PumpState::idle;
  // Alarms about the old unit's hardware, battery and reservoir do not apply to this one;
  // therapy alarms (and latched catheter alarms: the catheter stays with the patient) do.
  constexpr std::array kOwnAlarms{AlarmCode::motor_stall,   AlarmCode::driver_fault,  AlarmCode::reservoir_empty,
                                   AlarmCode::hardware_fault, AlarmCode::battery_eos,   AlarmCode::storage_fault,
                                   AlarmCode::reservoir_low,  AlarmCode::battery_eri,   AlarmCode::daily_limit,
                                   AlarmCode::flow_deviation, AlarmCode::restart};
  const auto own_alarms = alarms_;

  const Steps budget = budget_;
  const bool budget_logged = budget_exhausted_logged_;
  const PumpState before = state_;
  (void)restore_state(in, RestoreClock{now, Duration{0}}, 0);
  budget_ = budget;  // granted by this unit's journal: still valid
  budget_exhausted_logged_ = budget_logged;
  for (const AlarmCode c : kOwnAlarms) alarms_[static_cast<std::size_t>(c)] = own_alarms[static_cast<std::size_t>(c)];
  // The empty reservoir is set for the prescription's solution, every drug of it (the
  // primary above, each admixture drug here, in the slot the import bound it to), as after
  // a first LoadPrescription: Drugs shows the prescription's concentrations until the first
  // Refill fills it (issue 16: the admixture drugs showed 0 mcg/mL until then).
  reservoir_admix_ = AdmixConc{};
  for (std::size_t i = 0; i < plan_->admixture.size(); ++i) {
    if (plan_slots_[i] < kDrugSlots) reservoir_admix_[plan_slots_[i]] = plan_->admixture[i].concentration;
  }
  publish(now, true);
  if (state_ != before) {
    Event e = make_event(EventType::state_changed, now.mono, now.wall, cmd.caller.uid);
    e.old_state = before;
    e.new_state = state_;
    emit(e);
  }
  emit_simple(EventType::prescription_loaded, now, cmd.caller.uid);
  Reply r;
  r.id = cmd.id;
  return r;
}

}  // namespace thecal
