// The volume rates this board's motor can deliver (SPEC 3.1: "every rate within the motor's
// reachable range for this board").
//
//   fastest: max_steps_per_second x volume_per_step
//   slowest: one step per hour (kMinStepsPerHour).  Slower than that, the drug sits in the
//            pump between steps for more than an hour, and the stall check (which needs
//            encoder pulses while stepping) sees almost nothing; ask for a lower
//            concentration instead.
#pragma once

#include <optional>
#include <string>

#include "control/board_params.hpp"
#include "control/units.hpp"

namespace thecal::config {

inline constexpr double kMinStepsPerHour = 1.0;

VolumeRate min_volume_rate(const BoardParams& board);
VolumeRate max_volume_rate(const BoardParams& board);

/// nullopt when `rate` is reachable; else why not: "needs X uL/h, below/above ...".
std::optional<std::string> check_reachable(VolumeRate rate, const BoardParams& board);

/// A number for messages: up to 6 significant digits, no exponent for everyday values.
std::string format_number(double v);

}  // namespace thecal::config
