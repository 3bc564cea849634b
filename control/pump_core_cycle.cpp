// PumpCore: the control cycle.  tick() = wall-jump check, supervisor (S4/S5), piecewise
// integration of the therapy (S3, S6, S8), battery, step issue under every limit (S1,
// reservoir, journal budget, motor rate), flow monitor, buzzer, status.
#include <algorithm>
#include <cmath>

#include "control/buzzer.hpp"
#include "control/local_time.hpp"
#include "control/pump_core.hpp"

namespace thecal {

namespace {
Duration offset_of(Now now) { return (now.wall - WallTime{}) - (now.mono - MonoTime{}); }
Now at(MonoTime t, Duration offset) { return {t, WallTime{} + (t - MonoTime{}) + offset}; }
}  // namespace

void PumpCore::tick(Now now, const SensorInputs& in, Actuation& out) {
  if (now.mono < last_tick_) now.mono = last_tick_;
  if (now.mono < last_) now.mono = last_;
  const Duration dt = now.mono - last_tick_;
  heartbeat_ = !heartbeat_;
  out = Actuation{};
  out.heartbeat = heartbeat_;

  // The patient's bolus button: a press (debounced by the backend) is a patient bolus
  // request, with every rule of a D-Bus request (S2); holding it asks only once.
  if (in.bolus_button && !bolus_button_was_) {
    Command press;
    press.kind = CommandKind::patient_bolus;
    press.caller = {kBolusButtonUid, false};
    (void)apply(press, now);
  }
  bolus_button_was_ = in.bolus_button;

  detect_wall_jump(now);
  supervise(now, in);
  integrate(now);
  update_battery(now, dt, 0);
  set_cause(AlarmCode::battery_eri, battery_.eri() || in.low_battery, true, now);
  const std::int64_t steps = issue_steps(now, dt);
  update_battery(now, Duration{0}, steps);
  monitor_flow(now, steps);
  out.steps = static_cast<std::uint32_t>(steps);
  // Enabled while the state allows stepping, and for the cycle that issues the last
  // steps of a prime (the state has just become idle): the plant must see every step.
  out.motor_enable = steps > 0 || motor_may_step(state_);
  update_alarm_sound(now, out);
  last_tick_ = now.mono;
  publish(now, false);
}

void PumpCore::detect_wall_jump(Now now) {
  const Duration offset = offset_of(now);
  const Duration delta = offset - wall_offset_;
  if (delta > kWallJumpThreshold || delta < -kWallJumpThreshold) {
    Event e = make_event(EventType::wall_clock_jump, now.mono, now.wall, kSystemUid);
    e.duration = delta;
    emit(e);
    // For a day, flex basal may not exceed what the clock before the (first) jump gave.
    if (!jump_guard_until_ || now.mono >= *jump_guard_until_) pre_jump_offset_ = wall_offset_;
    jump_guard_until_ = now.mono + days(1);
    // A periodic dose already handled on a local day that now lies in the future is
    // re-marked against the new clock; the monotonic spacing guards the rest.
    if (plan_) {
      const LocalTime lt = local_time(*plan_, now.wall);
      for (std::size_t i = 0; i < plan_->periodic.size(); ++i) {
        if (periodic_last_day_[i] > lt.day) {
          periodic_last_day_[i] = lt.time_of_day >= plan_->periodic[i].at ? lt.day : lt.day - 1;
        }
      }
    }
  }
  wall_offset_ = offset;
  // The trial ends at trial.ends on the wall clock or after the same time has passed on
  // the monotonic clock, whichever comes first: a wall clock set back cannot extend it.
  if (plan_ && plan_->phase == Phase::trial && plan_->trial_ends && trial_end_mono_) {
    const MonoTime by_wall = now.mono + (*plan_->trial_ends - now.wall);
    if (by_wall < *trial_end_mono_) trial_end_mono_ = by_wall;
  }
}

void PumpCore::supervise(Now now, const SensorInputs& in) {
  // Encoder: any new pulse proves the motor turned.
  if (!encoder_seen_) {
    encoder_seen_ = true;
    last_encoder_ = in.encoder_pulses;
  } else if (in.encoder_pulses > last_encoder_) {
    const auto delta = static_cast<std::int64_t>(in.encoder_pulses - last_encoder_);
    flow_enc_steps_ += delta * static_cast<std::int64_t>(board_.steps_per_encoder_pulse);
    steps_since_pulse_ = 0;
    last_encoder_ = in.encoder_pulses;
  } else if (in.encoder_pulses < last_encoder_) {
    last_encoder_ = in.encoder_pulses;  // the backend restarted its count
  }
  const bool delivering = motor_may_step(state_);
  const bool infusing = state_ == PumpState::infusing;
  const auto stall_steps =
      static_cast<std::int64_t>(board_.stall_pulses) * static_cast<std::int64_t>(board_.steps_per_encoder_pulse);
  // S12: while refilling the motor is stopped, so a pressure-high input means fluid pushed
  // into the catheter (an injection into its access port): that alarm, not an occlusion.
  const bool refilling = state_ == PumpState::refilling;
  set_cause(AlarmCode::occlusion, in.occlusion, !refilling, now);
  set_cause(AlarmCode::catheter_port_injection, in.occlusion, refilling, now);
  set_cause(AlarmCode::disconnect, in.disconnect && infusing, true, now);
  set_cause(AlarmCode::motor_stall, stall_steps > 0 && steps_since_pulse_ >= stall_steps, true, now);
  set_cause(AlarmCode::driver_fault, in.driver_fault, true, now);
  set_cause(AlarmCode::hardware_fault, !in.hardware_ok, true, now);
  const bool was_empty = alarm_active(AlarmCode::reservoir_empty);
  set_cause(AlarmCode::reservoir_empty, plan_.has_value() && reservoir_ < step_volume(), delivering, now);
  if (!was_empty && alarm_active(AlarmCode::reservoir_empty)) {
    Event r = make_event(EventType::risk_event, now.mono, now.wall, kSystemUid);  // S14
    r.index = kRiskReservoirEmpty;
    r.volume = reservoir_;
    emit(r);
  }
  update_timed_alarms(now);
  if (plan_) set_cause(AlarmCode::reservoir_low, reservoir_ <= plan_->low_alarm, true, now);
  if (alarm_active(AlarmCode::daily_limit) && plan_) {
    // Clear once one more step would fit again.
    AdmixMass am{};
    const Mass one = catheter_.mass_out_if_pushed(step_volume(), reservoir_conc_, reservoir_admix_, &am);
    const bool room = ledger_.sum_pg(now.mono) + RollingLedger::to_pg_ceil(one) <=
                          RollingLedger::to_pg_floor(plan_->max_daily_dose) &&
                      admix_fits(now.mono, am, nullptr);
    if (room) daily_hold_ = false;
    set_cause(AlarmCode::daily_limit, !room, false, now);
  }
  // S4: a high alarm stops the motor in this very cycle and cancels any bolus (S5).
  if (any_high_alarm() && next_state(state_, Trigger::high_alarm)) {
    stop_delivery(now, kSystemUid);
    (void)transition(Trigger::high_alarm, now, kSystemUid);
  }
}

void PumpCore::integrate(Now now) {
  const Duration offset = offset_of(now);
  MonoTime t = last_;
  for (std::size_t n = 0;; ++n) {
    on_instant(t, offset);
    if (t >= now.mono) break;
    MonoTime end = now.mono;
    if (n < kMaxSegmentsPerCycle) end = std::min(end, next_boundary(t, offset));
    if (end <= t) end = now.mono;  // progress, whatever the boundaries say
    integrate_segment(t, end, offset);
    t = end;
  }
  if (now.mono > last_) last_ = now.mono;
}

void PumpCore::on_instant(MonoTime t, Duration offset) {
  const Now n = at(t, offset);
  // S14: a stop of delivery reaching 48 h on the monotonic clock, once per stop (a boundary:
  // logged at its instant, in whichever cycle or fast-forward reaches it).  First, so that a
  // stop ended at that very instant (timed suspend, Resume) has reached it.
  if (stop_began_ && !long_stop_logged_ && t >= *stop_began_ + kLongStop) {
    long_stop_logged_ = true;
    Event r = make_event(EventType::risk_event, n.mono, n.wall, kSystemUid);
    r.index = kRiskLongStop;
    r.duration = t - *stop_began_;
    emit(r);
  }
  // Priming completes once its last step has been issued (in an earlier cycle).
  if (state_ == PumpState::priming && prime_prog_left_ <= uL(0) && prime_steps_left_ <= 0) {
    emit_simple(EventType::prime_finished, n, kSystemUid);
    (void)transition(Trigger::prime_done, n, kSystemUid);
  }
  // A timed suspend ends by itself, if delivery may resume.
  if (state_ == PumpState::suspended && suspend_until_ && t >= *suspend_until_) {
    suspend_until_.reset();
    if (auto g = delivery_guard(n)) {
      Event e = make_event(EventType::suspend_extended, n.mono, n.wall, kSystemUid);
      e.refusal = g->first;
      emit(e);
    } else {
      (void)transition(Trigger::suspend_elapsed, n, kSystemUid);
      emit_simple(EventType::resumed, n, kSystemUid);
    }
  }
  // The trial ends by itself.
  if (trial_end_mono_ && t >= *trial_end_mono_ && next_state(state_, Trigger::trial_end)) {
    stop_delivery(n, kSystemUid);
    (void)transition(Trigger::trial_end, n, kSystemUid);
    if (!trial_end_logged_) {
      trial_end_logged_ = true;
      emit_simple(EventType::trial_finished, n, kSystemUid);
      raise_alarm(AlarmCode::trial_finished, n);
    }
  }
  // Boluses end on the monotonic clock.
  for (std::size_t i = 0; i < boluses_.size(); ++i) {
    if (boluses_[i].active && t >= boluses_[i].end) finish_bolus(static_cast<BolusSource>(i), n, kSystemUid, false);
  }
  // Periodic doses: at most once per local day each, never closer than the monotonic
  // spacing, and only if the pump is infusing when the dose comes due (no catch-up).
  if (plan_ && !plan_->periodic.empty()) {
    const LocalTime lt = local_time(*plan_, n.wall);
    for (std::size_t i = 0; i < plan_->periodic.size(); ++i) {
      const PeriodicDose& d = plan_->periodic[i];
      if (lt.day <= periodic_last_day_[i] || lt.time_of_day < d.at) continue;
      periodic_last_day_[i] = lt.day;  // handled for this local day, fired or skipped
      Refusal why = Refusal::none;
      auto& slot = boluses_[static_cast<std::size_t>(BolusSource::periodic)];
      if (state_ != PumpState::infusing) why = Refusal::invalid_state;
      else if (periodic_last_fired_[i] && t - *periodic_last_fired_[i] < kPeriodicMinSpacing) why = Refusal::lockout_active;
      else if (slot.active) why = Refusal::invalid_state;
      if (why == Refusal::none) {
        slot = ActiveBolus{};
        slot.active = true;
        slot.dose = d.dose;
        slot.rate = MassRate::canonical(to_mcg(d.dose) / static_cast<double>(d.duration.count()));
        slot.start = t;
        slot.end = t + d.duration;
        slot.uid = kSystemUid;
        periodic_last_fired_[i] = t;
        stretch_.valid = false;
        Event e = make_event(EventType::bolus_started, n.mono, n.wall, kSystemUid);
        e.source = BolusSource::periodic;
        e.mass = d.dose;
        e.duration = d.duration;
        e.index = static_cast<std::uint32_t>(i);
        emit(e);
      } else if (state_ == PumpState::infusing || state_ == PumpState::suspended || state_ == PumpState::stopped ||
                 state_ == PumpState::refilling) {
        Event e = make_event(EventType::periodic_skipped, n.mono, n.wall, kSystemUid);
        e.index = static_cast<std::uint32_t>(i);
        e.refusal = why;
        e.mass = d.dose;
        emit(e);
      }
    }
  }
}

MonoTime PumpCore::next_boundary(MonoTime t, Duration offset, bool any_state) const {
  MonoTime b = MonoTime::max();
  auto consider = [&](MonoTime x) {
    if (x > t && x < b) b = x;
  };
  if ((any_state || state_ == PumpState::suspended) && suspend_until_) consider(*suspend_until_);
  if (trial_end_mono_) consider(*trial_end_mono_);
  if (stop_began_ && !long_stop_logged_) consider(*stop_began_ + kLongStop);  // S14
  for (const auto& x : boluses_) {
    if (x.active) consider(x.end);
  }
  if (plan_ && (any_state || state_ == PumpState::infusing)) {
    const WallTime w = WallTime{} + (t - MonoTime{}) + offset;
    const LocalTime lt = local_time(*plan_, w);
    consider(t + (days(1) - lt.time_of_day));  // local midnight
    if (plan_->basal_mode == BasalMode::flex) {
      for (const auto& s : plan_->flex_steps) {
        if (s.start > lt.time_of_day) {
          consider(t + (s.start - lt.time_of_day));
          break;
        }
      }
    }
    for (const auto& d : plan_->periodic) {
      if (d.at > lt.time_of_day) consider(t + (d.at - lt.time_of_day));
    }
    if (auto c = next_offset_change(*plan_, w)) consider(t + (*c - w));
    if (jump_guard_until_ && t < *jump_guard_until_ && (any_state || plan_->basal_mode == BasalMode::flex)) {
      consider(*jump_guard_until_);
      const WallTime w2 = WallTime{} + (t - MonoTime{}) + pre_jump_offset_;
      const LocalTime l2 = local_time(*plan_, w2);
      consider(t + (days(1) - l2.time_of_day));
      for (const auto& s : plan_->flex_steps) {
        if (s.start > l2.time_of_day) {
          consider(t + (s.start - l2.time_of_day));
          break;
        }
      }
      if (auto c = next_offset_change(*plan_, w2)) consider(t + (*c - w2));
    }
  }
  return b;
}

bool PumpCore::stretch_continues(MonoTime t0, bool priming, MassRate rate) const {
  const Stretch& s = stretch_;
  return s.valid && s.priming == priming && s.t_end == t0 && s.rate.canonical_value() == rate.canonical_value() &&
         s.conc.canonical_value() == reservoir_conc_.canonical_value() && s.r_end == acc_.remainder_steps();
}

void PumpCore::anchor_stretch(MonoTime t0, bool priming, MassRate rate) {
  Stretch& s = stretch_;
  s.valid = true;
  s.priming = priming;
  s.t0 = t0;
  s.t_end = t0;
  s.rate = rate;
  s.conc = reservoir_conc_;
  s.r0 = acc_.remainder_steps();
  s.pv0 = programmed_volume_;
  s.skip0 = pending_volume();
  s.prime0 = prime_prog_left_;
  for (std::size_t i = 0; i < boluses_.size(); ++i) s.bp0[i] = boluses_[i].programmed;
  s.whole = 0;
  s.r_end = s.r0;
  s.cath = catheter_;
}

Volume PumpCore::stretch_volume(MonoTime t) const {
  const Stretch& s = stretch_;
  const Duration d = t - s.t0;
  if (s.priming) {
    const Volume v = board_.prime_rate * d;
    return v > s.prime0 ? s.prime0 : v;
  }
  const Mass m = s.rate * d;
  if (m <= mcg(0)) return uL(0);
  // S3: the volume that carries `m` out of the tip, walking the catheter's segments (old
  // solution first) after what was already programmed at the anchor: the automatic bridge.
  const Volume v = s.cath.volume_for_mass(m, s.conc, s.skip0);
  if (!v.is_finite() || v <= uL(0)) return uL(0);
  return v;
}

void PumpCore::integrate_segment(MonoTime t0, MonoTime t1, Duration offset) {
  if (t1 <= t0) return;
  const bool priming = state_ == PumpState::priming;
  if (!priming && (state_ != PumpState::infusing || !plan_)) {
    stretch_.valid = false;
    return;
  }
  // Closed form from the stretch's anchor (see Stretch): a 1 ms cycle and a 20 s cycle, or
  // a fast-forward, reach the same steps and the same fraction at the same time.
  const MassRate rate = priming ? MassRate{} : basal_rate_guarded(t0, offset) + bolus_rate_total();
  if (!stretch_continues(t0, priming, rate)) anchor_stretch(t0, priming, rate);
  Stretch& s = stretch_;
  const Volume v = stretch_volume(t1);
  if (priming) {
    prime_prog_left_ = s.prime0 - v;
  } else {
    for (std::size_t i = 0; i < boluses_.size(); ++i) {
      auto& b = boluses_[i];
      if (b.active) b.programmed = s.bp0[i] + b.rate * (t1 - s.t0);
    }
  }
  programmed_volume_ = s.pv0 + v;
  const std::int64_t whole = acc_.set_from(s.r0, v);
  due_steps_ += whole - s.whole;
  s.whole = whole;
  s.t_end = t1;
  s.r_end = acc_.remainder_steps();
  if (priming && prime_prog_left_ <= uL(1e-12)) {
    // The priming volume is a whole number of steps: issue exactly that many.
    prime_prog_left_ = uL(0);
    due_steps_ = prime_steps_left_;
    acc_.reset();
    s.valid = false;
  }
}

double PumpCore::tokens_at(MonoTime t, Duration dt) const {
  // Refilled at the motor's rate since tokens_t_, capped at one cycle's worth (at least one).
  // Capping once at the end equals capping every cycle (a cap is never below the previous
  // cap less this cycle's refill), so the count does not depend on the cycles' lengths.
  const double per_s = static_cast<double>(board_.max_steps_per_second);
  return std::min(tokens_ + per_s * to_seconds(t - tokens_t_), std::max(1.0, per_s * to_seconds(dt)));
}

std::int64_t PumpCore::issue_steps(Now now, Duration dt) {
  const double tokens = tokens_at(now.mono, dt);
  if (!motor_may_step(state_) || due_steps_ <= 0 || !plan_) {
    if (due_steps_ > 0 && !motor_may_step(state_)) stop_delivery(now, kSystemUid);
    return 0;
  }
  // The motor's rate limit only delays steps (they stay due); every other limit drops them.
  std::int64_t k = std::min<std::int64_t>(due_steps_, static_cast<std::int64_t>(std::floor(tokens)));
  if (k <= 0) return 0;
  std::int64_t drop = 0;
  const Volume vps = step_volume();
  if (state_ == PumpState::priming && k > prime_steps_left_) {
    drop += k - prime_steps_left_;
    k = prime_steps_left_;
  }
  const auto in_reservoir = static_cast<std::int64_t>(std::floor(reservoir_ / vps + 1e-9));
  if (k > in_reservoir) {
    drop += k - std::max<std::int64_t>(0, in_reservoir);
    k = std::max<std::int64_t>(0, in_reservoir);
  }
  if (k > budget_.count) {
    drop += k - std::max<std::int64_t>(0, budget_.count);
    k = std::max<std::int64_t>(0, budget_.count);
    if (!budget_exhausted_logged_) {
      budget_exhausted_logged_ = true;
      emit_simple(EventType::budget_exhausted, now, kSystemUid);
    }
  }
  // S1: what would leave the tip must fit in the rolling 24 h; what does not is dropped.
  std::int64_t held = 0;
  if (k > 0) {
    const std::int64_t have = ledger_.sum_pg(now.mono);
    const std::int64_t limit = RollingLedger::to_pg_floor(plan_->max_daily_dose);
    // Every drug of the solution against its own limit (admixture: SPEC S1); `over` is the
    // admixture slot that does not fit, kDrugSlots for the primary drug.
    const bool mix = tracks_admix();
    std::size_t over = kDrugSlots;
    auto fits = [&](std::int64_t j) {
      AdmixMass am{};
      const Mass m = catheter_.mass_out_if_pushed(vps * static_cast<double>(j), reservoir_conc_, reservoir_admix_,
                                                  mix ? &am : nullptr);
      over = kDrugSlots;
      return have + RollingLedger::to_pg_ceil(m) <= limit && (!mix || admix_fits(now.mono, am, &over));
    };
    if (!fits(k)) {
      std::int64_t lo = 0;  // fits
      std::int64_t hi = k;  // does not fit
      while (hi - lo > 1) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        if (fits(mid)) lo = mid;
        else hi = mid;
      }
      held = k - lo;
      k = lo;
      (void)fits(lo + 1);  // which drug the first step held back would take past its limit
      limit_drug_ = over < kDrugSlots ? slots_[over].name : plan_->drug;
      daily_hold_ = true;
      raise_alarm(AlarmCode::daily_limit, now);
      alarms_[static_cast<std::size_t>(AlarmCode::daily_limit)].cause_present = true;
    } else if (daily_hold_) {
      daily_hold_ = false;
    }
  }
  drop += held;
  due_steps_ -= k + drop;
  if (drop > 0) {
    // The stretch counted these steps as pushed (its bridge walk): it starts anew.
    stretch_.valid = false;
    steps_dropped_ += static_cast<std::uint64_t>(drop);
    dropped_volume_ += vps * static_cast<double>(drop);
  }
  if (held > 0) {
    // Each running bolus takes its share of what S1 held back (BolusFinished reports it).
    const MassRate total = basal_rate_at(now.wall) + bolus_rate_total();
    const Mass held_mass = catheter_.tip_concentration(reservoir_conc_) * (vps * static_cast<double>(held));
    if (total > MassRate{}) {
      for (auto& b : boluses_) {
        if (b.active) b.held += held_mass * (b.rate / total);
      }
    }
  }
  if (k <= 0) return 0;
  const Volume v = vps * static_cast<double>(k);
  const Mass m = push_and_count(v, now.mono);
  reservoir_ -= v;
  if (reservoir_ < uL(0)) reservoir_ = uL(0);
  total_mass_ += m;
  total_volume_ += v;
  pumped_since_refill_ += v;
  budget_.count -= k;
  tokens_ = tokens - static_cast<double>(k);
  tokens_t_ = now.mono;
  steps_issued_ += static_cast<std::uint64_t>(k);
  steps_since_pulse_ += k;
  if (state_ == PumpState::priming) prime_steps_left_ -= k;
  return k;
}

