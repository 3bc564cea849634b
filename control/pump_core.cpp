#include "control/pump_core.hpp"

#include <algorithm>
#include <cmath>

namespace thecal {

namespace {
bool delivering_state(PumpState s) { return s == PumpState::priming || s == PumpState::infusing; }
}  // namespace

PumpCore::PumpCore(const BoardParams& board, Now now)
    : board_(board), acc_(board.volume_per_step) {
  status_.refill_accuracy_percent = std::nan("");
  publish(now);
}

Reply PumpCore::refuse(const Command& cmd, Refusal why, const char* message) const {
  Reply r;
  r.id = cmd.id;
  r.refusal = why;
  r.message.assign(message);
  if (cmd.kind == CommandKind::load_prescription || cmd.kind == CommandKind::refill) r.released_plan = cmd.plan;
  return r;
}

void PumpCore::emit(const Event& e) {
  if (ev_count_ == kEventCapacity) {
    // Full: drop the oldest (the daemon drains every few ms; this only counts a stall).
    ev_head_ = (ev_head_ + 1) % kEventCapacity;
    --ev_count_;
    ++events_dropped_;
  }
  events_[(ev_head_ + ev_count_) % kEventCapacity] = e;
  ++ev_count_;
}

void PumpCore::emit_simple(EventType t, Now now, std::uint32_t uid) {
  Event e;
  e.type = t;
  e.when = now.wall;
  e.mono = now.mono;
  e.uid = uid;
  e.old_state = e.new_state = state_;
  emit(e);
}

void PumpCore::set_state(PumpState s, Now now, std::uint32_t uid) {
  if (s == state_) return;
  Event e;
  e.type = EventType::state_changed;
  e.when = now.wall;
  e.mono = now.mono;
  e.uid = uid;
  e.old_state = state_;
  e.new_state = s;
  state_ = s;
  emit(e);
}

void PumpCore::raise_alarm(AlarmCode c, Now now) {
  auto& a = alarms_[static_cast<std::size_t>(c)];
  a.cause_present = true;
  if (a.active) return;
  a.active = true;
  a.acknowledged = false;
  a.raised = now.wall;
  Event e;
  e.type = EventType::alarm_raised;
  e.when = now.wall;
  e.mono = now.mono;
  e.alarm = c;
  e.old_state = e.new_state = state_;
  emit(e);
}

void PumpCore::clear_alarm(AlarmCode c, Now now) {
  auto& a = alarms_[static_cast<std::size_t>(c)];
  if (!a.active) return;
  a = AlarmStatus{};
  Event e;
  e.type = EventType::alarm_cleared;
  e.when = now.wall;
  e.mono = now.mono;
  e.alarm = c;
  e.old_state = e.new_state = state_;
  emit(e);
}

bool PumpCore::any_high_alarm() const {
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    if (alarms_[i].active && priority_of(static_cast<AlarmCode>(i)) == AlarmPriority::high) return true;
  }
  return false;
}

MassRate PumpCore::basal_rate_at(Now /*now*/) const {
  if (!plan_) return MassRate{};
  return plan_->continuous_rate;
}

VolumeRate PumpCore::pump_rate(Now now) const {
  if (state_ == PumpState::priming) return board_.prime_rate;
  if (state_ != PumpState::infusing || !plan_) return VolumeRate{};
  // The pump follows the concentration at the tip, so the mass rate at the patient holds
  // through a change of concentration (S3, automatic bridge).
  const Concentration tip = catheter_.tip_concentration(reservoir_conc_);
  if (tip <= Concentration{}) return VolumeRate{};
  return basal_rate_at(now) / tip;
}

