// Buzzer cadences per alarm priority (SPEC S5, after IEC 60601-1-8's burst patterns), as a
// pure function of the monotonic clock: the core sets the buzzer level every cycle.
//
//   high:   10 pulses of 150 ms in a "3 + 2, 3 + 2" burst, repeated every 6 s
//   medium: 3 pulses of 200 ms, repeated every 8 s
//   low:    2 pulses of 200 ms, repeated every 30 s
// Distinct in rhythm and rate, so a listener tells the priorities apart without a display.
#pragma once

#include <array>
#include <cstdint>

#include "control/io_types.hpp"
#include "control/time.hpp"

namespace thecal {

struct Cadence {
  std::int64_t period_ms;
  std::int64_t pulse_ms;
  std::array<std::int64_t, 10> starts_ms;  // pulse starts within the period
  std::size_t pulses;
};

constexpr Cadence cadence_of(BuzzerPattern p) {
  switch (p) {
    case BuzzerPattern::high: return {6000, 150, {0, 250, 500, 1000, 1250, 2000, 2250, 2500, 3000, 3250}, 10};
    case BuzzerPattern::medium: return {8000, 200, {0, 400, 800}, 3};
    case BuzzerPattern::low: return {30000, 200, {0, 400}, 2};
    case BuzzerPattern::off: break;
  }
  return {1000, 0, {}, 0};
}

/// Buzzer level at `t` for pattern `p`; the pattern starts at `since`.
constexpr bool buzzer_level(BuzzerPattern p, MonoTime since, MonoTime t) {
  const Cadence c = cadence_of(p);
  if (c.pulses == 0 || t < since) return false;
  const std::int64_t ms = (to_usec(t) - to_usec(since)) / 1000 % c.period_ms;
  for (std::size_t i = 0; i < c.pulses; ++i) {
    if (ms >= c.starts_ms[i] && ms < c.starts_ms[i] + c.pulse_ms) return true;
  }
  return false;
}

}  // namespace thecal
