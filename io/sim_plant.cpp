#include "io/sim_plant.hpp"

#include <array>

namespace thecal::io {

namespace {
constexpr std::array<std::string_view, static_cast<std::size_t>(SimFault::count_)> kNames{
    "occlusion", "disconnect", "motor_stall", "driver_fault", "encoder_failure", "low_battery", "bolus_button"};

constexpr std::uint32_t bit(SimFault f) { return 1u << static_cast<unsigned>(f); }
}  // namespace

std::optional<SimFault> sim_fault_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == s) return static_cast<SimFault>(i);
  }
  return std::nullopt;
}

void SimPlant::inject(SimFault f, bool active) noexcept {
  if (active) faults_.fetch_or(bit(f), std::memory_order_relaxed);
  else faults_.fetch_and(~bit(f), std::memory_order_relaxed);
}

bool SimPlant::fault(SimFault f) const noexcept { return (faults_.load(std::memory_order_relaxed) & bit(f)) != 0; }

SensorInputs SimPlant::read(MonoTime /*now*/) noexcept {
  SensorInputs in;
  in.occlusion = fault(SimFault::occlusion);
  in.disconnect = fault(SimFault::disconnect);
  in.driver_fault = fault(SimFault::driver_fault);
  in.low_battery = fault(SimFault::low_battery);
  in.bolus_button = fault(SimFault::bolus_button);
  in.encoder_pulses = encoder_steps_ / (board_.steps_per_encoder_pulse == 0 ? 1 : board_.steps_per_encoder_pulse);
  return in;
}

void SimPlant::write(const Actuation& out, MonoTime /*now*/) noexcept {
  enabled_.store(out.motor_enable, std::memory_order_relaxed);
  if (!out.motor_enable || out.steps == 0) return;
  // A driver in fault or a stalled motor does not move; a failed encoder misses pulses.
  if (fault(SimFault::driver_fault) || fault(SimFault::motor_stall)) return;
  steps_.fetch_add(out.steps, std::memory_order_relaxed);
  true_ul_.store(true_ul_.load(std::memory_order_relaxed) + to_uL(board_.volume_per_step) * out.steps,
                 std::memory_order_relaxed);
  if (!fault(SimFault::encoder_failure)) encoder_steps_ += out.steps;
}

void SimPlant::safe_state() noexcept { enabled_.store(false, std::memory_order_relaxed); }

}  // namespace thecal::io
