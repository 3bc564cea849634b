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

  // The charge used is a closed form of the integer time and steps counted since the last
  // replacement or restore, so it does not depend on how time was cut into cycles (the
  // fast-forward, control/pump_core_ff.cpp, relies on it).
  void drain(Duration dt, std::int64_t steps) {
    if (dt > Duration{0}) us_ += dt.count();
    if (steps > 0) steps_ += steps;
    used_mAs_ = used_after(Duration{0});
  }
  void replace() {
    base_mAs_ = 0.0;
    us_ = 0;
    steps_ = 0;
    used_mAs_ = 0.0;
  }
  /// The charge used after a further `dt` without a step (look-ahead, changes nothing).
  [[nodiscard]] double used_after(Duration dt) const {
    return base_mAs_ + p_.use_per_hour_mAs * (static_cast<double>(us_ + dt.count()) / 3600e6) +
           p_.use_per_step_mAs * static_cast<double>(steps_);
  }

  [[nodiscard]] double percent_at(double used_mAs) const {
    if (!(p_.capacity_mAs > 0.0)) return 0.0;
    return std::clamp(100.0 * (1.0 - used_mAs / p_.capacity_mAs), 0.0, 100.0);
  }
  [[nodiscard]] double percent() const { return percent_at(used_mAs_); }
  [[nodiscard]] bool eri() const { return percent() <= p_.eri_percent; }
  [[nodiscard]] bool eos() const { return percent() <= p_.eos_percent; }
  [[nodiscard]] bool eri_at(double used_mAs) const { return percent_at(used_mAs) <= p_.eri_percent; }
  [[nodiscard]] bool eos_at(double used_mAs) const { return percent_at(used_mAs) <= p_.eos_percent; }
  [[nodiscard]] double used_mAs() const { return used_mAs_; }
  void restore(double used_mAs) {
    replace();
    base_mAs_ = std::max(0.0, used_mAs);
    used_mAs_ = base_mAs_;
  }
  [[nodiscard]] const BatteryParams& params() const { return p_; }
  /// The closed form's terms (an exact image of the core, control/core_state.hpp).
  struct Raw {
    double base_mAs = 0.0;
    std::int64_t us = 0;
    std::int64_t steps = 0;
    double used_mAs = 0.0;
  };
  [[nodiscard]] Raw raw() const { return {base_mAs_, us_, steps_, used_mAs_}; }
  void restore_exact(const Raw& r) {
    base_mAs_ = r.base_mAs;
    us_ = r.us;
    steps_ = r.steps;
    used_mAs_ = r.used_mAs;
  }

 private:
  BatteryParams p_;
  double base_mAs_ = 0.0;   // used at the last replacement or restore
  std::int64_t us_ = 0;     // time drained since then
  std::int64_t steps_ = 0;  // steps drained since then
  double used_mAs_ = 0.0;
};

}  // namespace thecal
