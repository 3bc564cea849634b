// A consistent snapshot of everything clients may read, published by the dosing thread
// (SPEC section 4 properties), in canonical units.
#pragma once

#include <array>
#include <cstdint>

#include "control/alarm.hpp"
#include "control/fixed_string.hpp"
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
};

}  // namespace thecal