void PumpCore::monitor_flow(Now now, std::int64_t steps) {
  // S5 flow monitoring: over >= 15 min of delivery (and enough steps for the encoder's
  // resolution), encoder-confirmed volume against commanded.  Commanded steps of this
  // cycle join the window after the comparison: their pulses can only come later.
  const auto spe = static_cast<std::int64_t>(board_.steps_per_encoder_pulse);
  if (spe > 0 && flow_time_ >= kFlowWindow && flow_cmd_steps_ >= kFlowMinPulses * spe) {
    const double cmd = static_cast<double>(flow_cmd_steps_);
    const double diff = std::fabs(static_cast<double>(flow_enc_steps_ - flow_cmd_steps_)) - static_cast<double>(spe);
    flow_deviating_ = diff > kFlowTolerance * cmd;
    set_cause(AlarmCode::flow_deviation, flow_deviating_, true, now);
    flow_time_ = Duration{0};
    flow_cmd_steps_ = 0;
    flow_enc_steps_ = 0;
  }
  if (motor_may_step(state_)) {
    flow_time_ += now.mono - last_tick_;
  } else if (flow_cmd_steps_ == 0) {
    flow_enc_steps_ = 0;  // pulses with nothing commanded in the window: not ours to judge
  }
  flow_cmd_steps_ += steps;
}

