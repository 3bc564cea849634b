// The one way the application talks to the dosing thread (loop/DosingLoop in thecald, a
// synchronous PumpCore in the unit tests): commands in; replies, events and the newest
// status out.  Every call is made from the application's thread and never blocks.
#pragma once

#include <cstdint>
#include <functional>

#include "control/pump_core.hpp"
#include "loop/latency_histogram.hpp"

namespace thecal::app {

class LoopChannel {
 public:
  LoopChannel() = default;
  LoopChannel(const LoopChannel&) = delete;
  LoopChannel& operator=(const LoopChannel&) = delete;
  virtual ~LoopChannel() = default;

  /// Queues a command for the next cycle; false if the queue is full (the call is refused).
  [[nodiscard]] virtual bool post(const Command& cmd) = 0;
  /// Hands over the replies, then the events, the dosing thread published since the last call.
  virtual void drain_replies(const std::function<void(const Reply&)>& f) = 0;
  virtual void drain_events(const std::function<void(const Event&)>& f) = 0;
  /// The newest status snapshot, if one arrived since the last call.
  virtual bool latest_status(Status& out) = 0;
  /// The loop's current time (simulated with the sim backend), at most one cycle old.
  [[nodiscard]] virtual Now now() const = 0;
  /// Timing figures (org.thecal.Diagnostics1).
  [[nodiscard]] virtual loop::LoopDiagnostics diagnostics() const = 0;
  /// The exact largest wake-up latency (ns) since the previous call.
  virtual std::uint64_t take_interval_max() = 0;
};

/// The simulated world (backend sim only, org.thecal.Simulator1).
class SimulatorPort {
 public:
  SimulatorPort() = default;
  SimulatorPort(const SimulatorPort&) = delete;
  SimulatorPort& operator=(const SimulatorPort&) = delete;
  virtual ~SimulatorPort() = default;
  /// False if `fault` is not one of the simulator's faults.
  [[nodiscard]] virtual bool inject(std::string_view fault, bool active) = 0;
  [[nodiscard]] virtual double true_delivered_ul() const = 0;
  [[nodiscard]] virtual double time_scale() const = 0;
  virtual void set_time_scale(double scale) = 0;
};

}  // namespace thecal::app
