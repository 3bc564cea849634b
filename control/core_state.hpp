// The dosing core's complete persistent state (SPEC S7): everything a restart needs to go
// on keeping every limit the core was keeping, as one plain value.
//
//   PumpCore::export_state(out, now)   fills it (no allocation: the caller owns `out`)
//   PumpCore::restore_state(in, r)     puts it back, mapping its monotonic times onto the
//                                      new clock conservatively (see RestoreClock)
//   encode_core_state / decode_core_state   a versioned, bounds-checked binary form for
//                                      the journal (io/journal.hpp) and the therapy export
//
// The fields are listed once, in control/core_state_fields.hpp: the codec walks that list
// both ways, and tests/app/core_state_test.cpp fills every field through it and checks that
// the codec and export/restore carry each one (a field forgotten in restore_state fails there
// by name).  export_state/restore_state stay the mapping between the live objects and this
// value, because each field has its own rule on restore (monotonic times shifted, ledger
// buckets moved by whole minutes rounded later, priming not resumed).
//
// What is deliberately NOT kept: steps due but not yet issued and the step accumulator's
// fraction (dropped, never owed: at most one step), the flow monitor's window (it starts
// again), the buzzer phase, and the journal budget (a restart starts with none: the daemon
// reserves anew before the loop may step).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/static_vector.hpp>

#include "control/catheter.hpp"
#include "control/event.hpp"
#include "control/fixed_string.hpp"
#include "control/io_types.hpp"
#include "control/pump_state.hpp"
#include "control/rolling_ledger.hpp"
#include "control/status.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

inline constexpr std::size_t kCoreMaxPatientStarts = 64;

struct CoreBolusState {
  bool active = false;
  Mass dose;
  MassRate rate;
  MonoTime start{};
  MonoTime end{};
  Mass programmed;
  Mass held;
  std::uint32_t uid = kSystemUid;
};

/// An admixture drug slot (PumpCore::DrugSlot) as plain data.
struct CoreDrugSlot {
  FixedString<32> name;  // empty: free
  Mass limit;
  std::array<RollingLedger::Bucket, RollingLedger::kBuckets> ledger{};
};

struct CoreState {
  // When it was captured, on the core's clocks.
  MonoTime mono{};
  WallTime wall{};

  PumpState state = PumpState::idle;
  std::optional<TherapyPlan> plan;
  Concentration reservoir_conc;
  Volume reservoir;
  Volume catheter_capacity;
  boost::container::static_vector<Catheter::Segment, Catheter::kMaxSegments> catheter;
  std::array<RollingLedger::Bucket, RollingLedger::kBuckets> ledger{};
  double battery_used_mAs = 0.0;

  std::optional<MonoTime> jump_guard_until;
  Duration pre_jump_offset{0};
  std::optional<MonoTime> suspend_until;
  std::optional<MonoTime> trial_end_mono;
  bool trial_end_logged = false;
  Volume prime_left;  // priming volume not yet stepped (a restart does not resume priming)

  std::array<CoreBolusState, 3> boluses{};  // index: BolusSource
  boost::container::static_vector<MonoTime, kCoreMaxPatientStarts> patient_starts;
  std::array<std::int64_t, kMaxPeriodicDoses> periodic_last_day{};
  std::array<std::optional<MonoTime>, kMaxPeriodicDoses> periodic_last_fired{};

  std::array<AlarmStatus, kAlarmCount> alarms{};
  bool daily_hold = false;

  Mass total_mass;
  Volume total_volume;
  Volume programmed_volume;
  Volume dropped_volume;
  std::uint64_t steps_dropped = 0;
  std::uint64_t steps_issued = 0;
  Volume pumped_since_refill;
  Volume last_fill;
  bool has_filled = false;
  double refill_accuracy = 0.0;  // NaN until measured

  // Format 2 (issue 17).  A format-1 state reads as: no revision, no session, filled at
  // its capture time (so a stability limit counts from the restart, never earlier), no stop.
  bool catheter_revised = false;          // catheter_capacity is ReviseCatheter's
  bool long_stop_logged = false;          // format 3: the 48 h mark of stop_began was logged
  PumpState refill_before = PumpState::idle;  // the state a refill session returns to
  MonoTime refill_began{};                // the session's start (state refilling)
  WallTime last_fill_wall{};              // the last fill (S13)
  std::optional<WallTime> stopped_since;  // delivery stopped at (S14)

  // Format 3 (S14's 48 h mark).  A format-2 state reads as: the stop (if any) began its wall
  // length before the capture on the monotonic clock, its 48 h mark not logged yet.
  std::optional<MonoTime> stop_began;     // delivery stopped at, monotonic (S14)
  // long_stop_logged (format 3) is above, beside the other flags (no padding): the layout
  // here is not the encoding's order, which core_state_fields.hpp gives.

  // ---- admixture (issue 16): encoded as a versioned tail, written only when a drug slot
  // is in use, so that a state without admixture encodes as before and an older journal
  // (no tail) decodes to no admixture.  The catheter segments' admixture is in `catheter`.
  AdmixConc reservoir_admix{};
  std::array<CoreDrugSlot, kDrugSlots> drug_slots{};
  std::array<std::uint8_t, kMaxAdmixture> plan_slots{};  // plan->admixture[i] -> drug slot
};

