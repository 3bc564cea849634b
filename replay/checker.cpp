#include "replay/checker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace thecal::replay {

namespace {

/// SPEC S4, S5, S12, S13 say which alarm has which priority; this checker keeps its own
/// table (the core's priority_of is what it checks).  The four SPEC leaves open (hardware
/// fault, lost state, storage fault, battery end of service) stop delivery: high.
int priority(AlarmCode c) {
  switch (c) {
    case AlarmCode::occlusion:
    case AlarmCode::disconnect:
    case AlarmCode::motor_stall:
    case AlarmCode::driver_fault:
    case AlarmCode::reservoir_empty:
    case AlarmCode::catheter_port_injection:
    case AlarmCode::hardware_fault:
    case AlarmCode::state_lost:
    case AlarmCode::storage_fault:
    case AlarmCode::battery_eos: return 3;
    case AlarmCode::reservoir_low:
    case AlarmCode::battery_eri:
    case AlarmCode::daily_limit:
    case AlarmCode::flow_deviation:
    case AlarmCode::refill_discrepancy:
    case AlarmCode::refill_unfinished:
    case AlarmCode::solution_expired: return 2;
    case AlarmCode::restart:
    case AlarmCode::prescription_rejected:
    case AlarmCode::trial_finished:
    case AlarmCode::count_: break;
  }
  return 1;
}

BuzzerPattern pattern_of(int prio) {
  switch (prio) {
    case 3: return BuzzerPattern::high;
    case 2: return BuzzerPattern::medium;
    case 1: return BuzzerPattern::low;
    default: return BuzzerPattern::off;
  }
}

const char* name_of(BuzzerPattern p) {
  switch (p) {
    case BuzzerPattern::high: return "high";
    case BuzzerPattern::medium: return "medium";
    case BuzzerPattern::low: return "low";
    case BuzzerPattern::off: break;
  }
  return "off";
}

bool within(double a, double b) { return std::fabs(a - b) <= Checker::kRelTol * std::max(std::fabs(a), std::fabs(b)) + Checker::kAbsTolMcg; }

constexpr double kEpsUl = 1e-9;  // a volume this small is no volume (far below a step)

}  // namespace

std::size_t Checker::drug_id(std::string_view name) {
  for (std::size_t i = 0; i < drugs_.size(); ++i) {
    if (drugs_[i].name == name) return i;
  }
  drugs_.push_back(Drug{std::string(name), std::nullopt, {}, 0.0, 0.0});
  return drugs_.size() - 1;
}

Checker::Solution Checker::solution_of(const TherapyPlan& p) {
  Solution sol;
  sol.primary = drug_id(p.drug.view());
  auto set = [&](std::size_t id, Concentration c) {
    if (sol.conc.size() <= id) sol.conc.resize(id + 1, 0.0);
    sol.conc[id] = to_mg_per_mL(c);  // mg/mL = mcg/uL
  };
  set(sol.primary, p.concentration);
  for (const auto& a : p.admixture) set(drug_id(a.name.view()), a.concentration);
  return sol;
}

void Checker::take_limits(const TherapyPlan& p) {
  drugs_[drug_id(p.drug.view())].limit_mcg = to_mcg(p.max_daily_dose);
  for (const auto& a : p.admixture) drugs_[drug_id(a.name.view())].limit_mcg = to_mcg(a.max_daily_dose);
}

void Checker::begin_run(const BoardParams& b, const std::optional<TherapyPlan>& plan) {
  board_ = b;
  plan_ = plan;
  fault_since_.reset();
  last_offset_.reset();
  patient_starts_.clear();
  drugs_.clear();
  line_.clear();
  reservoir_ = Solution{};
  reservoir_ul_ = 0.0;
  capacity_ul_ = 0.0;
  primary_total_ = 0.0;
  core_total0_ = 0.0;
  slots_seen_ = false;
  s3_reported_ = false;
  s5_reported_ = false;
  alarms_ = {};
  test_since_.reset();
  if (plan_) {
    take_limits(*plan_);
    reservoir_ = solution_of(*plan_);
    capacity_ul_ = to_uL(plan_->catheter_volume);
  }
}

void Checker::begin_run(const BoardParams& b, const CoreState& st) {
  begin_run(b, st.plan);
  seed(st, Duration{0});
  core_total0_ = to_mcg(st.total_mass);
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = st.alarms[i];
    alarms_[i].active = a.active;
    if (a.active && a.acknowledged && a.silenced_until != MonoTime{}) alarms_[i].acknowledged = a.silenced_until - kSilence;
  }
}

