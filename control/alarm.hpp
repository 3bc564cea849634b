// Alarm codes and their IEC 60601-1-8 priorities (SPEC S4, S5).  The code strings are the
// ones clients see on D-Bus (ActiveAlarms, AlarmRaised, AcknowledgeAlarm).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace thecal {

enum class AlarmPriority : std::uint8_t { low, medium, high };

enum class AlarmCode : std::uint8_t {
  occlusion,           // high: pressure high
  disconnect,          // high: pressure low while delivering
  motor_stall,         // high: encoder silent while stepping
  driver_fault,        // high: stepper driver nFAULT
  reservoir_empty,     // high
  hardware_fault,      // high: GPIO/ioctl failure at run time
  state_lost,          // high: journal missing/torn/corrupt at start
  battery_eos,         // high: end of service
  storage_fault,       // high: the journal cannot be written (no reservation, no delivery)
  reservoir_low,       // medium
  battery_eri,         // medium: elective replacement indicator
  daily_limit,         // medium: basal held back at max_daily_dose
  flow_deviation,      // medium: encoder vs commanded > 10 % over 15 min
  refill_discrepancy,  // medium
  restart,             // low: the daemon restarted
  prescription_rejected,  // low
  trial_finished,      // low: information
  // Added by issue 17, after the others so that a journal of format 1 keeps its indices.
  catheter_port_injection,  // high: pressure high while refilling (S12)
  refill_unfinished,   // medium: a refill session open for 15 min (S12)
  solution_expired,    // medium: past the drug's max_days_in_reservoir (S13)
  count_,
};

inline constexpr std::size_t kAlarmCount = static_cast<std::size_t>(AlarmCode::count_);

constexpr std::string_view to_string(AlarmCode c) {
  switch (c) {
    case AlarmCode::occlusion: return "occlusion";
    case AlarmCode::disconnect: return "disconnect";
    case AlarmCode::motor_stall: return "motor_stall";
    case AlarmCode::driver_fault: return "driver_fault";
    case AlarmCode::reservoir_empty: return "reservoir_empty";
    case AlarmCode::hardware_fault: return "hardware_fault";
    case AlarmCode::state_lost: return "state_lost";
    case AlarmCode::battery_eos: return "battery_eos";
    case AlarmCode::storage_fault: return "storage_fault";
    case AlarmCode::catheter_port_injection: return "catheter_port_injection";
    case AlarmCode::reservoir_low: return "reservoir_low";
    case AlarmCode::battery_eri: return "battery_eri";
    case AlarmCode::daily_limit: return "daily_limit";
    case AlarmCode::flow_deviation: return "flow_deviation";
    case AlarmCode::refill_discrepancy: return "refill_discrepancy";
    case AlarmCode::refill_unfinished: return "refill_unfinished";
    case AlarmCode::solution_expired: return "solution_expired";
    case AlarmCode::restart: return "restart";
    case AlarmCode::prescription_rejected: return "prescription_rejected";
    case AlarmCode::trial_finished: return "trial_finished";
    case AlarmCode::count_: break;
  }
  return "unknown";
}

constexpr AlarmPriority priority_of(AlarmCode c) {
  switch (c) {
    case AlarmCode::occlusion:
    case AlarmCode::disconnect:
    case AlarmCode::motor_stall:
    case AlarmCode::driver_fault:
    case AlarmCode::reservoir_empty:
    case AlarmCode::hardware_fault:
    case AlarmCode::state_lost:
    case AlarmCode::storage_fault:
    case AlarmCode::catheter_port_injection:
    case AlarmCode::battery_eos: return AlarmPriority::high;
    case AlarmCode::reservoir_low:
    case AlarmCode::battery_eri:
    case AlarmCode::daily_limit:
    case AlarmCode::flow_deviation:
    case AlarmCode::refill_discrepancy:
    case AlarmCode::refill_unfinished:
    case AlarmCode::solution_expired: return AlarmPriority::medium;
    case AlarmCode::restart:
    case AlarmCode::prescription_rejected:
    case AlarmCode::trial_finished:
    case AlarmCode::count_: break;
  }
  return AlarmPriority::low;
}