void PumpCore::update_battery(Now now, Duration dt, std::int64_t steps) {
  battery_.drain(dt, steps);
  set_cause(AlarmCode::battery_eos, battery_.eos(), true, now);
  if (battery_.eos() && next_state(state_, Trigger::battery_eos)) {
    stop_delivery(now, kSystemUid);
    (void)transition(Trigger::battery_eos, now, kSystemUid);
  }
}

void PumpCore::update_alarm_sound(Now now, Actuation& out) {
  // The loudest active alarm that is not silenced; silence lasts at most kSilence.
  BuzzerPattern p = BuzzerPattern::off;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = alarms_[i];
    if (!a.active || (a.acknowledged && now.mono < a.silenced_until)) continue;
    BuzzerPattern q = BuzzerPattern::low;
    switch (priority_of(static_cast<AlarmCode>(i))) {
      case AlarmPriority::high: q = BuzzerPattern::high; break;
      case AlarmPriority::medium: q = BuzzerPattern::medium; break;
      case AlarmPriority::low: q = BuzzerPattern::low; break;
    }
    if (static_cast<int>(q) > static_cast<int>(p)) p = q;
  }
  if (p != sound_pattern_) {
    sound_pattern_ = p;
    sound_since_ = now.mono;
  }
  out.buzzer_pattern = p;
  out.buzzer = buzzer_level(p, sound_since_, now.mono);
  // TestAlarm: its patterns own the buzzer for their 7 s, unless a high alarm sounds.
  if (alarm_test_since_) {
    const std::int64_t ms = (to_usec(now.mono) - to_usec(*alarm_test_since_)) / 1000;
    if (ms >= kAlarmTestMs || p == BuzzerPattern::high) {
      alarm_test_since_.reset();
    } else {
      out.buzzer_pattern = alarm_test_pattern(ms);
      out.buzzer = alarm_test_level(ms);
    }
  }
}

Mass PumpCore::push_and_count(Volume v, MonoTime now) {
  AdmixMass am{};
  const Mass m = catheter_.push(v, reservoir_conc_, reservoir_admix_, &am);
  ledger_.add(now, m);
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    if (slots_[k].name.empty()) continue;
    slots_[k].ledger.add(now, am[k]);
    slots_[k].total += am[k];
  }
  return m;
}

}  // namespace thecal
