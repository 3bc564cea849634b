// What the dosing core needs to know about the board (thecald.yaml `motor:`, `loop:`,
// `battery:`), in strong types.
#pragma once

#include <cstdint>

#include "control/units.hpp"

namespace thecal {

struct BatteryParams {
  double capacity_mAs = 3.6e6 * 10;     // charge units (mA*s); default ~10 Ah
  double use_per_step_mAs = 0.05;       // per motor step
  double use_per_hour_mAs = 3600.0 * 1; // quiescent, per hour
  double eri_percent = 15.0;            // elective replacement indicator
  double eos_percent = 5.0;             // end of service
};

struct BoardParams {
  Volume volume_per_step = uL(0.25);
  std::uint32_t max_steps_per_second = 400;
  std::uint32_t steps_per_encoder_pulse = 8;
  std::uint32_t stall_pulses = 3;
  VolumeRate prime_rate = mL_per_h(1.0);
  Duration loop_period = Duration{1000};
  BatteryParams battery;
};

}  // namespace thecal
