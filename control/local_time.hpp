// Local time of day from wall time, through the plan's precomputed UTC offset table (no tz
// lookup, no allocation).  Used only to pick flex steps and periodic doses (SPEC S8).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "control/therapy_plan.hpp"
#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

struct LocalTime {
  std::int64_t day = 0;  // local days since 1970-01-01 (local midnight boundaries)
  Duration time_of_day{0};  // [0, 24 h)
};

/// The UTC offset in force at `w`: the last table entry whose `from` is <= w; the first
/// entry's offset before it; zero with an empty table (UTC).
inline Duration utc_offset_at(const TherapyPlan& plan, WallTime w) {
  const auto& t = plan.utc_offsets;
  if (t.empty()) return Duration{0};
  auto it = std::upper_bound(t.begin(), t.end(), w,
                             [](WallTime x, const UtcOffsetChange& c) { return x < c.from; });
  if (it == t.begin()) return t.front().offset;
  return std::prev(it)->offset;
}

/// The first offset change strictly after `w`, if any.
inline std::optional<WallTime> next_offset_change(const TherapyPlan& plan, WallTime w) {
  const auto& t = plan.utc_offsets;
  auto it = std::upper_bound(t.begin(), t.end(), w,
                             [](WallTime x, const UtcOffsetChange& c) { return x < c.from; });
  if (it == t.end()) return std::nullopt;
  return it->from;
}

inline LocalTime local_time(const TherapyPlan& plan, WallTime w) {
  const std::int64_t local = to_usec(w) + to_usec(utc_offset_at(plan, w));
  const std::int64_t d = to_usec(days(1));
  std::int64_t day = local / d;
  std::int64_t rem = local % d;
  if (rem < 0) {
    rem += d;
    --day;
  }
  return {day, Duration{rem}};
}

}  // namespace thecal
