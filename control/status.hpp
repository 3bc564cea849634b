// A consistent snapshot of everything clients may read, published by the dosing thread
// (SPEC section 4 properties), in canonical units.
#pragma once

#include <array>
#include <cstdint>

#include <boost/container/static_vector.hpp>

#include "control/alarm.hpp"
#include "control/event.hpp"
#include "control/fixed_string.hpp"
#include "control/io_types.hpp"
#include "control/pump_state.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

struct AlarmStatus {
  bool active = false;
  bool acknowledged = false;
  bool cause_present = false;
  WallTime raised{};
  MonoTime silenced_until{};
};

struct Status {
  MonoTime mono{};
  WallTime wall{};
  PumpState state = PumpState::idle;
  bool has_prescription = false;
  Phase phase = Phase::maintenance;
  FixedString<64> prescription_id;
  FixedString<32> drug;
  Concentration concentration;          // reservoir concentration
  MassRate basal_rate;                  // basal rate in force now
  Volume reservoir;
  Volume reservoir_capacity;
  bool catheter_primed = false;
  Mass delivered_24h;
  Mass daily_limit;
  std::uint32_t patient_boluses_24h = 0;
  WallTime next_patient_bolus{};        // 0: now
  bool bolus_active = false;
  std::array<AlarmStatus, kAlarmCount> alarms{};
  double battery_percent = 100.0;
  WallTime refill_due{};                // 0: unknown
  WallTime trial_ends{};                // 0 unless trial
  double refill_accuracy_percent = 0.0; // NaN until measured
  // Totals since start, for history and diagnostics.
  Mass total_delivered_mass;            // at the catheter tip
  Volume total_pumped_volume;           // commanded by steps
  std::uint64_t steps_issued = 0;
  std::uint64_t encoder_pulses = 0;
  bool buzzer_on = false;

  // ---- added by the dosing core (issue 4) -------------------------------------------
  BuzzerPattern buzzer_pattern = BuzzerPattern::off;  // loudest unsilenced alarm's cadence
  Duration trial_remaining{0};          // monotonic guard of the trial end (0 unless trial)
  WallTime suspended_until{};           // 0: not suspended, or until Resume
  // The active boluses, one slot per source (BolusActive is any of them).
  struct Bolus {
    bool active = false;
    Mass dose;                          // prescribed mass at the tip
    Mass delivered;                     // programmed so far, less what S1 held back
    WallTime started{};
    WallTime ends{};
  };
  std::array<Bolus, 3> boluses{};       // index: BolusSource
  VolumeRate pump_rate;                 // volume rate commanded now (follows the tip: S3)
  Volume prime_left;                    // priming volume not yet stepped (0 unless priming)
  MassRate mass_rate;                   // mass rate programmed now at the tip (basal + boluses)
  bool daily_limit_hold = false;        // S1 is holding delivery back right now
  Mass room_24h;                        // daily_limit - delivered_24h, >= 0
  // S6 accounting, since start: programmed = steps*volume_per_step + dropped + pending.
  Volume programmed_volume;             // integral of the commanded volume rate
  Volume dropped_volume;                // programmed but never stepped (S1 hold, budget, stop)
  Volume pending_volume;                // programmed, due, not yet stepped (< a few steps)
  std::uint64_t steps_dropped = 0;
  // Refill bookkeeping.
  Volume pumped_since_refill;           // volume stepped since the last refill
  Volume last_fill;                     // volume put in at the last refill
  double battery_used_mAs = 0.0;
  std::uint64_t events_dropped = 0;

  // ---- issue 17: catheter revision, refill session, solution stability ----------------
  Volume catheter_volume;               // dead volume in force (prescription or ReviseCatheter)
  WallTime solution_expires{};          // last fill + max_in_reservoir; 0 if none (S13)
  WallTime refill_began{};              // 0 unless refilling
  PumpState refill_before = PumpState::idle;  // the state a refill session returns to
  bool alarm_test = false;              // TestAlarm's patterns are sounding
  // ---- admixture (issue 16): every drug of the reservoir's solution, primary first ----
  struct DrugFigures {
    FixedString<32> name;
    Concentration concentration;  // in the reservoir
    Mass delivered_24h;           // at the tip, rolling 24 h
    Mass daily_limit;
  };
  boost::container::static_vector<DrugFigures, 1 + kMaxAdmixture> drugs;
  /// Each admixture drug slot's mass at the tip since this core began counting that drug
  /// there (runtime only, not journalled): the per-drug delivery history.  Empty name: free.
  struct DrugTotal {
    FixedString<32> name;
    Mass total;
  };
  std::array<DrugTotal, 6> drug_totals{};  // one per drug slot (kDrugSlots)
};

}  // namespace thecal
