// The dosing core: the whole pump's logic as a pure, deterministic object.
//
// Time and inputs go in, motor commands, state and events come out.  It reads no clock,
// does no I/O and does not allocate: the daemon's dosing thread calls
//
//   for each command received:  reply = core.apply(cmd, now)
//   every loop period:          core.tick(now, sensors, actuation)
//   then:                       core.drain_events(f); core.status()
//
// and the unit tests do the same with made-up time, so every rule of SPEC section 5 is
// tested without threads, clocks or hardware.
//
// Time (SPEC S8).  Dosing, lockouts, the rolling 24 h, suspend timers, bolus durations
// and the trial-end guard run on `now.mono`.  `now.wall` only picks the flex step and the
// periodic doses (through the plan's UTC offset table) and stamps events.  A change of
// (wall - mono) by more than kWallJumpThreshold between calls is a wall-clock jump: logged,
// and it can never cause extra delivery (see docs/therapy-model.md, "Clocks").
//
// Cycle length.  tick() integrates the therapy piecewise between "boundaries" (flex step
// changes, local midnight, UTC offset changes, periodic doses, bolus ends, the end of a
// timed suspend, the trial end, a stop of delivery's 48 h mark), so a 1 ms cycle and a 20 s
// cycle program the same volume (within a step) as long as max_steps_per_second allows it.
// Between boundaries each stretch of constant rate is integrated in closed form from its
// start (Stretch), and the battery and the motor's token bucket are closed forms too:
// cutting time into more cycles changes nothing, which fast_forward() uses to jump the
// cycles in which nothing happens.  Commands take effect at the `now` they are applied
// with: apply() first integrates up to it with the old settings.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include <boost/container/static_vector.hpp>

#include "control/alarm.hpp"
#include "control/battery_model.hpp"
#include "control/board_params.hpp"
#include "control/catheter.hpp"
#include "control/command.hpp"
#include "control/core_state.hpp"
#include "control/event.hpp"
#include "control/io_types.hpp"
#include "control/pump_state.hpp"
#include "control/rolling_ledger.hpp"
#include "control/state_machine.hpp"
#include "control/status.hpp"
#include "control/step_accumulator.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"

namespace thecal {

/// The plant the fast-forward assumes (docs/therapy-model.md, "Fast-forward"): every
/// commanded step is executed before the next cycle and the encoder reports exactly
/// floor(steps / steps_per_encoder_pulse) pulses; every other input is held constant.
struct IdealPlant {
  SensorInputs in;
  std::uint64_t steps = 0;  // steps executed since the plant's encoder count was zero
  void execute(std::uint32_t k, std::uint32_t steps_per_pulse) {
    steps += k;
    if (steps_per_pulse > 0) in.encoder_pulses = steps / steps_per_pulse;
  }
};

/// The computed cycles of a fast-forward that stepped or changed the alarms' buzzer pattern
/// (Status::buzzer_pattern: the output's, except while TestAlarm's own patterns play), for
/// an observer that needs each step's time (thecal-replay's independent checker, S1/S3/S5).
/// Opt-in: fast_forward fills it only when given one, and returns early when it is full.
struct CycleLog {
  struct Entry {
    Now now{};
    std::uint32_t steps = 0;
    BuzzerPattern pattern = BuzzerPattern::off;
  };
  static constexpr std::size_t kCapacity = 64;
  std::array<Entry, kCapacity> entries{};
  std::size_t size = 0;
  BuzzerPattern last_pattern = BuzzerPattern::off;  // the pattern before the first entry
};

/// What PumpCore::fast_forward did.
struct FastForward {
  std::int64_t cycles = 0;          // cycles advanced (fewer than asked only to let events drain)
  std::uint64_t steps = 0;          // steps commanded over them
  std::uint64_t computed = 0;       // cycles computed one by one through tick()
  std::uint64_t skips = 0;          // quiet stretches jumped in closed form
  Now now{};                        // the time of the last cycle
  Actuation last{};                 // the last cycle's actuation
  [[nodiscard]] std::uint64_t iterations() const { return computed + skips; }
};

class PumpCore {
 public:
  static constexpr std::size_t kEventCapacity = 256;
  static constexpr std::size_t kMaxPatientBolusesPerDay = 64;
  /// Two firings of one periodic dose are never closer than this on the monotonic clock
  /// (24 h less the largest DST shift in the tz database, 2 h).
  static constexpr Duration kPeriodicMinSpacing = hours(22);
  static constexpr Duration kWallJumpThreshold = seconds(1);
  static constexpr Duration kSilence = minutes(2);
  static constexpr Duration kFlowWindow = minutes(15);
  static constexpr double kFlowTolerance = 0.10;
  /// The flow check needs this many encoder pulses' worth of commanded steps in its
  /// window, so that one pulse of quantization cannot fake a 10 % deviation.
  static constexpr std::int64_t kFlowMinPulses = 30;
  static constexpr Duration kSlowStatusPeriod = seconds(1);
  static constexpr std::size_t kMaxSegmentsPerCycle = 256;
  /// A refill session open this long raises refill_unfinished (S12).
  static constexpr Duration kRefillUnfinished = minutes(15);
  /// A stop of delivery is a risk_event (kRiskLongStop) at the instant it reaches this on
  /// the monotonic clock, and again (kRiskLongStopEnded) when delivery resumes (S14).
  static constexpr Duration kLongStop = hours(48);
  /// ReviseCatheter's upper bound (SPEC 4).
  static constexpr double kMaxCatheterUl = 2000.0;

