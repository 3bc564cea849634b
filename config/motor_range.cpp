#include "config/motor_range.hpp"

#include <array>
#include <cmath>
#include <cstdio>

namespace thecal::config {

VolumeRate min_volume_rate(const BoardParams& board) {
  return uL_per_h(to_uL(board.volume_per_step) * kMinStepsPerHour);
}

VolumeRate max_volume_rate(const BoardParams& board) {
  return uL_per_h(to_uL(board.volume_per_step) * static_cast<double>(board.max_steps_per_second) * 3600.0);
}

std::string format_number(double v) {
  std::array<char, 64> buf{};
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf.data(), buf.size(), "%.0f", v);
  } else {
    std::snprintf(buf.data(), buf.size(), "%.6g", v);
  }
  return buf.data();
}

std::optional<std::string> check_reachable(VolumeRate rate, const BoardParams& board) {
  const VolumeRate lo = min_volume_rate(board);
  const VolumeRate hi = max_volume_rate(board);
  if (rate < lo) {
    return "needs " + format_number(to_uL_per_h(rate)) + " uL/h, below the motor's slowest rate of " +
           format_number(to_uL_per_h(lo)) + " uL/h (one " + format_number(to_uL(board.volume_per_step)) +
           " uL step per hour)";
  }
  if (rate > hi) {
    return "needs " + format_number(to_uL_per_h(rate)) + " uL/h, above the motor's fastest rate of " +
           format_number(to_uL_per_h(hi)) + " uL/h (" + std::to_string(board.max_steps_per_second) + " steps/s of " +
           format_number(to_uL(board.volume_per_step)) + " uL)";
  }
  return std::nullopt;
}

}  // namespace thecal::config
