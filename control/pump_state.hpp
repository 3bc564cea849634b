// The pump's states (SPEC section 4, property State).
#pragma once

#include <cstdint>
#include <string_view>

namespace thecal {

enum class PumpState : std::uint8_t {
  idle,
  priming,
  infusing,
  suspended,
  stopped,  // safety stop: a high alarm stopped the motor
  trial_finished,
  end_of_service,
  refilling,  // a refill session (BeginRefill): motor stopped, the state before kept
};

constexpr std::string_view to_string(PumpState s) {
  switch (s) {
    case PumpState::idle: return "idle";
    case PumpState::priming: return "priming";
    case PumpState::infusing: return "infusing";
    case PumpState::suspended: return "suspended";
    case PumpState::stopped: return "stopped";
    case PumpState::trial_finished: return "trial_finished";
    case PumpState::end_of_service: return "end_of_service";
    case PumpState::refilling: return "refilling";
  }
  return "stopped";
}

}  // namespace thecal