  PumpCore(const BoardParams& board, Now now);
  PumpCore(const PumpCore&) = delete;
  PumpCore& operator=(const PumpCore&) = delete;

  /// Applies one programming command.  A refused command changes nothing (it is logged as
  /// a command_refused event).
  Reply apply(const Command& cmd, Now now);

  /// One control cycle: reads `in`, decides, and fills `out`.
  void tick(Now now, const SensorInputs& in, Actuation& out);

  /// Exact fast-forward (issue 15 item 4): the same as `cycles` calls of
  ///   now += period (both clocks);  tick(now, plant.in, out);  plant.execute(out.steps, spe)
  /// bit for bit in the state, the events (with their times) and the steps, with the plant
  /// ideal and its inputs otherwise constant (IdealPlant).  Cycles in which nothing can
  /// happen are jumped in closed form; the others (steps due, boundaries, alarms, ...) go
  /// through tick() itself, so the cost grows with the events, not with the interval.  It
  /// returns early (after a computed cycle) once half the event buffer is pending, so
  /// that the caller can drain events; FastForward::cycles says how far it got.  Status is
  /// exact except its once-a-second fields (refill_due, next_patient_bolus), computed at
  /// the fast-forward's computed cycles rather than every second.
  /// With `log`, every computed cycle that stepped or changed the buzzer's pattern goes into
  /// it (cleared first), and it returns early, after a computed cycle, once the log is full.
  FastForward fast_forward(Now now, Duration period, std::int64_t cycles, IdealPlant& plant,
                           CycleLog* log = nullptr);

  [[nodiscard]] const Status& status() const { return status_; }
  [[nodiscard]] PumpState state() const { return state_; }

  /// Hands every pending event to `f(const Event&)`, oldest first, and forgets them.
  template <class F>
  void drain_events(F&& f) {
    while (ev_count_ > 0) {
      f(events_[ev_head_]);
      ev_head_ = (ev_head_ + 1) % kEventCapacity;
      --ev_count_;
    }
  }
  [[nodiscard]] std::uint64_t events_dropped() const { return events_dropped_; }
  /// Events emitted and not drained yet.
  [[nodiscard]] std::size_t events_pending() const { return ev_count_; }

  /// Steps the journal still allows (SPEC S7): the loop never steps past it.
  [[nodiscard]] Steps budget() const { return budget_; }
  [[nodiscard]] const BoardParams& board() const { return board_; }

