#include "replay/checker.hpp"

#include <cmath>
#include <cstdlib>

namespace thecal::replay {

void Checker::begin_run(const BoardParams& b, const std::optional<TherapyPlan>& plan) {
  board_ = b;
  plan_ = plan;
  fault_since_.reset();
  mass_.clear();
  last_offset_.reset();
  patient_starts_.clear();
}

void Checker::clock(Now now) {
  const std::int64_t off = to_usec(now.wall) - to_usec(now.mono);
  if (last_offset_ && std::llabs(off - *last_offset_) > 1'000'000) {
    pending_jump_ = true;
    jump_at_ = now;
  }
  last_offset_ = off;
}

void Checker::command(const io::Recorded& rec, const Reply& reply, PumpState before, Now now) {
  const Command& c = rec.cmd;
  if ((c.kind == CommandKind::load_prescription || c.kind == CommandKind::refill) && rec.plan && reply.ok()) {
    plan_ = *rec.plan;
  }
  if (c.kind == CommandKind::patient_bolus && reply.ok()) {
    // S2: not when not infusing, not within lockout, not past max_per_day in 24 h.
    if (before != PumpState::infusing) violation("S2", now, "a patient bolus was granted while " + std::string(to_string(before)));
    if (plan_ && plan_->patient_bolus) {
      const auto& pb = *plan_->patient_bolus;
      if (!patient_starts_.empty() && now.mono - patient_starts_.back() < pb.lockout) {
        violation("S2", now, "a patient bolus was granted " +
                                 std::to_string((now.mono - patient_starts_.back()).count() / 1'000'000) +
                                 " s after the previous one, within the lockout");
      }
      std::uint32_t n = 1;
      for (const auto t : patient_starts_) n += (now.mono - t < days(1)) ? 1 : 0;
      if (n > pb.max_per_day) violation("S2", now, "patient bolus " + std::to_string(n) + " in 24 h, more than max_per_day");
    } else {
      violation("S2", now, "a patient bolus was granted without a patient-bolus rule");
    }
    patient_starts_.push_back(now.mono);
  }
}

void Checker::sensors(const SensorInputs& in, std::uint64_t cycle, Now /*now*/) {
  // Disconnection stops delivery too (S4: while delivering; a pump not delivering steps
  // nothing anyway, and a Start or Resume after it clears the window below).
  const bool fault = in.occlusion || in.disconnect || in.driver_fault || !in.hardware_ok;
  if (fault && !fault_since_) fault_since_ = cycle;
  if (!fault) fault_since_.reset();
}

/// `steps` commanded at cycle `cycle` (or over cycles up to it, fast-forwarded).
void Checker::steps(std::uint64_t first_cycle, std::uint64_t last_cycle, std::uint64_t n, Now now, bool resumed) {
  if (resumed) fault_since_.reset();  // a Resume after the stop may deliver again (S4)
  if (n > 0 && fault_since_ && last_cycle >= *fault_since_ + 2 && first_cycle >= *fault_since_) {
    violation("S4", now, std::to_string(n) + " steps more than 2 loop periods after a stop condition (cycle " +
                             std::to_string(*fault_since_) + ")");
  }
}

/// After each input and each jump: S1 (own rolling sum of the tip mass), S6, S8.
void Checker::status(const Status& s, Now now) {
  const double vps = to_uL(board_.volume_per_step);
  // S6: programmed = stepped + dropped + pending, within one step.
  const double stepped = static_cast<double>(s.steps_issued) * vps;
  const double diff = to_uL(s.programmed_volume) - stepped - to_uL(s.dropped_volume) - to_uL(s.pending_volume);
  if (std::fabs(diff) > vps + 1e-9) violation("S6", now, "programmed volume differs from the steps by " + std::to_string(diff) + " uL");
  // S1: the mass at the tip over the last 24 h from this checker's own samples of the
  // cumulative tip mass.  Between two samples the mass is not located in time, so the
  // sum counted is a lower bound (only mass certainly inside the window): a sum above the
  // limit is a certain violation.
  const double m = to_mcg(s.total_delivered_mass);
  mass_.push_back({now.mono, m});
  while (mass_.size() > 2 && mass_[1].t <= now.mono - days(1)) mass_.pop_front();
  const double lower = m - (mass_.front().t >= now.mono - days(1) ? mass_.front().m
                                                                  : (mass_.size() > 1 ? mass_[1].m : m));
  if (plan_ && lower > to_mcg(plan_->max_daily_dose) * (1 + 1e-9) + 1e-6) {
    violation("S1", now, std::to_string(lower) + " mcg at the tip within 24 h, limit " +
                             std::to_string(to_mcg(plan_->max_daily_dose)));
  }
}

void Checker::event(const Event& e) {
  if (e.type == EventType::wall_clock_jump) pending_jump_ = false;
  // S5: a high alarm cancels an active bolus, at once (the same cycle).
  const auto src = static_cast<std::size_t>(e.source);
  if (e.type == EventType::bolus_started && src < bolus_on_.size()) bolus_on_[src] = true;
  if ((e.type == EventType::bolus_finished || e.type == EventType::bolus_cancelled) && src < bolus_on_.size()) {
    bolus_on_[src] = false;
  }
  if (high_at_ && e.mono > *high_at_) {
    for (std::size_t i = 0; i < bolus_on_.size(); ++i) {
      if (bolus_on_[i]) {
        violation("S5", Now{e.mono, e.when},
                  std::string(to_string(static_cast<BolusSource>(i))) + " bolus still active after a high alarm");
        bolus_on_[i] = false;
      }
    }
    high_at_.reset();
  }
  if (e.type == EventType::alarm_raised && priority_of(e.alarm) == AlarmPriority::high) high_at_ = e.mono;
}

void Checker::end_run() {
  if (pending_jump_) violation("S8", jump_at_, "a wall-clock jump of more than 1 s was not logged");
  pending_jump_ = false;
  bolus_on_ = {};
  high_at_.reset();
}

void Checker::violation(std::string rule, Now now, std::string what) {
  if (out_.size() < 100) out_.push_back({std::move(rule), now.wall, std::move(what)});
}

}  // namespace thecal::replay
