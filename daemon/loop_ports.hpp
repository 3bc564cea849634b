// The application's ports onto the real dosing thread and the simulated plant: thecald's
// side of app::LoopChannel and app::SimulatorPort (the unit tests have a synchronous one).
#pragma once

#include <vector>

#include "app/loop_channel.hpp"
#include "io/recording.hpp"
#include "io/sim_plant.hpp"
#include "loop/dosing_loop.hpp"

namespace thecal::daemon {

class DosingLoopChannel final : public app::LoopChannel {
 public:
  /// `recorder`: the flight recorder (S15) gets the loop's inputs and the core's events;
  /// `journal_syncs`: the journal's fsync count, the recorder is synced after each.
  explicit DosingLoopChannel(loop::DosingLoop& loop, io::RecordingStore* recorder = nullptr,
                             std::function<std::uint64_t()> journal_syncs = {})
      : loop_(loop), recorder_(recorder), journal_syncs_(std::move(journal_syncs)) {}
  [[nodiscard]] bool post(const Command& cmd) override { return loop_.post(cmd); }
  void drain_replies(const std::function<void(const Reply&)>& f) override {
    if (recorder_ == nullptr) {
      loop_.drain_replies(f);
      return;
    }
    // Events first, then the inputs, then the replies.  The dosing thread pushes a cycle's
    // inputs before its events and its replies after them, so every event and reply taken
    // here has its inputs in the recording before it; and a command's plan is still ours
    // until its reply is taken.
    loop_.drain_events([this](const Event& e) {
      recorder_->append(io::encode_event(e));
      held_.push_back(e);
    });
    loop_.drain_inputs([this](const io::LoopInput& in) {
      recorder_->append(in.kind == io::RecKind::gap ? io::encode_gap(in.cycle) : io::encode_input(in));
    });
    loop_.drain_replies(f);
    (void)recorder_->flush();
    const std::uint64_t syncs = journal_syncs_ ? journal_syncs_() : 0;
    if (syncs != synced_at_) {
      synced_at_ = syncs;
      (void)recorder_->sync();
    }
  }
  void drain_events(const std::function<void(const Event&)>& f) override {
    if (recorder_ == nullptr) {
      loop_.drain_events(f);
      return;
    }
    for (const auto& e : held_) f(e);
    held_.clear();
  }
  bool latest_status(Status& out) override { return loop_.latest_status(out); }
  [[nodiscard]] Now now() const override { return loop_.now(); }
  [[nodiscard]] loop::LoopDiagnostics diagnostics() const override { return loop_.diagnostics(); }
  std::uint64_t take_interval_max() override { return loop_.take_interval_max(); }

 private:
  loop::DosingLoop& loop_;
  io::RecordingStore* recorder_;
  std::function<std::uint64_t()> journal_syncs_;
  std::uint64_t synced_at_ = 0;
  std::vector<Event> held_;  // taken with the inputs, handed on by drain_events
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
