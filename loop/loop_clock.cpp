#include "loop/loop_clock.hpp"

#include <algorithm>

namespace thecal::loop {

LoopClock::LoopClock(bool simulated, double scale)
    : simulated_(simulated),
      scale_(scale),
      real_base_(real_monotonic_us()),
      sim_mono_base_(static_cast<double>(real_base_)),
      sim_wall_minus_mono_(real_wall_us() - real_base_),
      last_sim_mono_(real_base_) {}

Now LoopClock::now(std::int64_t real_mono_us, double scale) {
  if (!simulated_) return {mono_us(real_mono_us), wall_us(real_wall_us())};
  if (scale != scale_) {
    // Rebase so the simulated clock is continuous across a scale change.
    sim_mono_base_ += static_cast<double>(real_mono_us - real_base_) * scale_;
    real_base_ = real_mono_us;
    scale_ = scale;
  }
  const auto mono = static_cast<std::int64_t>(sim_mono_base_ + static_cast<double>(real_mono_us - real_base_) * scale_);
  last_sim_mono_ = mono;
  return {mono_us(mono), wall_us(mono + sim_wall_minus_mono_)};
}

Now LoopClock::now_at_most(std::int64_t real_mono_us, double scale, Duration max_advance) {
  const std::int64_t before = last_sim_mono_;
  const Now n = now(real_mono_us, scale);
  if (!simulated_ || to_usec(n.mono) - before <= max_advance.count()) return n;
  // Only `max_advance` of simulated time passes; the clock resumes from there.
  last_sim_mono_ = before + std::max<std::int64_t>(0, max_advance.count());
  sim_mono_base_ = static_cast<double>(last_sim_mono_);
  real_base_ = real_mono_us;
  return {mono_us(last_sim_mono_), wall_us(last_sim_mono_ + sim_wall_minus_mono_)};
}

}  // namespace thecal::loop
