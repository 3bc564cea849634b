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

/// TestAlarm (SPEC 4): each priority's pattern once, high, then medium, then low, a second
/// of silence between them, so that a patient learns them.  `ms` counts from the start.
inline constexpr std::int64_t kAlarmTestMediumMs = 4400;  // high's last pulse ends at 3400
inline constexpr std::int64_t kAlarmTestLowMs = 6400;     // medium's last pulse ends at 5400
inline constexpr std::int64_t kAlarmTestMs = 7000;        // low's last pulse ends here

constexpr BuzzerPattern alarm_test_pattern(std::int64_t ms) {
  if (ms < 0 || ms >= kAlarmTestMs) return BuzzerPattern::off;
  if (ms >= kAlarmTestLowMs) return BuzzerPattern::low;
  if (ms >= kAlarmTestMediumMs) return BuzzerPattern::medium;
  return BuzzerPattern::high;
}

/// Buzzer level `ms` after the start of an alarm test: one period's pulses of each pattern.
constexpr bool alarm_test_level(std::int64_t ms) {
  const BuzzerPattern p = alarm_test_pattern(ms);
  if (p == BuzzerPattern::off) return false;
  const std::int64_t start = p == BuzzerPattern::high ? 0 : p == BuzzerPattern::medium ? kAlarmTestMediumMs : kAlarmTestLowMs;
  const Cadence c = cadence_of(p);
  const std::int64_t in = ms - start;
  for (std::size_t i = 0; i < c.pulses; ++i) {
    if (in >= c.starts_ms[i] && in < c.starts_ms[i] + c.pulse_ms) return true;
  }
  return false;
}

}  // namespace thecal