Reply PumpCore::apply(const Command& cmd, Now now) {
  Reply ok;
  ok.id = cmd.id;
  const std::uint32_t uid = cmd.caller.uid;
  switch (cmd.kind) {
    case CommandKind::load_prescription: {
      if (cmd.plan == nullptr) return refuse(cmd, Refusal::invalid_prescription, "no prescription");
      if (delivering_state(state_) && plan_ && !(plan_->drug == cmd.plan->drug)) {
        return refuse(cmd, Refusal::invalid_state, "a change of drug needs Refill, not LoadPrescription");
      }
      plan_ = *cmd.plan;
      catheter_.set_capacity(plan_->catheter_volume);
      if (reservoir_ == uL(0)) reservoir_conc_ = plan_->concentration;
      ok.released_plan = cmd.plan;
      emit_simple(EventType::prescription_loaded, now, uid);
      break;
    }
    case CommandKind::prime: {
      if (!plan_) return refuse(cmd, Refusal::invalid_state, "no prescription loaded");
      if (state_ != PumpState::idle && state_ != PumpState::suspended) {
        return refuse(cmd, Refusal::invalid_state, "priming needs the pump idle or suspended");
      }
      if (!cmd.volume.is_finite() || cmd.volume <= uL(0) || cmd.volume > plan_->reservoir_capacity) {
        return refuse(cmd, Refusal::out_of_range, "priming volume must be positive and within the reservoir capacity");
      }
      if (cmd.volume > reservoir_) return refuse(cmd, Refusal::reservoir_low, "the reservoir holds less than the priming volume");
      prime_left_ = cmd.volume;
      acc_.reset();
      set_state(PumpState::priming, now, uid);
      emit_simple(EventType::prime_started, now, uid);
      break;
    }
    case CommandKind::start: {
      if (!plan_) return refuse(cmd, Refusal::invalid_state, "no prescription loaded");
      if (state_ != PumpState::idle && state_ != PumpState::suspended) {
        return refuse(cmd, Refusal::invalid_state, "Start needs the pump idle or suspended");
      }
      if (!catheter_.full()) return refuse(cmd, Refusal::invalid_state, "the catheter is not primed");
      if (reservoir_ <= uL(0)) return refuse(cmd, Refusal::reservoir_low, "the reservoir is empty");
      suspend_until_.reset();
      set_state(PumpState::infusing, now, uid);
      emit_simple(EventType::started, now, uid);
      break;
    }
    case CommandKind::suspend: {
      if (cmd.duration < Duration{0}) return refuse(cmd, Refusal::out_of_range, "negative duration");
      if (state_ != PumpState::infusing && state_ != PumpState::priming) {
        return refuse(cmd, Refusal::invalid_state, "nothing to suspend");
      }
      if (cmd.duration > Duration{0}) suspend_until_ = now.mono + cmd.duration;
      else suspend_until_.reset();
      set_state(PumpState::suspended, now, uid);
      emit_simple(EventType::suspended, now, uid);
      break;
    }
    case CommandKind::resume: {
      if (state_ != PumpState::suspended && state_ != PumpState::stopped) {
        return refuse(cmd, Refusal::invalid_state, "Resume needs the pump suspended or stopped");
      }
      if (any_high_alarm()) return refuse(cmd, Refusal::invalid_state, "a high alarm is still active");
      if (!catheter_.full()) return refuse(cmd, Refusal::invalid_state, "the catheter is not primed");
      suspend_until_.reset();
      set_state(PumpState::infusing, now, uid);
      emit_simple(EventType::resumed, now, uid);
      break;
    }
    case CommandKind::refill: {
      const TherapyPlan* next = cmd.plan != nullptr ? cmd.plan : (plan_ ? &*plan_ : nullptr);
      if (next == nullptr) return refuse(cmd, Refusal::invalid_state, "no prescription loaded");
      if (!cmd.volume.is_finite() || !cmd.withdrawn.is_finite() || cmd.volume <= uL(0) ||
          cmd.withdrawn < uL(0) || cmd.volume > next->reservoir_capacity) {
        return refuse(cmd, Refusal::out_of_range, "refill volume must be positive and within the reservoir capacity");
      }
      if (delivering_state(state_)) return refuse(cmd, Refusal::invalid_state, "suspend the pump before a refill");
      const bool drug_change = plan_ && cmd.plan != nullptr && !(plan_->drug == cmd.plan->drug);
      if (cmd.plan != nullptr) {
        plan_ = *cmd.plan;
        catheter_.set_capacity(plan_->catheter_volume);
        ok.released_plan = cmd.plan;
      }
      reservoir_ = cmd.volume;
      reservoir_conc_ = plan_->concentration;
      Event e;
      e.type = EventType::refill;
      e.when = now.wall;
      e.mono = now.mono;
      e.uid = uid;
      e.volume = cmd.volume;
      e.volume2 = cmd.withdrawn;
      e.old_state = e.new_state = state_;
      emit(e);
      if (drug_change && state_ != PumpState::idle) set_state(PumpState::suspended, now, uid);
      break;
    }
    case CommandKind::acknowledge_alarm: {
      auto& a = alarms_[static_cast<std::size_t>(cmd.alarm)];
      if (!a.active) return refuse(cmd, Refusal::out_of_range, "no such active alarm");
      if (priority_of(cmd.alarm) == AlarmPriority::high && !cmd.caller.clinician) {
        return refuse(cmd, Refusal::access_denied, "only a clinician may acknowledge a high alarm");
      }
      a.acknowledged = true;
      a.silenced_until = now.mono + minutes(2);
      Event e;
      e.type = EventType::alarm_acknowledged;
      e.when = now.wall;
      e.mono = now.mono;
      e.uid = uid;
      e.alarm = cmd.alarm;
      emit(e);
      if (!a.cause_present) clear_alarm(cmd.alarm, now);
      break;
    }
    case CommandKind::grant_budget: {
      if (cmd.steps.count <= 0) return refuse(cmd, Refusal::out_of_range, "budget must be positive");
      budget_ += cmd.steps;
      break;
    }
    case CommandKind::patient_bolus:
    case CommandKind::clinician_bolus:
    case CommandKind::cancel_bolus:
    case CommandKind::replace_battery:
      return refuse(cmd, Refusal::invalid_state, "not supported yet by this dosing core");
  }
  publish(now);
  return ok;
}