  /// Copies the whole persistent state (control/core_state.hpp) into `out`, as of `now`
  /// (the time of the last apply/tick).  No allocation: safe in the dosing thread.
  void export_state(CoreState& out, Now now) const;
  /// Replaces the whole state with `in` (journal recovery, therapy import), its monotonic
  /// times moved onto the new clock by `clock` (never later than they really were: see
  /// RestoreClock), then counts `unconfirmed_steps` as pumped at `clock.now`: reservoir
  /// down, catheter pushed, the mass leaving the tip into the rolling 24 h (SPEC S7).
  /// A pump that was priming comes back suspended; the budget starts at zero.  Main
  /// thread only, before the dosing loop runs.
  RestoreReport restore_state(const CoreState& in, const RestoreClock& clock, std::int64_t unconfirmed_steps);

  /// An exact image of the core (control/core_state.hpp, CoreImage): every field its
  /// future depends on, so that restore_image() then ticking gives bit for bit what this
  /// core gives.  Only at a cycle boundary with no event pending (drain them first): false,
  /// and nothing written, otherwise.  No allocation: the caller owns `out` (the dosing
  /// thread fills one the main thread preallocated, docs/recorder.md).
  bool export_image(CoreImage& out) const;
  /// Replaces the whole core with `im`, exactly (no clock shift, nothing dropped, no event):
  /// the flight recorder's replay from a mid-run snapshot.  The board must be the image's.
  void restore_image(const CoreImage& im);

  /// The plan in force (nullptr without one).
  [[nodiscard]] const TherapyPlan* plan() const { return plan_ ? &*plan_ : nullptr; }
  [[nodiscard]] const RollingLedger& ledger() const { return ledger_; }
  /// Admixture drug slots (SPEC S1): which drug each slot of the catheter's AdmixConc is,
  /// its rolling-24 h limit and ledger.  A slot stays bound to its drug while the drug is
  /// in the plan, the reservoir, the catheter or the rolling 24 h.
  struct DrugSlot {
    FixedString<32> name;  // empty: free
    Mass limit;            // max_daily_dose of the last plan that had this drug
    RollingLedger ledger;
    Mass total;            // at the tip since the slot took this drug (runtime only)
  };
  [[nodiscard]] const std::array<DrugSlot, kDrugSlots>& drug_slots() const { return slots_; }
  [[nodiscard]] const Catheter& catheter() const { return catheter_; }

 private:
  struct ActiveBolus {
    bool active = false;
    Mass dose;
    MassRate rate;
    MonoTime start;
    MonoTime end;
    Mass programmed;  // mass programmed at the tip so far
    Mass held;        // its share of what S1 held back
    std::uint32_t uid = kSystemUid;
  };

  /// A stretch of constant rate, integrated in closed form from its start (anchor) so
  /// that the steps and the accumulator's fraction depend only on the time reached, never
  /// on how the stretch was cut into cycles: tick() and fast_forward() share it.
  struct Stretch {
    bool valid = false;
    bool priming = false;
    MonoTime t0{};       // anchor
    MonoTime t_end{};    // integrated up to here
    MassRate rate;       // infusing: total mass rate at the tip
    Concentration conc;  // reservoir concentration at t0
    double r0 = 0.0;     // accumulator remainder at t0
    Volume pv0;          // programmed_volume_ at t0
    Volume skip0;        // pending volume at t0
    Volume prime0;       // prime_prog_left_ at t0
    std::array<Mass, 3> bp0{};  // boluses' programmed mass at t0
    std::int64_t whole = 0;     // whole steps added since t0
    double r_end = 0.0;         // accumulator remainder left at t_end
    Catheter cath;              // the catheter as it was at t0
  };
  /// What a cycle may change that is not an event or a step (fast-forward's quiet test).
  struct Fingerprint {
    PumpState state = PumpState::idle;
    std::int64_t due = 0;
    std::uint64_t dropped = 0;
    bool daily_hold = false;
    bool flow_deviating = false;
    BuzzerPattern sound = BuzzerPattern::off;
    bool budget_logged = false;
    std::array<std::uint8_t, kAlarmCount> alarms{};  // active, acknowledged, cause bits
    std::uint32_t bolus_bits = 0;
    bool operator==(const Fingerprint&) const = default;
  };

