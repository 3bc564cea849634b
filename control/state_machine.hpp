// The pump state machine (SPEC section 4, State): every legal transition, in ONE table.
//
// A trigger is either a programming command (load, prime, start, suspend, resume, bolus,
// refill, replace_battery) or something the core itself detects (prime_done,
// suspend_elapsed, high_alarm, trial_end, battery_eos).  A command whose trigger has no
// row for the current state is refused with Refusal::invalid_state and a message naming
// both; an internal trigger without a row does nothing (e.g. a high alarm in `idle` has no
// motor to stop).  Guards that are not about the state (catheter primed, reservoir,
// alarms) are checked by PumpCore before it looks here.
//
// docs/therapy-model.md carries the same table; tests/control/state_machine_test.cpp
// checks that the two agree row for row.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "control/pump_state.hpp"

namespace thecal {

enum class Trigger : std::uint8_t {
  load_prescription,
  prime,
  prime_done,
  start,
  suspend,
  suspend_elapsed,
  resume,
  bolus,
  refill,
  high_alarm,
  trial_end,
  battery_eos,
  replace_battery,
  begin_refill,
  cancel_refill,
  revise_catheter,
};

constexpr std::string_view to_string(Trigger t) {
  switch (t) {
    case Trigger::load_prescription: return "load_prescription";
    case Trigger::prime: return "prime";
    case Trigger::prime_done: return "prime_done";
    case Trigger::start: return "start";
    case Trigger::suspend: return "suspend";
    case Trigger::suspend_elapsed: return "suspend_elapsed";
    case Trigger::resume: return "resume";
    case Trigger::bolus: return "bolus";
    case Trigger::refill: return "refill";
    case Trigger::high_alarm: return "high_alarm";
    case Trigger::trial_end: return "trial_end";
    case Trigger::battery_eos: return "battery_eos";
    case Trigger::replace_battery: return "replace_battery";
    case Trigger::begin_refill: return "begin_refill";
    case Trigger::cancel_refill: return "cancel_refill";
    case Trigger::revise_catheter: return "revise_catheter";
  }
  return "unknown";
}

struct Transition {
  PumpState from;
  Trigger trigger;
  PumpState to;
};

// clang-format off
inline constexpr std::array kTransitions{
  // from                        trigger                      to
  Transition{PumpState::idle,           Trigger::load_prescription, PumpState::idle},
  Transition{PumpState::idle,           Trigger::prime,             PumpState::priming},
  Transition{PumpState::idle,           Trigger::start,             PumpState::infusing},
  Transition{PumpState::idle,           Trigger::refill,            PumpState::idle},
  Transition{PumpState::idle,           Trigger::trial_end,         PumpState::trial_finished},
  Transition{PumpState::idle,           Trigger::battery_eos,       PumpState::end_of_service},
  Transition{PumpState::idle,           Trigger::replace_battery,   PumpState::suspended},
  Transition{PumpState::idle,           Trigger::begin_refill,      PumpState::refilling},
  Transition{PumpState::idle,           Trigger::revise_catheter,   PumpState::idle},

  Transition{PumpState::priming,        Trigger::prime_done,        PumpState::idle},
  Transition{PumpState::priming,        Trigger::suspend,           PumpState::suspended},
  Transition{PumpState::priming,        Trigger::high_alarm,        PumpState::stopped},
  Transition{PumpState::priming,        Trigger::trial_end,         PumpState::trial_finished},
  Transition{PumpState::priming,        Trigger::battery_eos,       PumpState::end_of_service},

  Transition{PumpState::infusing,       Trigger::load_prescription, PumpState::infusing},
  Transition{PumpState::infusing,       Trigger::suspend,           PumpState::suspended},
  Transition{PumpState::infusing,       Trigger::bolus,             PumpState::infusing},
  Transition{PumpState::infusing,       Trigger::high_alarm,        PumpState::stopped},
  Transition{PumpState::infusing,       Trigger::trial_end,         PumpState::trial_finished},
  Transition{PumpState::infusing,       Trigger::battery_eos,       PumpState::end_of_service},
  Transition{PumpState::infusing,       Trigger::refill,            PumpState::infusing},
  Transition{PumpState::infusing,       Trigger::begin_refill,      PumpState::refilling},

  Transition{PumpState::suspended,      Trigger::load_prescription, PumpState::suspended},
  Transition{PumpState::suspended,      Trigger::prime,             PumpState::priming},
  Transition{PumpState::suspended,      Trigger::start,             PumpState::infusing},
  Transition{PumpState::suspended,      Trigger::suspend,           PumpState::suspended},
  Transition{PumpState::suspended,      Trigger::suspend_elapsed,   PumpState::infusing},
  Transition{PumpState::suspended,      Trigger::resume,            PumpState::infusing},
  Transition{PumpState::suspended,      Trigger::refill,            PumpState::suspended},
  Transition{PumpState::suspended,      Trigger::high_alarm,        PumpState::stopped},
  Transition{PumpState::suspended,      Trigger::trial_end,         PumpState::trial_finished},
  Transition{PumpState::suspended,      Trigger::battery_eos,       PumpState::end_of_service},
  Transition{PumpState::suspended,      Trigger::replace_battery,   PumpState::suspended},
  Transition{PumpState::suspended,      Trigger::begin_refill,      PumpState::refilling},
  Transition{PumpState::suspended,      Trigger::revise_catheter,   PumpState::idle},

  Transition{PumpState::stopped,        Trigger::load_prescription, PumpState::stopped},
  Transition{PumpState::stopped,        Trigger::prime,             PumpState::priming},
  Transition{PumpState::stopped,        Trigger::resume,            PumpState::infusing},
  Transition{PumpState::stopped,        Trigger::refill,            PumpState::stopped},
  Transition{PumpState::stopped,        Trigger::trial_end,         PumpState::trial_finished},
  Transition{PumpState::stopped,        Trigger::battery_eos,       PumpState::end_of_service},
  Transition{PumpState::stopped,        Trigger::replace_battery,   PumpState::suspended},
  Transition{PumpState::stopped,        Trigger::begin_refill,      PumpState::refilling},
  Transition{PumpState::stopped,        Trigger::revise_catheter,   PumpState::idle},

  Transition{PumpState::trial_finished, Trigger::load_prescription, PumpState::idle},
  Transition{PumpState::trial_finished, Trigger::refill,            PumpState::trial_finished},
  Transition{PumpState::trial_finished, Trigger::battery_eos,       PumpState::end_of_service},

  Transition{PumpState::end_of_service, Trigger::load_prescription, PumpState::end_of_service},
  Transition{PumpState::end_of_service, Trigger::refill,            PumpState::end_of_service},
  Transition{PumpState::end_of_service, Trigger::replace_battery,   PumpState::suspended},

  // Leaving a refill session goes back to the state kept at BeginRefill (SPEC 4), which one
  // row cannot name: these rows say the trigger is allowed; PumpCore::end_refill_session
  // picks the state (the one before; suspended after a change of drug; stopped when a
  // high alarm stands and that state would have been stopped by it).
  Transition{PumpState::refilling,      Trigger::refill,            PumpState::refilling},
  Transition{PumpState::refilling,      Trigger::cancel_refill,     PumpState::refilling},
};
// clang-format on

/// The state `trigger` leads to from `from`, or nothing if the table has no such row.
constexpr std::optional<PumpState> next_state(PumpState from, Trigger trigger) {
  for (const auto& t : kTransitions) {
    if (t.from == from && t.trigger == trigger) return t.to;
  }
  return std::nullopt;
}

/// The motor may step only in these states (checked by the property tests after every cycle).
constexpr bool motor_may_step(PumpState s) { return s == PumpState::priming || s == PumpState::infusing; }

namespace detail {
constexpr bool table_is_deterministic() {
  for (std::size_t i = 0; i < kTransitions.size(); ++i) {
    for (std::size_t j = i + 1; j < kTransitions.size(); ++j) {
      if (kTransitions[i].from == kTransitions[j].from && kTransitions[i].trigger == kTransitions[j].trigger) {
        return false;
      }
    }
  }
  return true;
}
}  // namespace detail
static_assert(detail::table_is_deterministic(), "two rows for one (state, trigger)");

}  // namespace thecal