void PumpCore::supervise(Now now, const SensorInputs& in, bool delivering) {
  struct Cause {
    AlarmCode code;
    bool present;
  };
  const std::array<Cause, 5> causes{{
      {AlarmCode::occlusion, in.occlusion},
      {AlarmCode::disconnect, in.disconnect && delivering},
      {AlarmCode::driver_fault, in.driver_fault},
      {AlarmCode::hardware_fault, !in.hardware_ok},
      {AlarmCode::reservoir_empty, plan_.has_value() && reservoir_ < board_.volume_per_step && delivering},
  }};
  for (const auto& c : causes) {
    auto& a = alarms_[static_cast<std::size_t>(c.code)];
    if (c.present) raise_alarm(c.code, now);
    else a.cause_present = false;
    if (a.active && !c.present && a.acknowledged) clear_alarm(c.code, now);
  }
  if (plan_) {
    if (reservoir_ <= plan_->low_alarm) raise_alarm(AlarmCode::reservoir_low, now);
    else clear_alarm(AlarmCode::reservoir_low, now);
  }
  if (any_high_alarm() && delivering_state(state_)) {
    acc_.reset();
    set_state(PumpState::stopped, now, kSystemUid);
  }
}

void PumpCore::tick(Now now, const SensorInputs& in, Actuation& out) {
  heartbeat_ = !heartbeat_;
  out = Actuation{};
  out.heartbeat = heartbeat_;

  if (state_ == PumpState::suspended && suspend_until_ && now.mono >= *suspend_until_) {
    suspend_until_.reset();
    set_state(PumpState::infusing, now, kSystemUid);
    emit_simple(EventType::resumed, now, kSystemUid);
  }

  supervise(now, in, delivering_state(state_));

  const Duration dt = now.mono - status_.mono;
  if (delivering_state(state_) && plan_ && dt > Duration{0}) {
    const Volume programmed = pump_rate(now) * dt;
    std::int64_t steps = acc_.add(programmed);
    const std::int64_t cap = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::ceil(board_.max_steps_per_second * to_seconds(dt))));
    steps = std::min({steps, cap, budget_.count});
    if (state_ == PumpState::priming) {
      // Never pump more than the priming volume, however long the cycle was.
      const auto prime_steps = static_cast<std::int64_t>(std::ceil(prime_left_ / board_.volume_per_step - 1e-9));
      steps = std::min(steps, prime_steps);
    }
    const Volume vol = board_.volume_per_step * static_cast<double>(steps);
    if (state_ == PumpState::infusing && steps > 0) {
      // S1: basal that would cross the rolling-24 h limit is held back, never delivered.
      const Mass at_tip = catheter_.mass_out_if_pushed(vol, reservoir_conc_);
      if (ledger_.sum(now.mono) + at_tip > plan_->max_daily_dose) {
        raise_alarm(AlarmCode::daily_limit, now);
        steps = 0;
      } else {
        clear_alarm(AlarmCode::daily_limit, now);
      }
    }
    if (steps > 0) {
      const Volume v = board_.volume_per_step * static_cast<double>(steps);
      const Mass m = catheter_.push(v, reservoir_conc_);
      ledger_.add(now.mono, m);
      reservoir_ -= v;
      if (reservoir_ < uL(0)) reservoir_ = uL(0);
      total_mass_ += m;
      total_volume_ += v;
      steps_issued_ += static_cast<std::uint64_t>(steps);
      budget_.count -= steps;
      out.steps = static_cast<std::uint32_t>(steps);
      if (state_ == PumpState::priming) {
        prime_left_ -= v;
        if (prime_left_ <= uL(1e-9)) {
          emit_simple(EventType::prime_finished, now, kSystemUid);
          set_state(PumpState::idle, now, kSystemUid);
        }
      }
    }
  }
  // Enabled while delivering, and for the cycle that issues the last steps of a prime.
  out.motor_enable = out.steps > 0 || delivering_state(state_);
  last_encoder_ = in.encoder_pulses;
  publish(now);
}

void PumpCore::publish(Now now) {
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
    s.trial_ends = plan_->trial_ends.value_or(WallTime{});
  }
  s.concentration = reservoir_conc_;
  s.basal_rate = state_ == PumpState::infusing ? basal_rate_at(now) : MassRate{};
  s.reservoir = reservoir_;
  s.catheter_primed = plan_.has_value() && catheter_.full();
  s.delivered_24h = ledger_.sum(now.mono);
  s.alarms = alarms_;
  s.total_delivered_mass = total_mass_;
  s.total_pumped_volume = total_volume_;
  s.steps_issued = steps_issued_;
  s.encoder_pulses = last_encoder_;
}

}  // namespace thecal
