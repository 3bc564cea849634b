// The simulated pump (backend: sim): motor, reservoir, encoder and sensors, driven by the
// same Actuation the real board gets.  Faults are injected from the D-Bus thread
// (org.thecal.Simulator1.InjectFault) through atomics, so the dosing thread never locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "control/board_params.hpp"
#include "io/backend.hpp"

namespace thecal::io {

enum class SimFault : std::uint8_t {
  occlusion,
  disconnect,
  motor_stall,      // the motor turns no more: no volume, no encoder pulses
  driver_fault,
  encoder_failure,  // the motor turns, the encoder is silent
  low_battery,
  bolus_button,     // the patient holds the bolus button
  count_,
};

std::optional<SimFault> sim_fault_from_string(std::string_view s);

class SimPlant final : public Backend {
 public:
  explicit SimPlant(const BoardParams& board) : board_(board) {}
  ~SimPlant() override;

  /// The plant's own record of every step it pumped, outside the journal (issue 7's crash
  /// campaign compares the two): a small file mapped shared, whose cumulative step count
  /// the dosing thread updates with a plain store after each cycle's steps (no syscall; it
  /// survives the process being killed).  Layout: "THECALTR", u64 steps, f64 uL per step.
  /// Continues the count found in an existing file.  Error text on failure.
  std::optional<std::string> open_truth_file(const std::string& path);
  /// Reads a truth file's step count (tests); nullopt if it is not one.
  static std::optional<std::uint64_t> read_truth_file(const std::string& path);

  SensorInputs read(MonoTime now) noexcept override;
  void write(const Actuation& out, MonoTime now) noexcept override;
  void safe_state() noexcept override;

  /// Any thread.
  void inject(SimFault f, bool active) noexcept;
  [[nodiscard]] bool fault(SimFault f) const noexcept;
  /// What the plant really pumped, in uL (any thread).
  [[nodiscard]] double true_delivered_ul() const noexcept { return true_ul_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t steps_seen() const noexcept { return steps_.load(std::memory_order_relaxed); }
  [[nodiscard]] bool motor_enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
  /// A pump that delivers `percent` % more (negative: less) volume per step than its
  /// calibration says, unseen by the encoder (it counts steps): the refill check finds it.
  void set_pump_drift_percent(double percent) noexcept { drift_.store(percent, std::memory_order_relaxed); }
  [[nodiscard]] double pump_drift_percent() const noexcept { return drift_.load(std::memory_order_relaxed); }

 private:
  BoardParams board_;
  std::atomic<std::uint32_t> faults_{0};
  std::atomic<double> true_ul_{0.0};
  std::atomic<double> drift_{0.0};
  std::atomic<std::uint64_t> steps_{0};
  std::atomic<bool> enabled_{false};
  std::uint64_t encoder_steps_ = 0;  // steps the encoder has seen (dosing thread only)
  volatile std::uint64_t* truth_steps_ = nullptr;  // in the mapped truth file
  void* truth_map_ = nullptr;
};

}  // namespace thecal::io
