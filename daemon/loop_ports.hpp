// The application's ports onto the real dosing thread and the simulated plant: thecald's
// side of app::LoopChannel and app::SimulatorPort (the unit tests have a synchronous one).
#pragma once

#include "app/loop_channel.hpp"
#include "io/sim_plant.hpp"
#include "loop/dosing_loop.hpp"

namespace thecal::daemon {

class DosingLoopChannel final : public app::LoopChannel {
 public:
  explicit DosingLoopChannel(loop::DosingLoop& loop) : loop_(loop) {}
  [[nodiscard]] bool post(const Command& cmd) override { return loop_.post(cmd); }
  void drain_replies(const std::function<void(const Reply&)>& f) override { loop_.drain_replies(f); }
  void drain_events(const std::function<void(const Event&)>& f) override { loop_.drain_events(f); }
  bool latest_status(Status& out) override { return loop_.latest_status(out); }
  [[nodiscard]] Now now() const override { return loop_.now(); }
  [[nodiscard]] loop::LoopDiagnostics diagnostics() const override { return loop_.diagnostics(); }
  std::uint64_t take_interval_max() override { return loop_.take_interval_max(); }

 private:
  loop::DosingLoop& loop_;
};

class SimulatorPort final : public app::SimulatorPort {
 public:
  SimulatorPort(io::SimPlant& plant, loop::DosingLoop& loop) : plant_(plant), loop_(loop) {}
  [[nodiscard]] bool inject(std::string_view fault, bool active) override {
    const auto f = io::sim_fault_from_string(fault);
    if (!f) return false;
    plant_.inject(*f, active);
    return true;
  }
  [[nodiscard]] double true_delivered_ul() const override { return plant_.true_delivered_ul(); }
  [[nodiscard]] double time_scale() const override { return loop_.time_scale(); }
  void set_time_scale(double scale) override { loop_.set_time_scale(scale); }

 private:
  io::SimPlant& plant_;
  loop::DosingLoop& loop_;
};

}  // namespace thecal::daemon
