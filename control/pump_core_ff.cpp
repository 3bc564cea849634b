// PumpCore: the exact fast-forward (issue 15 item 4, docs/therapy-model.md "Fast-forward").
//
// fast_forward() is `cycles` calls of tick() at `period` with an ideal plant, bit for bit.
// A cycle is either computed through tick() itself or, when it is provably quiet, jumped:
// a cycle is quiet when the cycle before it was computed and changed nothing but time
// (no event, no step, the same Fingerprint, the encoder already seen) and no instant at
// which something may act falls in it.  Those instants are: the next boundary of any kind
// (flex step, local midnight, UTC offset change, periodic dose, bolus end, timed suspend
// end, trial end, jump guard end, a stop of delivery's 48 h mark: S14), the next whole
// step the closed-form stretch makes due, the next whole token of the motor's rate limit
// while steps wait for it, the end of an alarm's silence or of an alarm test, the instant
// refill_unfinished or solution_expired comes due, a battery threshold, the end of the flow
// monitor's window, and, while the daily limit holds, every minute (the rolling ledger's
// buckets).
// Everything that accumulates per cycle is kept in closed form in tick() too (the stretch,
// the battery, the motor's tokens), or is an integer sum (flow window time), so jumping n
// quiet cycles leaves exactly the state n ticks would.
#include <algorithm>
#include <cmath>

#include "control/buzzer.hpp"
#include "control/pump_core.hpp"

