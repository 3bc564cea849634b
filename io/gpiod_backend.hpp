// The pump on real GPIO lines through libgpiod 1.6 (the chip/line C API; Debian 12 and
// Raspberry Pi OS ship 1.6).  Same interface as the simulated plant (io/backend.hpp), so
// the core cannot tell them apart.
//
// Lifecycle:
//   GpiodBackend::open(config, options)   main thread, before the dosing thread starts:
//       opens the chip (name, /dev path or label), requests `enable` as an output at its
//       inactive level before any other line, then the other outputs at their safe levels
//       (step low, heartbeat low, buzzer off, dir forward) in the same request that takes
//       them, then the inputs with active-low and bias, the encoder for rising-edge events
//       on a non-blocking fd.  Any failure: every line taken so far is released (enable
//       driven inactive first) and a text naming the chip, line and errno comes back.
//   read() / write()                        dosing thread; noexcept, no allocation, no
//       blocking: GPIO ioctls, a non-blocking read of the encoder's event fd, and the
//       busy-wait of the step pulses (bounded by a per-cycle budget).
//   safe_state()                            any thread, also a fatal-signal handler
//       (ioctls only): motor disabled, buzzer off, step low.
//   ~GpiodBackend()                         safe state, then the lines are released.
//
// A GPIO ioctl that fails at run time marks the hardware as not OK for good
// (SensorInputs::hardware_ok = false: the core stops the motor and raises the high alarm
// hardware_fault), disables the motor if it still can, and never throws.
//
// Logical levels: every line's level is logical (active = 1) after `active_low`.  `dir`
// is driven active for the pumping direction.  `enable` active = motor driver enabled.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "io/backend.hpp"
#include "io/gpiod_logic.hpp"

struct gpiod_chip;
struct gpiod_line;

namespace thecal::io {

enum class GpioRole : std::uint8_t {
  // outputs, in request order: enable first of all
  enable,
  step,
  dir,
  heartbeat,
  buzzer,
  // inputs
  fault,
  encoder,
  occlusion,
  disconnect,
  bolus_button,
  low_battery,
  count_,
};
constexpr std::size_t kGpioRoles = static_cast<std::size_t>(GpioRole::count_);

enum class GpioBias : std::uint8_t { as_is, disabled, pull_up, pull_down };

/// One line of the board (thecald.yaml gpio.lines.*; daemon/ converts the config into these).
struct GpioLineSpec {
  std::optional<unsigned> offset;  // either an offset ...
  std::string name;                // ... or a line name
  bool active_low = false;
  GpioBias bias = GpioBias::as_is;
  Duration debounce{0};
};

/// The chip (name, /dev path or label) and its lines by role name ("bolus_button").
struct GpioBoard {
  std::string chip = "gpiochip0";
  std::map<std::string, GpioLineSpec> lines;
};
/// The thecald.yaml key of a role ("bolus_button").
const char* to_string(GpioRole r) noexcept;

struct GpiodOptions {
  std::string consumer = "thecald";
  PulseTiming pulse;            // step pulse high / low minimum (DRV8825 default)
  Duration loop_period = msec(1);
  /// Share of the loop period that step pulses may take; the rest is the loop's.
  double pulse_budget = 0.25;
  /// Steps carried over to later cycles at most (a burst beyond is dropped: S7-safe).
  std::uint32_t max_pending_steps = 1024;
};

/// Counters for diagnostics (relaxed atomics: any thread may read them).
struct GpiodStats {
  std::uint64_t steps_issued = 0;
  std::uint64_t steps_dropped = 0;
  std::uint64_t encoder_edges = 0;
  std::uint64_t encoder_bounces = 0;
  std::uint64_t io_errors = 0;
  int last_errno = 0;
  GpioRole last_error_role = GpioRole::count_;
};

class GpiodBackend final : public Backend {
 public:
  /// The backend, or a text saying what could not be opened and why.
  static std::variant<std::unique_ptr<GpiodBackend>, std::string> open(const GpioBoard& cfg,
                                                                       const GpiodOptions& opt);
  ~GpiodBackend() override;

  SensorInputs read(MonoTime now) noexcept override;
  void write(const Actuation& out, MonoTime now) noexcept override;
  void safe_state() noexcept override;

  [[nodiscard]] GpiodStats stats() const noexcept;
  [[nodiscard]] bool hardware_ok() const noexcept { return hw_ok_.load(std::memory_order_relaxed); }
  /// Step pulses issued per cycle at most (from the period, the budget and the timing).
  [[nodiscard]] std::uint32_t max_steps_per_cycle() const noexcept { return steps_.max_per_cycle(); }

 private:
  GpiodBackend() = default;
  std::string request_all(const GpioBoard& cfg);
  void io_error(GpioRole role, int err) noexcept;
  bool set(GpioRole role, bool level) noexcept;
  int get(GpioRole role) noexcept;
  void read_encoder() noexcept;
  void release() noexcept;

  gpiod_chip* chip_ = nullptr;
  std::array<gpiod_line*, kGpioRoles> lines_{};
  std::array<Debouncer, kGpioRoles> debounce_{};
  GpiodOptions opt_;
  std::int64_t budget_ns_ = 0;
  int encoder_fd_ = -1;
  EdgeCounter encoder_;
  StepQueue steps_;
  SensorInputs last_{};
  // Levels as last driven; atomic because safe_state() may run on another thread.
  std::atomic<bool> enabled_{false};
  std::atomic<bool> buzzer_{false};
  bool heartbeat_ = false;

  std::atomic<bool> hw_ok_{true};
  std::atomic<std::uint64_t> stat_steps_{0};
  std::atomic<std::uint64_t> stat_dropped_{0};
  std::atomic<std::uint64_t> stat_edges_{0};
  std::atomic<std::uint64_t> stat_bounces_{0};
  std::atomic<std::uint64_t> stat_errors_{0};
  std::atomic<int> last_errno_{0};
  std::atomic<std::uint8_t> last_error_role_{static_cast<std::uint8_t>(GpioRole::count_)};
};

}  // namespace thecal::io
