#include "loop/loop_clock.hpp"

namespace thecal::loop {

LoopClock::LoopClock(bool simulated, double scale)
    : simulated_(simulated),
      scale_(scale),
      real_base_(real_monotonic_us()),
      sim_mono_base_(static_cast<double>(real_base_)),
      sim_wall_minus_mono_(real_wall_us() - real_base_) {}

Now LoopClock::now(std::int64_t real_mono_us, double scale) {
  if (!simulated_) return {mono_us(real_mono_us), wall_us(real_wall_us())};
  if (scale != scale_) {
    // Rebase so the simulated clock is continuous across a scale change.
    sim_mono_base_ += static_cast<double>(real_mono_us - real_base_) * scale_;
    real_base_ = real_mono_us;
    scale_ = scale;
  }
  const auto mono = static_cast<std::int64_t>(sim_mono_base_ + static_cast<double>(real_mono_us - real_base_) * scale_);
  return {mono_us(mono), wall_us(mono + sim_wall_minus_mono_)};
}

}  // namespace thecal::loop
