// The pump hardware as the dosing thread sees it: read the inputs, write the outputs, and
// go to the safe state.  The simulated plant (io/sim_plant.hpp) and the libgpiod backend
// implement it, so the core cannot tell them apart.  Every call is made from the dosing
// thread, must not block, allocate or throw, and gets the (possibly simulated) monotonic
// time passed in.
#pragma once

#include "control/io_types.hpp"
#include "control/time.hpp"

namespace thecal::io {

class Backend {
 public:
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  /// Samples every input (debounced, logical levels).
  virtual SensorInputs read(MonoTime now) noexcept = 0;
  /// Drives the outputs for this cycle: enable, `steps` pulses, buzzer, heartbeat.
  virtual void write(const Actuation& out, MonoTime now) noexcept = 0;
  /// Motor disabled, buzzer off: called at start before anything else, and at exit.
  virtual void safe_state() noexcept = 0;
};

}  // namespace thecal::io
