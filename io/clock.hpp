// The real clocks, read as systemd does: integer microseconds.  The dosing core never
// reads a clock (its time is passed in); the loop and the application read these.
#pragma once

#include <cstdint>

namespace thecal::io {

/// CLOCK_MONOTONIC in us.
std::int64_t real_monotonic_us();
/// CLOCK_REALTIME in us.
std::int64_t real_wall_us();

}  // namespace thecal::io
