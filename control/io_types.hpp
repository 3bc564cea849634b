// What the core reads from the pump and what it tells the pump, once per cycle.  The same
// structures serve the simulated plant and the libgpiod backend (io/), so the core cannot
// tell them apart.  Levels are logical (active = true), after active_low and debounce.
#pragma once

#include <cstdint>

namespace thecal {

struct SensorInputs {
  bool occlusion = false;      // pressure switch: catheter pressure high
  bool disconnect = false;     // pressure switch: catheter pressure low
  bool driver_fault = false;   // stepper driver nFAULT
  bool low_battery = false;    // battery monitor comparator
  bool bolus_button = false;   // patient bolus button (debounced level)
  bool hardware_ok = true;     // false: the backend lost a line or an ioctl failed
  std::uint64_t encoder_pulses = 0;  // cumulative encoder pulses since start
};

enum class BuzzerPattern : std::uint8_t { off, low, medium, high };

struct Actuation {
  bool motor_enable = false;
  std::uint32_t steps = 0;  // step pulses to issue this cycle (direction: always forward)
  bool buzzer = false;      // buzzer level this cycle (pattern already applied)
  BuzzerPattern buzzer_pattern = BuzzerPattern::off;  // which cadence drives it
  bool heartbeat = false;   // toggles every cycle (SPEC S9)
};

}  // namespace thecal
