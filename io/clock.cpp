#include "io/clock.hpp"

#include <ctime>

namespace thecal::io {

namespace {
std::int64_t read_us(clockid_t id) {
  timespec ts{};
  // Only an invalid clock id fails; both ids below are always valid.
  (void)clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}
}  // namespace

std::int64_t real_monotonic_us() { return read_us(CLOCK_MONOTONIC); }
std::int64_t real_wall_us() { return read_us(CLOCK_REALTIME); }

}  // namespace thecal::io