  // ---- commands ----
  Reply do_load(const Command& cmd, Now now);
  Reply do_prime(const Command& cmd, Now now);
  Reply do_start_resume(const Command& cmd, Now now, Trigger trig);
  Reply do_suspend(const Command& cmd, Now now);
  Reply do_bolus(const Command& cmd, Now now, BolusSource src);
  Reply do_cancel_bolus(const Command& cmd, Now now);
  Reply do_refill(const Command& cmd, Now now);
  Reply do_acknowledge(const Command& cmd, Now now);
  Reply do_replace_battery(const Command& cmd, Now now);
  Reply do_import(const Command& cmd, Now now);
  Reply do_export(const Command& cmd, Now now);
  Reply do_raise_alarm(const Command& cmd, Now now);
  Reply do_begin_refill(const Command& cmd, Now now);
  Reply do_cancel_refill(const Command& cmd, Now now);
  Reply do_revise_catheter(const Command& cmd, Now now);
  Reply do_test_alarm(const Command& cmd, Now now);
  /// Leaves a refill session for the state kept at BeginRefill (suspended instead of
  /// infusing after a change of drug; the high-alarm state if a high alarm stands).
  void end_refill_session(Now now, std::uint32_t uid, bool drug_change);
  /// A prescription's catheter volume must be the revised one after ReviseCatheter.
  [[nodiscard]] std::optional<FixedString<160>> catheter_mismatch(const TherapyPlan& p) const;
  /// Last fill + the plan's max_in_reservoir (S13); none without a fill or a limit.
  [[nodiscard]] std::optional<WallTime> solution_expires() const;
  /// refill_unfinished and solution_expired, from time (every tick and after a refill).
  void update_timed_alarms(Now now);
  Reply refuse(const Command& cmd, Now now, Refusal why, std::string_view message);
  Reply refuse_state(const Command& cmd, Now now, Trigger t);
  /// Checks shared by Start and Resume: plan, catheter, reservoir, alarms, trial.
  [[nodiscard]] std::optional<std::pair<Refusal, std::string_view>> delivery_guard(Now now) const;
  [[nodiscard]] static std::optional<std::string_view> plan_problem(const TherapyPlan& p);
  // ---- admixture (control/pump_core.cpp) ----
  using SlotMap = std::array<std::uint8_t, kMaxAdmixture>;  // plan admixture[i] -> slot
  /// Binds `p`'s admixture drugs to slots (their own, else free ones); why not, if it
  /// cannot (too many drugs still counted, a drug changing between primary and admixture).
  [[nodiscard]] std::optional<std::string_view> bind_slots(const TherapyPlan& p, SlotMap& out, Now now) const;
  /// Takes the binding: names and limits into the slots; returns `p`'s solution by slot.
  AdmixConc take_slots(const TherapyPlan& p, const SlotMap& map);
  /// Whether every admixture drug's rolling 24 h plus `m` (by slot) is within its limit;
  /// the first drug that would cross goes to `*over` (when not null).
  [[nodiscard]] bool admix_fits(MonoTime now, const AdmixMass& m, std::size_t* over) const;
  /// Whether any admixture drug is counted (none: the primary alone, as before issue 16).
  [[nodiscard]] bool tracks_admix() const {
    return std::any_of(slots_.begin(), slots_.end(), [](const DrugSlot& d) { return !d.name.empty(); });
  }
  /// Pushes `v` into the catheter from the reservoir and counts what leaves the tip, for
  /// every drug, in the rolling 24 h; returns the primary drug's mass.
  Mass push_and_count(Volume v, MonoTime now);