constexpr std::string_view to_string(AlarmPriority p) {
  switch (p) {
    case AlarmPriority::low: return "low";
    case AlarmPriority::medium: return "medium";
    case AlarmPriority::high: return "high";
  }
  return "low";
}

/// How an active alarm goes away (SPEC S4, S5).
enum class AlarmLatch : std::uint8_t {
  latched,      // high, sensor cause: clears only when acknowledged AND the cause is gone
  until_ack,    // an event, not a condition: clears when acknowledged
  conditional,  // clears by itself when the cause is gone; acknowledging silences it
};

constexpr AlarmLatch latch_of(AlarmCode c) {
  switch (c) {
    case AlarmCode::occlusion:
    case AlarmCode::disconnect:
    case AlarmCode::motor_stall:
    case AlarmCode::driver_fault:
    case AlarmCode::reservoir_empty:
    case AlarmCode::hardware_fault:
    case AlarmCode::catheter_port_injection:
    case AlarmCode::battery_eos: return AlarmLatch::latched;
    case AlarmCode::state_lost:
    case AlarmCode::storage_fault:
    case AlarmCode::refill_discrepancy:
    case AlarmCode::restart:
    case AlarmCode::prescription_rejected:
    case AlarmCode::trial_finished: return AlarmLatch::until_ack;
    case AlarmCode::reservoir_low:
    case AlarmCode::battery_eri:
    case AlarmCode::daily_limit:
    case AlarmCode::flow_deviation:
    case AlarmCode::refill_unfinished:
    case AlarmCode::solution_expired:
    case AlarmCode::count_: break;
  }
  return AlarmLatch::conditional;
}

/// The human message that goes with an alarm (ActiveAlarms, AlarmRaised).
constexpr std::string_view alarm_message(AlarmCode c) {
  switch (c) {
    case AlarmCode::occlusion: return "catheter occlusion: pressure high, motor stopped";
    case AlarmCode::disconnect: return "catheter disconnection: pressure low while delivering, motor stopped";
    case AlarmCode::motor_stall: return "motor stall: no encoder pulse while stepping, motor stopped";
    case AlarmCode::driver_fault: return "stepper driver fault, motor stopped";
    case AlarmCode::reservoir_empty: return "reservoir empty, motor stopped";
    case AlarmCode::hardware_fault: return "hardware I/O failure, motor stopped";
    case AlarmCode::state_lost: return "therapy state lost (journal missing or corrupt), pump stopped";
    case AlarmCode::battery_eos: return "battery end of service, motor stopped";
    case AlarmCode::catheter_port_injection:
      return "catheter pressure rose while refilling: possible injection into the catheter access port, check the patient now";
    case AlarmCode::storage_fault: return "the journal cannot be written (disk full or I/O error): no new delivery budget, pump stopped";
    case AlarmCode::reservoir_low: return "reservoir low: refill soon";
    case AlarmCode::battery_eri: return "battery elective replacement indicator";
    case AlarmCode::daily_limit: return "rolling 24 h dose limit reached: basal held back";
    case AlarmCode::flow_deviation: return "flow deviation: encoder and commanded volume differ by more than 10 %";
    case AlarmCode::refill_discrepancy: return "refill discrepancy: measured residual differs from the estimate";
    case AlarmCode::refill_unfinished: return "refill session open for 15 minutes: finish it (Refill) or cancel it (CancelRefill)";
    case AlarmCode::solution_expired: return "the solution is past its stability in the reservoir: refill now";
    case AlarmCode::restart: return "the pump controller restarted";
    case AlarmCode::prescription_rejected: return "prescription rejected";
    case AlarmCode::trial_finished: return "trial phase finished: delivery stopped";
    case AlarmCode::count_: break;
  }
  return "unknown alarm";
}

constexpr std::optional<AlarmCode> alarm_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kAlarmCount; ++i) {
    const auto c = static_cast<AlarmCode>(i);
    if (to_string(c) == s) return c;
  }
  return std::nullopt;
}

}  // namespace thecal