/// A rolling ledger's cursor (RollingLedger: what sits beside its buckets).
struct CoreLedgerCursor {
  std::int64_t total_pg = 0;
  std::int64_t next_to_expire = 0;
  std::int64_t latest_minute = 0;
  bool started = false;
};

/// The constant-rate stretch the core integrates in closed form (PumpCore::Stretch).
struct CoreStretch {
  bool valid = false;
  bool priming = false;
  MonoTime t0{};
  MonoTime t_end{};
  MassRate rate;
  Concentration conc;
  double r0 = 0.0;
  Volume pv0;
  Volume skip0;
  Volume prime0;
  std::array<Mass, 3> bp0{};
  std::int64_t whole = 0;
  double r_end = 0.0;
  Volume cath_capacity;
  boost::container::static_vector<Catheter::Segment, Catheter::kMaxSegments> cath;
  boost::container::static_vector<AdmixConc, Catheter::kMaxSegments> cath_admix;  // cath[i].admix
};

/// What a restart drops on purpose (see above) and an exact image keeps: with CoreState,
/// every field the core's future depends on (PumpCore::export_image / restore_image).  Also
/// the exact values behind CoreState's two derived fields (dropped_volume holds the pending
/// volume, prime_left is rounded to steps), the ledgers' cursors, the battery's closed form,
/// and the status fields that are not a function of the state at the status's time.
struct CoreRuntime {
  FixedString<32> limit_drug;
  std::array<Mass, kDrugSlots> slot_totals{};
  CoreLedgerCursor ledger_cursor;
  std::array<CoreLedgerCursor, kDrugSlots> slot_ledger_cursors{};
  double battery_base_mAs = 0.0;
  std::int64_t battery_us = 0;
  std::int64_t battery_steps = 0;
  double battery_used_mAs = 0.0;
  std::int64_t budget = 0;
  bool budget_exhausted_logged = false;
  MonoTime last{};
  MonoTime last_tick{};
  Duration wall_offset{0};
  std::int64_t due_steps = 0;
  double acc_remainder = 0.0;
  double tokens = 0.0;
  MonoTime tokens_t{};
  CoreStretch stretch;
  Volume prime_prog_left;
  std::int64_t prime_steps_left = 0;
  Volume dropped_volume;  // without the pending volume
  std::uint64_t last_encoder = 0;
  bool encoder_seen = false;
  std::int64_t steps_since_pulse = 0;
  Duration flow_time{0};
  std::int64_t flow_cmd_steps = 0;
  std::int64_t flow_enc_steps = 0;
  bool flow_deviating = false;
  MonoTime sound_since{};
  BuzzerPattern sound_pattern = BuzzerPattern::off;
  bool heartbeat = false;
  bool bolus_button_was = false;
  std::optional<MonoTime> alarm_test_since;
  std::uint64_t events_dropped = 0;
  std::uint64_t emitted = 0;
  MonoTime next_slow{};
  WallTime refill_due{};          // Status: computed once a second
  WallTime next_patient_bolus{};  // Status: computed once a second
};

/// An exact image of the core at a cycle boundary (the flight recorder's mid-run snapshots,
/// docs/recorder.md): restored into a core of the same board, it ticks on bit for bit as
/// the core it was taken from.  `state.mono`/`state.wall` are the time of the last cycle.
struct CoreImage {
  CoreState state;
  CoreRuntime runtime;
};

/// How a restored state's monotonic times map onto the new run's clock.  The new run
/// believes `elapsed` has passed since the state was captured; it must never be more than
/// really passed (a ledger entry or a lockout start then looks younger than it is: the
/// ledger over-counts and lockouts last longer, never the other way).  The daemon takes
/// the monotonic difference within one boot and zero across a reboot (docs/journal.md).
struct RestoreClock {
  Now now;                  // the new run's time
  Duration elapsed{0};      // assumed time since `CoreState::mono`, >= 0
};

/// What restore_state did, for the daemon's log.
struct RestoreReport {
  Duration shift{0};             // added to every monotonic time of the state
  std::int64_t unconfirmed_steps = 0;  // counted as pumped at `now`
  Mass unconfirmed_mass;         // their mass at the tip, added to the ledger at `now`
  bool priming_interrupted = false;
};

/// Binary form: versioned, every length and enum checked on decode.
inline constexpr std::uint32_t kCoreStateFormat = 3;  // 1 and 2 are still read
/// Version of the admixture tail that may follow the state (issue 16).
inline constexpr std::uint32_t kAdmixtureTail = 1;
std::vector<std::uint8_t> encode_core_state(const CoreState& s);
/// nullopt with `err` set if the bytes are not a valid state of a known format.
std::optional<CoreState> decode_core_state(std::string_view bytes, std::string* err);
/// An exact image: the state as above, then the runtime (core_runtime_fields), its own
/// format number first.
inline constexpr std::uint32_t kCoreImageFormat = 1;
std::vector<std::uint8_t> encode_core_image(const CoreImage& im);
std::optional<CoreImage> decode_core_image(std::string_view bytes, std::string* err);
/// A prescription alone, in the same form (the flight recorder's load and refill inputs).
std::vector<std::uint8_t> encode_therapy_plan(const TherapyPlan& p);
std::optional<TherapyPlan> decode_therapy_plan(std::string_view bytes, std::string* err);

}  // namespace thecal
