// Programming commands into the dosing core, and its replies.  They cross from the main
// thread to the dosing thread through a lock-free queue (loop/), so they are plain,
// fixed-size values.  Every refusal has its own reason (app/ maps it to a named error).
#pragma once

#include <cstdint>
#include <string_view>

#include "control/alarm.hpp"
#include "control/fixed_string.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

enum class CommandKind : std::uint8_t {
  load_prescription,  // plan: a validated, compiled prescription
  prime,              // volume
  start,
  suspend,            // duration (0 = until Resume)
  resume,
  patient_bolus,
  clinician_bolus,    // dose, duration
  cancel_bolus,
  refill,             // withdrawn, volume, plan (optional new prescription)
  acknowledge_alarm,  // alarm
  replace_battery,
  grant_budget,       // steps: the journal reserved this much more (SPEC S7)
  raise_alarm,        // alarm: raised by the daemon (restart, prescription_rejected,
                      // state_lost, storage_fault); high ones stop delivery
  export_state,       // nothing but the state copy into state_out (journal checkpoint)
  export_therapy,     // the same, for ExportTherapy (pump replacement, SPEC 2)
  import_therapy,     // state_in: a therapy exported by another unit; only on a fresh unit
  begin_refill,       // a refill session: motor stopped, the state before kept (SPEC 4)
  cancel_refill,      // back to the state before the session, nothing else changed
  revise_catheter,    // volume: the revised catheter's dead volume; it is empty (S3)
  test_alarm,         // the high, medium and low patterns once each (nothing raised)
};

constexpr std::string_view to_string(CommandKind k) {
  switch (k) {
    case CommandKind::load_prescription: return "load_prescription";
    case CommandKind::prime: return "prime";
    case CommandKind::start: return "start";
    case CommandKind::suspend: return "suspend";
    case CommandKind::resume: return "resume";
    case CommandKind::patient_bolus: return "patient_bolus";
    case CommandKind::clinician_bolus: return "clinician_bolus";
    case CommandKind::cancel_bolus: return "cancel_bolus";
    case CommandKind::refill: return "refill";
    case CommandKind::acknowledge_alarm: return "acknowledge_alarm";
    case CommandKind::replace_battery: return "replace_battery";
    case CommandKind::grant_budget: return "grant_budget";
    case CommandKind::raise_alarm: return "raise_alarm";
    case CommandKind::export_state: return "export_state";
    case CommandKind::export_therapy: return "export_therapy";
    case CommandKind::import_therapy: return "import_therapy";
    case CommandKind::begin_refill: return "begin_refill";
    case CommandKind::cancel_refill: return "cancel_refill";
    case CommandKind::revise_catheter: return "revise_catheter";
    case CommandKind::test_alarm: return "test_alarm";
  }
  return "unknown";
}

/// Who asked.  The daemon has checked the role already; the core records the uid.
struct Caller {
  std::uint32_t uid = 0;
  bool clinician = false;  // may acknowledge high alarms
};

struct CoreState;

struct Command {
  std::uint64_t id = 0;
  CommandKind kind = CommandKind::start;
  Caller caller;
  const TherapyPlan* plan = nullptr;  // owned by the sender until the reply comes back
  Volume volume;
  Volume withdrawn;
  Mass dose;
  Duration duration{0};
  AlarmCode alarm = AlarmCode::restart;
  Steps steps;
  /// Any command: after applying it (refused or not) the core copies its whole state here
  /// (owned by the sender until the reply comes back).  The daemon journals that copy and
  /// only then replies on D-Bus, so an acknowledged programming act is durable (SPEC S7).
  CoreState* state_out = nullptr;
  /// import_therapy only: the exported state (owned by the sender until the reply comes
  /// back).  The core overwrites its unit-specific fields (battery, reservoir, counters)
  /// with its own before taking the therapy over.
  CoreState* state_in = nullptr;
};

enum class Refusal : std::uint8_t {
  none,
  invalid_state,
  lockout_active,
  bolus_limit_reached,
  daily_limit_reached,
  reservoir_low,
  out_of_range,
  invalid_prescription,
  access_denied,
};

/// Each refusal is one named error on D-Bus (SPEC section 4; the names are in dbus/names.hpp).
constexpr std::string_view to_string(Refusal r) {
  switch (r) {
    case Refusal::none: return "none";
    case Refusal::invalid_state: return "invalid_state";
    case Refusal::lockout_active: return "lockout_active";
    case Refusal::bolus_limit_reached: return "bolus_limit_reached";
    case Refusal::daily_limit_reached: return "daily_limit_reached";
    case Refusal::reservoir_low: return "reservoir_low";
    case Refusal::out_of_range: return "out_of_range";
    case Refusal::invalid_prescription: return "invalid_prescription";
    case Refusal::access_denied: return "access_denied";
  }
  return "invalid_state";
}

struct Reply {
  std::uint64_t id = 0;
  Refusal refusal = Refusal::none;
  FixedString<160> message;  // human text for a refusal
  Mass dose;                 // bolus dose granted
  WallTime ends{};           // bolus end (wall time, for D-Bus)
  [[nodiscard]] bool ok() const { return refusal == Refusal::none; }
};

}  // namespace thecal
