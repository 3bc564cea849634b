// What the flight recorder keeps from the dosing thread (SPEC S15, docs/recorder.md): the
// inputs of each cycle that the replay cannot predict, as fixed-size io::LoopInput values.
//
// The replay predicts: each cycle's time is the previous one + `period` on both clocks, and
// the plant is ideal (thecal::IdealPlant: every step executed, the encoder at
// floor(steps / steps_per_pulse), every other sensor unchanged).  Only what differs from
// that prediction is kept:
//   clock    the first cycle, a late cycle, a held or slowed simulated clock, a wall-clock
//            step, a time-scale change (the new period); a clock that stood still has
//            period 0 (the next cycles are predicted to stand still too, until it moves);
//   command  every command, at the cycle it was applied, with its reply;
//   sensors  the sensor inputs whenever they differ from the prediction (the prediction
//            then continues from them, with the encoder's step phase at zero).
// and, every kCheckpoint of monotonic time without a record, a clock record all the same:
// its status digest bounds how far a replay runs before it is checked, and it tells the
// replay how far the run went on after its last real input.
// Between two kept inputs the replay jumps with PumpCore::fast_forward, which is exact
// there because nothing it assumes was contradicted.  No allocation, no I/O.
#pragma once

#include <cstdint>

#include "control/pump_core.hpp"
#include "io/recording.hpp"

namespace thecal::loop {

class InputCapture {
 public:
  static constexpr Duration kCheckpoint = minutes(10);
  explicit InputCapture(std::uint32_t steps_per_pulse) : spp_(steps_per_pulse) {}

  /// Start of a cycle, before its commands.  `period`: how far the next cycle is expected
  /// to move both clocks (the loop period, times the time scale in the simulator).
  template <class Sink>
  void begin_cycle(Now now, Duration period, const Status& st, Sink&& sink) {
    const bool predicted = started_ && now.mono == prev_.mono + period_ && now.wall == prev_.wall + period_;
    // A clock that stood still this cycle (the simulator holding its world for a grant) is
    // predicted to stand still in the next ones too: one record per hold, not per cycle.
    const bool held = started_ && now.mono == prev_.mono && now.wall == prev_.wall;
    if (held) period = Duration{0};
    if (!predicted || period != period_ || now.mono - last_clock_ >= kCheckpoint) {
      last_clock_ = now.mono;
      io::LoopInput r;
      r.kind = io::RecKind::clock;
      r.cycle = cycle_;
      r.digest = io::status_digest(st);
      r.now = now;
      r.period = period;
      sink(r);
      period_ = period;
    }
    started_ = true;
    prev_ = now;
  }

  /// A command applied this cycle; `digest`: the status digest before it was applied.
  template <class Sink>
  void command(const Command& cmd, const Reply& reply, std::uint64_t digest, Sink&& sink) {
    io::LoopInput r;
    r.kind = io::RecKind::command;
    r.cycle = cycle_;
    r.digest = digest;
    r.cmd = cmd;
    r.reply = reply;
    sink(r);
  }

  /// The sensor inputs read this cycle (after the commands, before the tick).
  template <class Sink>
  void sensors(const SensorInputs& in, const Status& st, Sink&& sink) {
    const SensorInputs& p = plant_.in;
    const bool same = in.occlusion == p.occlusion && in.disconnect == p.disconnect &&
                      in.driver_fault == p.driver_fault && in.low_battery == p.low_battery &&
                      in.bolus_button == p.bolus_button && in.hardware_ok == p.hardware_ok &&
                      in.encoder_pulses == p.encoder_pulses;
    if (same) return;
    io::LoopInput r;
    r.kind = io::RecKind::sensors;
    r.cycle = cycle_;
    r.digest = io::status_digest(st);
    r.in = in;
    sink(r);
    resync(plant_, in, spp_);
  }

  /// End of a cycle: the steps it commanded.
  void end_cycle(std::uint32_t steps) {
    plant_.execute(steps, spp_);
    ++cycle_;
  }

  [[nodiscard]] std::uint64_t cycle() const { return cycle_; }
  /// The prediction as it stands (a snapshot record carries it: the replay goes on from it).
  [[nodiscard]] const IdealPlant& plant() const { return plant_; }
  [[nodiscard]] Duration period() const { return period_; }

  /// The prediction continues from recorded inputs `in` (the replay does the same).
  static void resync(IdealPlant& plant, const SensorInputs& in, std::uint32_t spp) {
    plant.in = in;
    plant.steps = in.encoder_pulses * spp;
  }

 private:
  std::uint32_t spp_;
  IdealPlant plant_{};
  bool started_ = false;
  Now prev_{};
  Duration period_{0};
  MonoTime last_clock_{};
  std::uint64_t cycle_ = 0;
};

}  // namespace thecal::loop
