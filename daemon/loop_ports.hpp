// The application's ports onto the real dosing thread and the simulated plant: thecald's
// side of app::LoopChannel and app::SimulatorPort (the unit tests have a synchronous one).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "app/loop_channel.hpp"
#include "io/log.hpp"
#include "io/recording.hpp"
#include "io/sim_plant.hpp"
#include "loop/dosing_loop.hpp"

namespace thecal::daemon {

class DosingLoopChannel final : public app::LoopChannel {
 public:
  /// `recorder`: the flight recorder (S15) gets the loop's inputs and the core's events;
  /// `journal_syncs`: the journal's fsync count, the recorder is synced after each.
  /// `board`: written into each mid-run snapshot (a segment must replay alone).
  explicit DosingLoopChannel(loop::DosingLoop& loop, io::RecordingStore* recorder = nullptr,
                             std::function<std::uint64_t()> journal_syncs = {}, const BoardParams& board = {})
      : loop_(loop), recorder_(recorder), journal_syncs_(std::move(journal_syncs)), board_(board),
        last_snapshot_(loop.now().mono) {}
  [[nodiscard]] bool post(const Command& cmd) override { return loop_.post(cmd); }
  void drain_replies(const std::function<void(const Reply&)>& f) override {
    if (recorder_ == nullptr) {
      loop_.drain_replies(f);
      return;
    }
    // Events first, then the inputs, then the replies.  The dosing thread pushes a cycle's
    // inputs before its events and its replies after them, so every event and reply taken
    // here has its inputs among the inputs taken after it; the events are written after
    // those inputs.  A command's plan is still ours until its reply is taken.
    //
    // A mid-run snapshot (one a day of pump time, io::kSegmentSpan) starts a new segment:
    // the events the loop handed over before it end the old segment, the others go to the
    // new one (after the snapshot record, with the next turn's inputs).
    std::vector<std::pair<std::uint64_t, Event>> events = std::move(carry_);
    carry_.clear();
    auto take = [&](const Event& e) {
      events.emplace_back(events_seen_++, e);
      held_.push_back(e);
    };
    loop_.drain_events(take);
    bool rotated = false;
    loop_.drain_inputs([&](const io::LoopInput& in) {
      if (in.kind != io::RecKind::snapshot) {
        recorder_->append(in.kind == io::RecKind::gap ? io::encode_gap(in.cycle) : io::encode_input(in));
        return;
      }
      loop_.drain_events(take);  // every event pushed before the snapshot is visible now
      std::vector<std::pair<std::uint64_t, Event>> after;
      for (const auto& [seq, e] : events) {
        if (seq < in.events_before) {
          recorder_->append(io::encode_event(e));
        } else {
          after.emplace_back(seq, e);
        }
      }
      events = std::move(after);
      if (in.image != nullptr) {
        if (auto err = recorder_->rotate(in.now.wall, io::encode_snapshot(board_, in))) {
          log_warning("The flight recorder goes on in the same segment: %s", err->c_str());
        }
      }
      image_.reset();
      rotated = true;
    });
    if (rotated) {
      carry_ = std::move(events);
    } else {
      for (const auto& [seq, e] : events) recorder_->append(io::encode_event(e));
    }
    if (!image_ && loop_.now().mono - last_snapshot_ >= io::kSegmentSpan) {
      image_ = std::make_unique<CoreImage>();
      if (loop_.request_snapshot(image_.get())) {
        last_snapshot_ = loop_.now().mono;
      } else {
        image_.reset();
      }
    }
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
  BoardParams board_;
  MonoTime last_snapshot_;   // pump time of the last snapshot asked for (or the start)
  std::unique_ptr<CoreImage> image_;  // the buffer the loop fills, while one is asked for
  std::uint64_t events_seen_ = 0;     // events taken from the loop so far
  std::vector<std::pair<std::uint64_t, Event>> carry_;  // after a snapshot: the next turn's
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