void Checker::seed(const CoreState& st, Duration shift) {
  if (st.plan) {
    plan_ = st.plan;
    take_limits(*plan_);
  }
  // The reservoir and the line as the core was restored to them: admixture concentrations
  // are by drug slot there, and the slots say which drug each is.
  auto from_core = [&](Concentration primary, const AdmixConc& mix) {
    Solution sol;
    sol.primary = st.plan ? drug_id(st.plan->drug.view()) : drug_id("");
    sol.conc.resize(sol.primary + 1, 0.0);
    sol.conc[sol.primary] = to_mg_per_mL(primary);
    for (std::size_t k = 0; k < kDrugSlots; ++k) {
      if (mix[k] <= Concentration{} || st.drug_slots[k].name.empty()) continue;
      const std::size_t id = drug_id(st.drug_slots[k].name.view());
      if (sol.conc.size() <= id) sol.conc.resize(id + 1, 0.0);
      sol.conc[id] = to_mg_per_mL(mix[k]);
    }
    return sol;
  };
  reservoir_ = from_core(st.reservoir_conc, st.reservoir_admix);
  reservoir_ul_ = to_uL(st.reservoir);
  capacity_ul_ = to_uL(st.catheter_capacity);
  line_.clear();
  for (const auto& seg : st.catheter) line_.push_back({to_uL(seg.volume), from_core(seg.concentration, seg.admix)});
  // A drug that left the plan keeps the limit of the last plan that had it.
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    if (st.drug_slots[k].name.empty()) continue;
    auto& d = drugs_[drug_id(st.drug_slots[k].name.view())];
    if (!d.limit_mcg) d.limit_mcg = to_mcg(st.drug_slots[k].limit);
  }
  // The rolling 24 h before the run: known to the minute only (the core's ledger).  Each
  // minute's mass is placed at the minute's last microsecond, as late as it can have been,
  // so it stays in this checker's window exactly as long as in the core's (never longer).
  auto history = [&](std::size_t id, const std::array<RollingLedger::Bucket, RollingLedger::kBuckets>& led) {
    drugs_[id].window.clear();
    drugs_[id].sum = 0.0;
    std::vector<std::pair<MonoTime, double>> h;
    for (const auto& bk : led) {
      if (bk.index == RollingLedger::kEmpty || bk.pg <= 0) continue;
      h.emplace_back(mono_us((bk.index + 1) * to_usec(minutes(1)) - 1) + shift, static_cast<double>(bk.pg) / 1e6);
    }
    std::sort(h.begin(), h.end());
    for (const auto& [t, m] : h) {
      drugs_[id].window.emplace_back(t, m);
      drugs_[id].sum += m;
    }
  };
  if (st.plan) history(drug_id(st.plan->drug.view()), st.ledger);
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    if (!st.drug_slots[k].name.empty()) history(drug_id(st.drug_slots[k].name.view()), st.drug_slots[k].ledger);
  }
}

double Checker::contents() const {
  double v = 0.0;
  for (const auto& s : line_) v += s.ul;
  return v;
}

void Checker::set_capacity(double ul) {
  // A shorter line keeps what fits; what is cut off at the tip reaches nobody.
  capacity_ul_ = ul;
  double excess = contents() - capacity_ul_;
  while (excess > kEpsUl && !line_.empty()) {
    const double take = std::min(excess, line_.front().ul);
    line_.front().ul -= take;
    excess -= take;
    if (line_.front().ul <= kEpsUl) line_.pop_front();
  }
}

void Checker::push(double ul, MonoTime t, Now now) {
  if (ul <= 0) return;
  if (!line_.empty() && line_.back().sol == reservoir_) {
    line_.back().ul += ul;
  } else {
    line_.push_back({ul, reservoir_});
  }
  reservoir_ul_ = std::max(0.0, reservoir_ul_ - ul);
  // SPEC S3: what leaves the tip is what was in the line, oldest first.
  double excess = contents() - capacity_ul_;
  std::vector<double> out;
  while (excess > kEpsUl && !line_.empty()) {
    auto& tip = line_.front();
    const double take = std::min(excess, tip.ul);
    if (out.size() < tip.sol.conc.size()) out.resize(tip.sol.conc.size(), 0.0);
    for (std::size_t i = 0; i < tip.sol.conc.size(); ++i) out[i] += tip.sol.conc[i] * take;
    if (tip.sol.primary < tip.sol.conc.size()) primary_total_ += tip.sol.conc[tip.sol.primary] * take;
    tip.ul -= take;
    excess -= take;
    if (tip.ul <= kEpsUl) line_.pop_front();
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] > 0) add_mass(i, out[i], t, now);
  }
}

