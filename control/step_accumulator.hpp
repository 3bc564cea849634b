// Exact step counting (SPEC S6): volume is turned into whole motor steps and the fractional
// remainder is kept, so that over any horizon the steps issued differ from the programmed
// volume integral by less than one step.
//
// The remainder is held as a double in [0, 1) steps.  Each add rounds at most half an ulp of
// a number below (1 + increment), and taking whole steps out of it is exact, so the error
// grows by ~1e-16 steps per cycle: after 30 days at 1 kHz (2.6e9 cycles) well under 1e-6
// steps (tests/unit/step_accumulator_test.cpp checks it against the closed-form integral).
// A remainder within kSnap of a whole step counts as that step, so rounding cannot leave
// the count a full step behind at an exact boundary (the remainder may then sit at
// -kSnap: a step issued 1e-9 of a step early, never a step late).
//
// The core itself uses set_from(): within a stretch of constant rate it passes the volume
// programmed since the stretch began, so each stretch rounds once, whatever the number of
// cycles in it (a stretch holds at most a reservoir's worth of steps, ~1e5: one rounding
// there is ~1e-11 of a step).  The cycle length then changes nothing, bit for bit, which
// PumpCore::fast_forward relies on.
#pragma once

#include <cmath>
#include <cstdint>

#include "control/units.hpp"

namespace thecal {

class StepAccumulator {
 public:
  explicit StepAccumulator(Volume volume_per_step) : per_step_(volume_per_step) {}

  /// Adds `v` to the programmed volume and returns the whole steps now due.
  std::int64_t add(Volume v) {
    remainder_ += v / per_step_;
    const double whole = std::floor(remainder_ + kSnap);
    remainder_ -= whole;
    return static_cast<std::int64_t>(whole);
  }

  /// Closed form over a stretch of constant rate (shared by tick() and the fast-forward):
  /// the remainder becomes `base + v / step` less the whole steps in it, which are returned
  /// (all of them since the stretch began: the caller subtracts those it already took).
  /// The result depends on `base` and `v` only, not on how the stretch was cut into cycles.
  std::int64_t set_from(double base, Volume v) {
    remainder_ = base + v / per_step_;
    const double whole = std::floor(remainder_ + kSnap);
    remainder_ -= whole;
    return static_cast<std::int64_t>(whole);
  }
  /// The whole steps set_from(base, v) would return, without changing anything.
  [[nodiscard]] std::int64_t whole_in(double base, Volume v) const {
    return static_cast<std::int64_t>(std::floor(base + v / per_step_ + kSnap));
  }

  /// Gives back steps that were due but not issued (held back by a limit or a budget):
  /// they stay owed only if the caller says so, otherwise they are dropped.
  void carry(std::int64_t steps) { remainder_ += static_cast<double>(steps); }

  /// Forget the remainder (e.g. when delivery stops for a safety reason).
  void reset() { remainder_ = 0.0; }

  [[nodiscard]] double remainder_steps() const { return remainder_; }
  /// Exactly this remainder (an exact image of the core, control/core_state.hpp).
  void restore_exact(double remainder) { remainder_ = remainder; }
  [[nodiscard]] Volume volume_per_step() const { return per_step_; }

 private:
  static constexpr double kSnap = 1e-9;
  Volume per_step_;
  double remainder_ = 0.0;
};

}  // namespace thecal
