// What the core reports: every programming act, alarm and state change, as fixed-size
// records the daemon turns into the event log, D-Bus signals and journal entries (S11).
#pragma once

#include <cstdint>
#include <string_view>

#include "control/alarm.hpp"
#include "control/command.hpp"
#include "control/fixed_string.hpp"
#include "control/pump_state.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

enum class EventType : std::uint8_t {
  state_changed,        // state -> new_state
  prescription_loaded,
  prime_started,
  prime_finished,
  started,
  suspended,
  resumed,
  bolus_started,        // source, mass
  bolus_finished,       // source, mass (delivered)
  refill,               // volume (filled), volume2 (withdrawn), estimate, pumped, percent
  alarm_raised,         // alarm
  alarm_cleared,        // alarm
  alarm_acknowledged,   // alarm
  trial_finished,
  wall_clock_jump,      // duration: how far wall time moved against monotonic
  battery_replaced,
  budget_exhausted,     // the journal reservation ran out before the next grant
  bolus_cancelled,      // source; uid: who cancelled (kSystemUid: a high alarm, suspend, ...)
  periodic_skipped,     // index: which periodic dose; refusal says why (invalid_state:
                        // not infusing / already running, lockout_active: spacing)
  command_refused,      // command, refusal: a programming act that changed nothing
  catheter_revised,     // ReviseCatheter: volume (new dead volume), volume2 (old)
  suspend_extended,     // a drug change made a timed suspend open-ended
  refill_begun,         // BeginRefill: old_state (kept for the end of the session)
  refill_cancelled,     // CancelRefill: new_state (the state returned to)
  alarm_test,           // TestAlarm: the three patterns sounded once (duration: how long)
  risk_event,           // S14: index kRiskLongStop / kRiskLongStopEnded (duration: the stop so
                        // far / in all) or kRiskReservoirEmpty (volume: what was left)
};
/// The last EventType (readers of recorded event types check against it).
inline constexpr EventType kLastEventType = EventType::risk_event;

constexpr std::string_view to_string(EventType t) {
  switch (t) {
    case EventType::state_changed: return "state_changed";
    case EventType::prescription_loaded: return "prescription_loaded";
    case EventType::prime_started: return "prime_started";
    case EventType::prime_finished: return "prime_finished";
    case EventType::started: return "started";
    case EventType::suspended: return "suspended";
    case EventType::resumed: return "resumed";
    case EventType::bolus_started: return "bolus_started";
    case EventType::bolus_finished: return "bolus_finished";
    case EventType::refill: return "refill";
    case EventType::alarm_raised: return "alarm_raised";
    case EventType::alarm_cleared: return "alarm_cleared";
    case EventType::alarm_acknowledged: return "alarm_acknowledged";
    case EventType::trial_finished: return "trial_finished";
    case EventType::wall_clock_jump: return "wall_clock_jump";
    case EventType::battery_replaced: return "battery_replaced";
    case EventType::budget_exhausted: return "budget_exhausted";
    case EventType::bolus_cancelled: return "bolus_cancelled";
    case EventType::periodic_skipped: return "periodic_skipped";
    case EventType::command_refused: return "command_refused";
    case EventType::catheter_revised: return "catheter_revised";
    case EventType::suspend_extended: return "suspend_extended";
    case EventType::refill_begun: return "refill_begun";
    case EventType::refill_cancelled: return "refill_cancelled";
    case EventType::alarm_test: return "alarm_test";
    case EventType::risk_event: return "risk_event";
  }
  return "unknown";
}

enum class BolusSource : std::uint8_t { patient, clinician, periodic };

constexpr std::string_view to_string(BolusSource s) {
  switch (s) {
    case BolusSource::patient: return "patient";
    case BolusSource::clinician: return "clinician";
    case BolusSource::periodic: return "periodic";
  }
  return "patient";
}

inline constexpr std::uint32_t kSystemUid = 0xFFFFFFFFu;       // the pump itself did it
inline constexpr std::uint32_t kBolusButtonUid = 0xFFFFFFFEu;  // the patient's bolus button
/// risk_event kinds (Event::index), SPEC S14.
inline constexpr std::uint32_t kRiskLongStop = 0;        // a stop of delivery reached 48 h (still stopped)
inline constexpr std::uint32_t kRiskReservoirEmpty = 1;  // the reservoir ran empty
inline constexpr std::uint32_t kRiskLongStopEnded = 2;   // delivery resumed after a stop that reached 48 h

struct Event {
  WallTime when{};
  MonoTime mono{};
  EventType type = EventType::state_changed;
  std::uint32_t uid = kSystemUid;
  PumpState old_state = PumpState::idle;
  PumpState new_state = PumpState::idle;
  AlarmCode alarm = AlarmCode::restart;
  BolusSource source = BolusSource::patient;
  Mass mass;
  Volume volume;
  Volume volume2;
  Duration duration{0};
  CommandKind command = CommandKind::start;  // command_refused
  Refusal refusal = Refusal::none;           // command_refused, periodic_skipped
  std::uint32_t index = 0;                   // periodic_skipped: dose index
  double percent = 0.0;                      // refill: measured accuracy (NaN if none)
  Volume estimate;                           // refill: the pump's estimate of the residual
  Volume pumped;                             // refill: volume pumped since the last refill
  Volume tolerance;                          // refill: the discrepancy allowed (0: no check)
  bool flagged = false;                      // refill: beyond tolerance (refill_discrepancy)
  FixedString<32> drug;                      // alarm_raised daily_limit: the drug at its limit
};

}  // namespace thecal