  // ---- the cycle ----
  void detect_wall_jump(Now now);
  void supervise(Now now, const SensorInputs& in);
  void integrate(Now now);
  void on_instant(MonoTime t, Duration offset);
  /// The next instant after `t` at which the therapy changes; with `any_state`, every
  /// instant at which on_instant() may act, whatever the state (fast-forward).
  [[nodiscard]] MonoTime next_boundary(MonoTime t, Duration offset, bool any_state = false) const;
  void integrate_segment(MonoTime t0, MonoTime t1, Duration offset);
  [[nodiscard]] bool stretch_continues(MonoTime t0, bool priming, MassRate rate) const;
  void anchor_stretch(MonoTime t0, bool priming, MassRate rate);
  [[nodiscard]] Volume stretch_volume(MonoTime t) const;
  [[nodiscard]] double tokens_at(MonoTime t, Duration dt) const;
  // ---- fast-forward (control/pump_core_ff.cpp) ----
  [[nodiscard]] Fingerprint fingerprint() const;
  /// Cycles from `now` (1-based, at most `max_n`) to the first one that may act.
  [[nodiscard]] std::int64_t next_active_cycle(Now now, Duration period, std::int64_t max_n) const;
  /// Advances over `n` quiet cycles in closed form.
  void skip_quiet(Now now, Duration period, std::int64_t n);
  std::int64_t issue_steps(Now now, Duration dt);
  void monitor_flow(Now now, std::int64_t pulses_delta);
  void update_battery(Now now, Duration dt, std::int64_t steps);
  void update_alarm_sound(Now now, Actuation& out);

  // ---- helpers ----
  void emit(const Event& e);
  [[nodiscard]] Event make_event(EventType t, MonoTime mono, WallTime wall, std::uint32_t uid) const;
  void emit_simple(EventType t, Now now, std::uint32_t uid);
  /// Takes the transition for `t` if the table has one; returns whether it did.
  bool transition(Trigger t, Now now, std::uint32_t uid);
  /// Every change of state goes through here: the state_changed event and the long-stop
  /// bookkeeping of S14 (a stop begins on leaving `infusing`, ends on entering it).
  void set_state(PumpState to, Now now, std::uint32_t uid);
  void raise_alarm(AlarmCode c, Now now);
  void clear_alarm(AlarmCode c, Now now);
  void set_cause(AlarmCode c, bool present, bool may_raise, Now now);
  [[nodiscard]] bool alarm_active(AlarmCode c) const { return alarms_[static_cast<std::size_t>(c)].active; }
  [[nodiscard]] bool any_high_alarm() const;
  /// Stop of delivery for any reason: drops what is due (not owed), cancels boluses.
  void stop_delivery(Now now, std::uint32_t uid);
  void finish_bolus(BolusSource s, Now now, std::uint32_t uid, bool cancelled);
  [[nodiscard]] MassRate basal_rate_at(WallTime w) const;
  /// The basal rate at monotonic `t` with wall offset `offset`; for 24 h after a wall-clock
  /// jump, never more than the rate by the clock before the jump (S8: no extra delivery).
  [[nodiscard]] MassRate basal_rate_guarded(MonoTime t, Duration offset) const;
  [[nodiscard]] MassRate bolus_rate_total() const;
  [[nodiscard]] Mass bolus_mass_remaining() const;
  [[nodiscard]] Volume pending_volume() const;
  [[nodiscard]] Mass planned_daily_mass() const;
  [[nodiscard]] WallTime to_wall(MonoTime t, Now now) const { return now.wall + (t - now.mono); }
  void rebase_periodic(WallTime w);
  void reset_trial_guard(Now now);
  void prune_patient_history(MonoTime now);
  [[nodiscard]] Volume step_volume() const { return board_.volume_per_step; }
  /// The priming volume not yet stepped (prime_steps_left_ counts every step of the priming
  /// not yet issued; prime_prog_left_ is part of the same volume, not an addition to it).
  [[nodiscard]] Volume prime_left() const {
    return step_volume() * static_cast<double>(std::max<std::int64_t>(0, prime_steps_left_));
  }
  void publish(Now now, bool slow);
  /// The persistent fields of `in` (restore_state and restore_image), monotonic times moved
  /// by `shift`; the ledgers as restore_state keeps them.
  void restore_fields(const CoreState& in, Duration shift, Now now);
  void compute_slow_status(Now now);