namespace thecal {

namespace {
Duration offset_of(Now now) { return (now.wall - WallTime{}) - (now.mono - MonoTime{}); }
Now at(MonoTime t, Duration offset) { return {t, WallTime{} + (t - MonoTime{}) + offset}; }

/// The first n in [lo, hi] with pred(n) true, pred monotone (false ... true); hi + 1 if none.
template <class P>
std::int64_t first_true(std::int64_t lo, std::int64_t hi, P pred) {
  if (lo > hi || !pred(hi)) return hi + 1;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
}  // namespace

PumpCore::Fingerprint PumpCore::fingerprint() const {
  Fingerprint f;
  f.state = state_;
  f.due = due_steps_;
  f.dropped = steps_dropped_;
  f.daily_hold = daily_hold_;
  f.flow_deviating = flow_deviating_;
  f.sound = sound_pattern_;
  f.budget_logged = budget_exhausted_logged_;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = alarms_[i];
    f.alarms[i] = static_cast<std::uint8_t>((a.active ? 1U : 0U) | (a.acknowledged ? 2U : 0U) | (a.cause_present ? 4U : 0U));
  }
  for (std::size_t i = 0; i < boluses_.size(); ++i) {
    if (boluses_[i].active) f.bolus_bits |= 1U << i;
  }
  return f;
}

std::int64_t PumpCore::next_active_cycle(Now now, Duration period, std::int64_t max_n) const {
  std::int64_t n = max_n;
  // The first cycle whose time is at or after `t` (a cycle at time T handles instants <= T).
  auto consider = [&](MonoTime t) {
    if (t == MonoTime::max()) return;
    const Duration ahead = t - now.mono;
    const std::int64_t c = ahead <= period ? 1 : (ahead.count() + period.count() - 1) / period.count();
    n = std::min(n, c);
  };
  consider(next_boundary(last_, offset_of(now), true));
  if (due_steps_ > 0) {
    // Steps due and the last cycle issued none: they wait for the motor's rate limit alone
    // (tick() checks the tokens before any other limit), so the next cycle that may act is
    // the first with a whole token (a closed form of time, monotone).
    if (!motor_may_step(state_) || !plan_) return 1;
    n = std::min(n, first_true(1, n, [&](std::int64_t c) {
                   return std::floor(tokens_at(now.mono + period * c, period)) >= 1.0;
                 }));
    if (n <= 1) return 1;
  }
  for (const auto& a : alarms_) {
    if (a.active && a.acknowledged && a.silenced_until > now.mono) consider(a.silenced_until);
  }
  // Issue 17: the end of an alarm test, refill_unfinished, solution_expired.
  if (alarm_test_since_) consider(*alarm_test_since_ + msec(kAlarmTestMs));
  if (state_ == PumpState::refilling) consider(refill_began_ + kRefillUnfinished);
  if (const auto exp = solution_expires(); exp && *exp > now.wall) consider(now.mono + (*exp - now.wall));
  if (alarm_active(AlarmCode::daily_limit) || daily_hold_) {
    const std::int64_t minute = to_usec(RollingLedger::kBucket);
    const std::int64_t us = to_usec(now.mono);
    const std::int64_t m = us >= 0 ? us / minute : -((-us + minute - 1) / minute);
    consider(mono_us((m + 1) * minute));
  }
  // The flow monitor compares at the start of the first cycle whose window has run full.
  const auto spe = static_cast<std::int64_t>(board_.steps_per_encoder_pulse);
  if (motor_may_step(state_) && spe > 0 && flow_cmd_steps_ >= kFlowMinPulses * spe) {
    if (flow_time_ >= kFlowWindow) return 1;
    const Duration need = kFlowWindow - flow_time_;
    n = std::min(n, 1 + (need.count() + period.count() - 1) / period.count());
  }
  if (n <= 1) return 1;
  // A battery threshold (the drain is a closed form of time: monotone).
  const bool eri = battery_.eri();
  const bool eos = battery_.eos();
  n = std::min(n, first_true(1, n, [&](std::int64_t c) {
                 const double u = battery_.used_after(period * c);
                 return battery_.eri_at(u) != eri || battery_.eos_at(u) != eos;
               }));
  if (n <= 1) return 1;
  // The next whole step of the stretch (or the end of the priming volume).
  if (state_ == PumpState::priming || (state_ == PumpState::infusing && plan_)) {
    // The stretch must go on from last_ as it is (a boundary exactly at last_ changes the
    // rate only in the next cycle's integration: that cycle anchors the new stretch).
    const bool priming = state_ == PumpState::priming;
    const MassRate rate = priming ? MassRate{} : basal_rate_guarded(last_, offset_of(now)) + bolus_rate_total();
    if (!stretch_continues(last_, priming, rate)) return 1;
    n = std::min(n, first_true(1, n, [&](std::int64_t c) {
                   const Volume v = stretch_volume(now.mono + period * c);
                   if (stretch_.priming && stretch_.prime0 - v <= uL(1e-12)) return true;
                   return acc_.whole_in(stretch_.r0, v) > stretch_.whole;
                 }));
  }
  return std::max<std::int64_t>(1, n);
}

void PumpCore::skip_quiet(Now now, Duration period, std::int64_t n) {
  // What n quiet tick()s do: the heartbeat toggles, the stretch and the battery run on in
  // closed form, the flow window's time grows.  Nothing else changes (next_active_cycle).
  const Now end = at(now.mono + period * n, offset_of(now));
  if (n % 2 != 0) heartbeat_ = !heartbeat_;
  integrate(end);
  battery_.drain(end.mono - last_tick_, 0);
  if (motor_may_step(state_)) {
    flow_time_ += end.mono - last_tick_;
  } else if (flow_cmd_steps_ == 0) {
    flow_enc_steps_ = 0;
  }
  last_tick_ = end.mono;
}

FastForward PumpCore::fast_forward(Now now, Duration period, std::int64_t cycles, IdealPlant& plant, CycleLog* log) {
  FastForward r;
  if (log != nullptr) log->size = 0;
  r.now = now;
  if (period <= Duration{0}) return r;
  bool quiet = false;  // the last computed cycle changed nothing but time
  while (r.cycles < cycles) {
    if (quiet) {
      const std::int64_t c = next_active_cycle(r.now, period, cycles - r.cycles);
      if (c > 1) {
        skip_quiet(r.now, period, c - 1);
        r.now.mono += period * (c - 1);
        r.now.wall += period * (c - 1);
        r.cycles += c - 1;
        ++r.skips;
      }
    }
    const Fingerprint before = fingerprint();
    const std::uint64_t emitted = emitted_;
    r.now.mono += period;
    r.now.wall += period;
    tick(r.now, plant.in, r.last);
    plant.execute(r.last.steps, board_.steps_per_encoder_pulse);
    ++r.cycles;
    ++r.computed;
    r.steps += r.last.steps;
    quiet = r.last.steps == 0 && emitted_ == emitted && plant.in.encoder_pulses == last_encoder_ &&
            plant.in.bolus_button == bolus_button_was_ && fingerprint() == before;
    if (log != nullptr && (r.last.steps > 0 || sound_pattern_ != log->last_pattern)) {
      log->entries[log->size++] = {r.now, r.last.steps, sound_pattern_};
      log->last_pattern = sound_pattern_;
      if (log->size == CycleLog::kCapacity) break;
    }
    if (ev_count_ >= kEventCapacity / 2) break;
  }
  return r;
}

}  // namespace thecal
