// The clock of the dosing loop.  With real hardware it is CLOCK_MONOTONIC and
// CLOCK_REALTIME as they are.  With the simulator the whole simulated world runs `scale`
// times faster (SPEC 4, Simulator1.TimeScale): simulated monotonic time advances by
// scale x real elapsed time, and simulated wall time moves with it from the wall time at
// start.  Only the dosing thread calls now(); a scale change takes effect from the next
// call without a jump.
//
// For the flight recorder (S15) both clocks move by whole, predictable steps: the
// simulated clock advances by llround(real elapsed x scale) per call, so at a steady
// period and scale every cycle moves it by the same amount; the real wall clock is given
// as monotonic + an offset that is re-read every call but only taken when it moved by more
// than kWallResolution (an NTP slew of 10 ppm moves it once every 100 s; a step at once).
#pragma once

#include <cstdint>

#include "control/pump_core.hpp"
#include "io/clock.hpp"

namespace thecal::loop {

using io::real_monotonic_us;
using io::real_wall_us;

class LoopClock {
 public:
  /// simulated = false: real clocks, scale ignored.
  LoopClock(bool simulated, double scale);

  /// Current time given the real monotonic time (dosing thread only).
  Now now(std::int64_t real_mono_us, double scale);
  /// Simulated clock only: as now(), but the simulated clock moves at most `max_advance`
  /// past the previous call's time (0: it stands still); the real time beyond that does not
  /// count, and the clock goes on from there without a jump.
  Now now_at_most(std::int64_t real_mono_us, double scale, Duration max_advance);
  [[nodiscard]] bool simulated() const { return simulated_; }
  /// Simulated clock only: the wall clock steps by `by` (an NTP step, a manual set, a
  /// DST mistake on the bench) while the monotonic clock goes on; no effect on real clocks.
  void step_wall(Duration by) {
    if (simulated_) sim_wall_minus_mono_ += by.count();
  }
  static constexpr std::int64_t kWallResolutionUs = 1000;

 private:
  bool simulated_;
  double scale_;
  std::int64_t last_real_;      // real monotonic us of the previous call
  std::int64_t sim_wall_minus_mono_;
  std::int64_t last_sim_mono_ = 0;
  std::int64_t wall_offset_;    // real clock: wall - monotonic given to the core
};

}  // namespace thecal::loop