  // Every member below but board_ is in CoreImage (export_image, restore_image; the
  // runtime ones listed in core_state_fields.hpp): a member added here must go there too,
  // or tests/control/core_image_test.cpp's mid-run restores diverge.
  BoardParams board_;
  PumpState state_ = PumpState::idle;
  std::optional<TherapyPlan> plan_;
  AdmixConc reservoir_admix_{};   // the admixture in the reservoir, by slot
  std::array<DrugSlot, kDrugSlots> slots_{};
  SlotMap plan_slots_{};          // plan_->admixture[i] is in slots_[plan_slots_[i]]
  FixedString<32> limit_drug_;    // the drug the next daily_limit alarm names
  Concentration reservoir_conc_;  // what is in the reservoir (may differ from the plan's
                                  // while the old prescription's drug is still in it)
  Volume reservoir_ = uL(0);
  Catheter catheter_;
  StepAccumulator acc_;
  RollingLedger ledger_;
  BatteryModel battery_;
  Steps budget_{0};
  bool budget_exhausted_logged_ = false;

  MonoTime last_;            // therapy integrated up to here
  MonoTime last_tick_;       // previous tick (battery, token bucket)
  Duration wall_offset_{0};  // wall - mono at the previous call
  std::optional<MonoTime> jump_guard_until_;  // flex basal follows min(new, old clock)
  Duration pre_jump_offset_{0};
  std::int64_t due_steps_ = 0;  // whole steps programmed, not yet issued
  // Motor rate limiter (max_steps_per_second), in closed form: tokens_ at tokens_t_, then
  // refilled at the motor's rate up to one cycle's worth (at least one).
  double tokens_ = 1.0;
  MonoTime tokens_t_{};
  Stretch stretch_;

  // priming
  Volume prime_prog_left_ = uL(0);  // volume still to program
  std::int64_t prime_steps_left_ = 0;

  std::optional<MonoTime> suspend_until_;
  std::optional<MonoTime> trial_end_mono_;  // monotonic guard: never moves later
  bool trial_end_logged_ = false;

  std::array<ActiveBolus, 3> boluses_{};  // index: BolusSource
  boost::container::static_vector<MonoTime, kMaxPatientBolusesPerDay> patient_starts_;
  std::array<std::int64_t, kMaxPeriodicDoses> periodic_last_day_{};
  std::array<std::optional<MonoTime>, kMaxPeriodicDoses> periodic_last_fired_{};

  // supervisor
  std::uint64_t last_encoder_ = 0;
  bool encoder_seen_ = false;
  std::int64_t steps_since_pulse_ = 0;
  Duration flow_time_{0};
  std::int64_t flow_cmd_steps_ = 0;
  std::int64_t flow_enc_steps_ = 0;
  bool flow_deviating_ = false;
  bool daily_hold_ = false;
  std::array<AlarmStatus, kAlarmCount> alarms_{};
  MonoTime sound_since_{};
  BuzzerPattern sound_pattern_ = BuzzerPattern::off;

  // totals
  Mass total_mass_ = mcg(0);
  Volume total_volume_ = uL(0);
  Volume programmed_volume_ = uL(0);
  Volume dropped_volume_ = uL(0);
  std::uint64_t steps_dropped_ = 0;
  std::uint64_t steps_issued_ = 0;
  Volume pumped_since_refill_ = uL(0);
  Volume last_fill_ = uL(0);
  bool has_filled_ = false;
  double refill_accuracy_ = 0.0;
  bool heartbeat_ = false;
  bool bolus_button_was_ = false;

  // issue 17 (persistent: core_state.hpp)
  bool catheter_revised_ = false;       // the dead volume in force is ReviseCatheter's
  bool long_stop_logged_ = false;       // the 48 h mark of the stop since stop_began_ was logged
  PumpState refill_before_ = PumpState::idle;
  MonoTime refill_began_{};
  WallTime last_fill_wall_{};           // when the reservoir was last filled (S13)
  std::optional<WallTime> stopped_since_;  // delivery stopped (left infusing) at (S14)
  std::optional<MonoTime> stop_began_;     // the same instant, monotonic: its 48 h mark (S14)
  // not persistent: an alarm test in progress (a restart ends it)
  std::optional<MonoTime> alarm_test_since_;

  std::array<Event, kEventCapacity> events_{};
  std::size_t ev_head_ = 0;
  std::size_t ev_count_ = 0;
  std::uint64_t events_dropped_ = 0;
  std::uint64_t emitted_ = 0;  // events ever emitted (fast-forward's quiet test)

  Status status_{};
  MonoTime next_slow_{};
};

}  // namespace thecal
