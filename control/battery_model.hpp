// The battery model (SPEC section 2, maintenance): charge used by the electronics per hour
// and by the motor per step, against the capacity; ERI and EOS thresholds in percent.
#pragma once

#include <algorithm>
#include <cstdint>

#include "control/board_params.hpp"
#include "control/units.hpp"

namespace thecal {

class BatteryModel {
 public:
  explicit BatteryModel(const BatteryParams& p) : p_(p) {}

  void drain(Duration dt, std::int64_t steps) {
    if (dt > Duration{0}) used_mAs_ += p_.use_per_hour_mAs * (static_cast<double>(dt.count()) / 3600e6);
    if (steps > 0) used_mAs_ += p_.use_per_step_mAs * static_cast<double>(steps);
  }
  void replace() { used_mAs_ = 0.0; }

  [[nodiscard]] double percent() const {
    if (!(p_.capacity_mAs > 0.0)) return 0.0;
    return std::clamp(100.0 * (1.0 - used_mAs_ / p_.capacity_mAs), 0.0, 100.0);
  }
  [[nodiscard]] bool eri() const { return percent() <= p_.eri_percent; }
  [[nodiscard]] bool eos() const { return percent() <= p_.eos_percent; }
  [[nodiscard]] double used_mAs() const { return used_mAs_; }
  void restore(double used_mAs) { used_mAs_ = std::max(0.0, used_mAs); }
  [[nodiscard]] const BatteryParams& params() const { return p_; }

 private:
  BatteryParams p_;
  double used_mAs_ = 0.0;
};

}  // namespace thecal
