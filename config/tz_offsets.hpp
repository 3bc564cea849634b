// UTC offset tables from the system tz database (Howard Hinnant's date library, which
// reads /usr/share/zoneinfo), precomputed at load so that the dosing core needs no tz
// lookups.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/therapy_plan.hpp"
#include "control/time.hpp"

namespace thecal::config {

using UtcOffsetTable = boost::container::static_vector<UtcOffsetChange, kMaxTzTransitions>;

/// How far back and ahead the table reaches from `now`.
inline constexpr Duration kTzTableBack = days(2);
inline constexpr Duration kTzTableAhead = days(20 * 365 + 5);  // about 20 years

/// True when `zone` names a zone of the tz database.
bool is_known_time_zone(std::string_view zone);

/// Fills `out` with the offsets in force from now - kTzTableBack to now + kTzTableAhead:
/// the first entry holds for all earlier times, each later one from its `from` on.  Only
/// changes of the total UTC offset are listed.  Returns an error text instead when the zone
/// is unknown or has more changes than the table holds.
std::optional<std::string> compute_utc_offsets(std::string_view zone, WallTime now, UtcOffsetTable& out);

/// The offset in force at `t` per a table built above.
Duration utc_offset_at(const UtcOffsetTable& table, WallTime t);

}  // namespace thecal::config