void Checker::add_mass(std::size_t id, double m, MonoTime t, Now now) {
  auto& d = drugs_[id];
  d.total += m;
  d.window.emplace_back(t, m);
  d.sum += m;
  // The window ending at t: what left the tip less than 24 h before it.
  bool popped = false;
  while (!d.window.empty() && d.window.front().first <= t - days(1)) {
    d.window.pop_front();
    popped = true;
  }
  if (popped) {  // a fresh sum: no drift from adding and taking away
    d.sum = 0.0;
    for (const auto& [when, mass] : d.window) d.sum += mass;
  }
  // SPEC S1: for every drug of the solution, against its own limit.
  if (d.limit_mcg && d.sum > *d.limit_mcg * (1 + kRelTol) + kAbsTolMcg) {
    violation("S1", now, std::to_string(d.sum) + " mcg of " + d.name + " at the tip within 24 h, limit " +
                             std::to_string(*d.limit_mcg) + " mcg");
    d.window.clear();  // report each crossing once, then count anew
    d.sum = 0.0;
  }
}

double Checker::window_mcg(std::string_view drug) const {
  for (const auto& d : drugs_) {
    if (d.name == drug) return d.sum;
  }
  return 0.0;
}

double Checker::total_mcg(std::string_view drug) const {
  for (const auto& d : drugs_) {
    if (d.name == drug) return d.total;
  }
  return 0.0;
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
  if (reply.ok()) {
    switch (c.kind) {
      case CommandKind::load_prescription:
        if (rec.plan) {
          // A first prescription, or an empty reservoir, takes the new solution; otherwise
          // the reservoir keeps what it holds (a change of solution needs a Refill).
          const bool first = !plan_.has_value();
          plan_ = *rec.plan;
          take_limits(*plan_);
          set_capacity(to_uL(plan_->catheter_volume));
          if (first || reservoir_ul_ <= 0.0) reservoir_ = solution_of(*plan_);
        }
        break;
      case CommandKind::refill:
        if (rec.plan) {
          plan_ = *rec.plan;
          set_capacity(to_uL(plan_->catheter_volume));
        }
        if (plan_) {
          take_limits(*plan_);
          reservoir_ = solution_of(*plan_);  // the line still holds the old solution (S3)
        }
        reservoir_ul_ = to_uL(c.volume);
        break;
      case CommandKind::test_alarm: test_since_ = now.mono; break;
      case CommandKind::revise_catheter:
        set_capacity(to_uL(c.volume));
        line_.clear();  // the new catheter holds no drug until primed (S3)
        break;
      case CommandKind::import_therapy:
        if (rec.state) {
          const CoreState& in = *rec.state;
          seed(in, now.mono - in.mono);
          reservoir_ul_ = 0.0;  // a new unit's reservoir is empty until its first Refill
          if (plan_) reservoir_ = solution_of(*plan_);
          reseed_alarms_ = true;
        }
        break;
      default: break;
    }
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

void Checker::cycle(Now now, std::uint32_t steps, BuzzerPattern pattern) {
  if (steps > 0) push(to_uL(board_.volume_per_step) * static_cast<double>(steps), now.mono, now);
  sound(now, pattern);
}

BuzzerPattern Checker::expected_sound(MonoTime t) const {
  // SPEC S5: the loudest active alarm sounds, unless acknowledged less than kSilence ago.
  int p = 0;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = alarms_[i];
    if (!a.active || (a.acknowledged && t < *a.acknowledged + kSilence)) continue;
    p = std::max(p, priority(static_cast<AlarmCode>(i)));
  }
  return pattern_of(p);
}

void Checker::sound(Now now, BuzzerPattern pattern) {
  const BuzzerPattern want = expected_sound(now.mono);
  if (test_since_ && (now.mono >= *test_since_ + kAlarmTest || want == BuzzerPattern::high)) test_since_.reset();
  if (test_since_) return;  // TestAlarm's own patterns (SPEC 4)
  if (pattern == want) {
    s5_reported_ = false;
    return;
  }
  if (s5_reported_) return;  // one report per wrong stretch
  s5_reported_ = true;
  std::string why;
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto& a = alarms_[i];
    if (!a.active) continue;
    why += std::string(why.empty() ? "" : ", ") + std::string(to_string(static_cast<AlarmCode>(i)));
    if (a.acknowledged) {
      why += now.mono < *a.acknowledged + kSilence ? " (silenced)" : " (acknowledged over 2 min ago)";
    }
  }
  violation("S5", now, std::string("the buzzer sounds the ") + name_of(pattern) + " pattern where the " + name_of(want) +
                           " one is due (active: " + (why.empty() ? "none" : why) + ")");
}

