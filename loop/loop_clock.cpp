#include "loop/loop_clock.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace thecal::loop {

LoopClock::LoopClock(bool simulated, double scale)
    : simulated_(simulated),
      scale_(scale),
      last_real_(real_monotonic_us()),
      sim_wall_minus_mono_(real_wall_us() - last_real_),
      last_sim_mono_(last_real_),
      wall_offset_(real_wall_us() - real_monotonic_us()) {}

Now LoopClock::now(std::int64_t real_mono_us, double scale) {
  if (!simulated_) {
    const std::int64_t off = real_wall_us() - real_monotonic_us();
    if (std::llabs(off - wall_offset_) > kWallResolutionUs) wall_offset_ = off;
    return {mono_us(real_mono_us), wall_us(real_mono_us + wall_offset_)};
  }
  // The time since the previous call ran at the scale then in force; the new one counts
  // from here (continuous across a change).
  const auto adv = std::llround(static_cast<double>(real_mono_us - last_real_) * scale_);
  scale_ = scale;
  last_real_ = real_mono_us;
  last_sim_mono_ += std::max<std::int64_t>(0, adv);
  return {mono_us(last_sim_mono_), wall_us(last_sim_mono_ + sim_wall_minus_mono_)};
}

Now LoopClock::now_at_most(std::int64_t real_mono_us, double scale, Duration max_advance) {
  if (!simulated_) return now(real_mono_us, scale);
  const auto natural = std::llround(static_cast<double>(real_mono_us - last_real_) * scale_);
  scale_ = scale;
  last_real_ = real_mono_us;
  // Only `max_advance` of simulated time passes; the real time beyond it does not count.
  last_sim_mono_ += std::clamp<std::int64_t>(natural, 0, std::max<std::int64_t>(0, max_advance.count()));
  return {mono_us(last_sim_mono_), wall_us(last_sim_mono_ + sim_wall_minus_mono_)};
}

}  // namespace thecal::loop
