#include "config/tz_offsets.hpp"

#include <chrono>
#include <stdexcept>

#include <date/tz.h>

namespace thecal::config {
namespace {

const date::time_zone* find_zone(std::string_view zone) {
  // Only names made of the characters tz database names use; never a path.
  if (zone.empty() || zone.size() > 64 || zone.front() == '/' || zone.find("..") != std::string_view::npos) {
    return nullptr;
  }
  for (char c : zone) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
                    c == '_' || c == '-' || c == '+';
    if (!ok) return nullptr;
  }
  try {
    return date::locate_zone(std::string(zone));
  } catch (const std::runtime_error&) {
    return nullptr;
  }
}

using SysUs = date::sys_time<std::chrono::microseconds>;

SysUs to_sys(WallTime t) { return SysUs{std::chrono::microseconds{to_usec(t)}}; }
WallTime to_wall(date::sys_seconds t) {
  return wall_us(std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
}

}  // namespace

bool is_known_time_zone(std::string_view zone) { return find_zone(zone) != nullptr; }

std::optional<std::string> compute_utc_offsets(std::string_view zone, WallTime now, UtcOffsetTable& out) {
  out.clear();
  const date::time_zone* tz = find_zone(zone);
  if (tz == nullptr) return "unknown time zone";
  const WallTime begin = now - kTzTableBack;
  const WallTime end = now + kTzTableAhead;
  date::sys_info info = tz->get_info(std::chrono::time_point_cast<std::chrono::seconds>(to_sys(begin)));
  out.push_back(UtcOffsetChange{begin, std::chrono::duration_cast<Duration>(info.offset)});
  // Bounded: each pass moves to the next transition; the table's capacity ends it too.
  while (info.end < date::sys_seconds::max() && to_wall(info.end) < end) {
    const date::sys_seconds at = info.end;
    info = tz->get_info(at);
    const Duration offset = std::chrono::duration_cast<Duration>(info.offset);
    if (offset == out.back().offset) continue;
    if (out.size() == out.capacity()) {
      return "has more than " + std::to_string(kMaxTzTransitions) + " UTC offset changes in 20 years";
    }
    out.push_back(UtcOffsetChange{to_wall(at), offset});
  }
  return std::nullopt;
}

Duration utc_offset_at(const UtcOffsetTable& table, WallTime t) {
  Duration off = table.empty() ? Duration{0} : table.front().offset;
  for (const UtcOffsetChange& c : table) {
    if (c.from > t) break;
    off = c.offset;
  }
  return off;
}

}  // namespace thecal::config