/// After each input and each jump: S3 (the core's tip figures against this checker's own
/// line), S6.
void Checker::status(const Status& s, Now now) {
  const double vps = to_uL(board_.volume_per_step);
  // S6: programmed = stepped + dropped + pending, within one step.
  const double stepped = static_cast<double>(s.steps_issued) * vps;
  const double diff = to_uL(s.programmed_volume) - stepped - to_uL(s.dropped_volume) - to_uL(s.pending_volume);
  if (std::fabs(diff) > vps + 1e-9) violation("S6", now, "programmed volume differs from the steps by " + std::to_string(diff) + " uL");
  if (reseed_alarms_) {
    reseed_alarms_ = false;
    for (std::size_t i = 0; i < kAlarmCount; ++i) {
      const auto& a = s.alarms[i];
      alarms_[i].active = a.active;
      alarms_[i].acknowledged.reset();
      if (a.active && a.acknowledged && a.silenced_until != MonoTime{}) alarms_[i].acknowledged = a.silenced_until - kSilence;
    }
  }
  if (s3_reported_) return;  // once a run: after the first difference the rest follows from it
  // S3: the primary drug's mass at the tip since the run began, and each admixture drug's.
  const double core = to_mcg(s.total_delivered_mass) - core_total0_;
  if (!within(core, primary_total_)) {
    s3_reported_ = true;
    violation("S3", now, "the pump counts " + std::to_string(core) + " mcg at the tip since the run began; the solution in its catheter gives " +
                             std::to_string(primary_total_) + " mcg");
    return;
  }
  for (std::size_t k = 0; k < kDrugSlots; ++k) {
    const std::string name(s.drug_totals[k].name.view());
    if (!slots_seen_) {
      slot_names_[k] = name;
      slot_stable_[k] = true;
    } else if (slot_names_[k] != name) {
      slot_stable_[k] = false;
    }
    if (!slot_stable_[k] || name.empty()) continue;
    const double mine = total_mcg(name);
    if (!within(to_mcg(s.drug_totals[k].total), mine)) {
      s3_reported_ = true;
      violation("S3", now, "the pump counts " + std::to_string(to_mcg(s.drug_totals[k].total)) + " mcg of " + name +
                               " at the tip since the run began; the solution in its catheter gives " + std::to_string(mine) + " mcg");
      return;
    }
  }
  slots_seen_ = true;
  // The catheter is primed when less than one step of it is empty (the motor's resolution).
  const double room = capacity_ul_ - contents();
  if (plan_ && std::fabs(room - vps) > 1e-6 && s.catheter_primed != (room <= vps)) {
    s3_reported_ = true;
    violation("S3", now, std::string("the pump reports the catheter ") + (s.catheter_primed ? "primed" : "not primed") +
                             " with " + std::to_string(room) + " uL of it empty");
    return;
  }
  // The pump's volume rate follows the concentration at the tip, so that the mass rate
  // holds through a change of solution (the bridge).
  if (s.state == PumpState::infusing && s.mass_rate > MassRate{} && !line_.empty() && room <= kEpsUl) {
    const auto& tip = line_.front().sol;
    const double c = tip.primary < tip.conc.size() ? tip.conc[tip.primary] : 0.0;
    const double got = to_uL_per_h(s.pump_rate) * c;
    const double want = to_mcg_per_h(s.mass_rate);
    if (std::fabs(got - want) > kRelTol * want + kAbsTolMcg) {
      s3_reported_ = true;
      violation("S3", now, "the pump runs at " + std::to_string(to_uL_per_h(s.pump_rate)) + " uL/h for " +
                               std::to_string(want) + " mcg/h at the tip, where the solution at the tip (" + std::to_string(c * 1000) +
                               " mcg/mL) needs " + std::to_string(c > 0 ? want / c : 0.0) + " uL/h");
    }
  }
}

void Checker::event(const Event& e) {
  if (e.type == EventType::wall_clock_jump) pending_jump_ = false;
  const auto code = static_cast<std::size_t>(e.alarm);
  if (code < kAlarmCount) {
    if (e.type == EventType::alarm_raised) alarms_[code] = Alarm{true, std::nullopt};
    if (e.type == EventType::alarm_cleared) alarms_[code] = Alarm{};
    if (e.type == EventType::alarm_acknowledged) alarms_[code].acknowledged = e.mono;
  }
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
  if (e.type == EventType::alarm_raised && priority(e.alarm) == 3) high_at_ = e.mono;
}

void Checker::end_run() {
  if (pending_jump_) violation("S8", jump_at_, "a wall-clock jump of more than 1 s was not logged");
  pending_jump_ = false;
  bolus_on_ = {};
  high_at_.reset();
  test_since_.reset();
}

void Checker::violation(std::string rule, Now now, std::string what) {
  if (out_.size() < 100) out_.push_back({std::move(rule), now.wall, std::move(what)});
}

}  // namespace thecal::replay
