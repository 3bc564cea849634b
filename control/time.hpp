// Two kinds of time that must never mix (SPEC S8): the monotonic clock drives dosing,
// lockouts and the rolling 24 h; wall time (CLOCK_REALTIME) only picks flex steps and
// periodic doses, and stamps events.  Both are integer microseconds.  The clocks below
// are tags only: the core never reads a clock, its caller passes the time in.
#pragma once

#include <chrono>
#include <cstdint>

#include "control/units.hpp"

namespace thecal {

struct MonoClock {
  using rep = std::int64_t;
  using period = std::micro;
  using duration = Duration;
  using time_point = std::chrono::time_point<MonoClock, Duration>;
  static constexpr bool is_steady = true;
};

struct WallClock {
  using rep = std::int64_t;
  using period = std::micro;
  using duration = Duration;
  using time_point = std::chrono::time_point<WallClock, Duration>;
  static constexpr bool is_steady = false;
};

using MonoTime = MonoClock::time_point;  // CLOCK_MONOTONIC (or simulated) in us
using WallTime = WallClock::time_point;  // CLOCK_REALTIME (or simulated) in us since the epoch

constexpr MonoTime mono_us(std::int64_t us) { return MonoTime{Duration{us}}; }
constexpr WallTime wall_us(std::int64_t us) { return WallTime{Duration{us}}; }
constexpr std::int64_t to_usec(MonoTime t) { return t.time_since_epoch().count(); }
constexpr std::int64_t to_usec(WallTime t) { return t.time_since_epoch().count(); }

/// The time of one control step, on both clocks (the caller reads them, the core never does).
struct Now {
  MonoTime mono;
  WallTime wall;
};

}  // namespace thecal
