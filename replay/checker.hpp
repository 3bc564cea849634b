// The independent checker of thecal-replay (SPEC S15: "re-checks S1 to S6 and S8"): it sees
// what the replay sees (each cycle's time, the steps commanded, the status after each input
// and jump, commands and their replies, sensor inputs, events) and re-derives the rules with
// its own arithmetic, never with the core's functions.  docs/recorder.md says what each
// check covers.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "control/pump_core.hpp"
#include "io/recording.hpp"

namespace thecal::replay {

struct Violation {
  std::string rule;  // "S1", ...
  WallTime wall{};
  std::string what;
};

class Checker {
 public:
  explicit Checker(std::vector<Violation>& out) : out_(out) {}
  void begin_run(const BoardParams& b, const std::optional<TherapyPlan>& plan);
  /// A cycle's time from a clock record.
  void clock(Now now);
  /// A command applied, its reply, and the state before it.
  void command(const io::Recorded& rec, const Reply& reply, PumpState before, Now now);
  void sensors(const SensorInputs& in, std::uint64_t cycle, Now now);
  /// `n` steps commanded over cycles first..last; `resumed`: a Start or Resume was granted.
  void steps(std::uint64_t first_cycle, std::uint64_t last_cycle, std::uint64_t n, Now now, bool resumed);
  /// The status after an input or a jump.
  void status(const Status& s, Now now);
  void event(const Event& e);
  void end_run();

 private:
  struct MassSample {
    MonoTime t;
    double m;
  };
  void violation(std::string rule, Now now, std::string what);
  std::vector<Violation>& out_;
  BoardParams board_{};
  std::optional<TherapyPlan> plan_;
  std::optional<std::uint64_t> fault_since_;
  std::deque<MassSample> mass_;
  std::optional<std::int64_t> last_offset_;
  bool pending_jump_ = false;
  Now jump_at_{};
  std::vector<MonoTime> patient_starts_;
  std::array<bool, 3> bolus_on_{};  // by BolusSource, from the events
  std::optional<MonoTime> high_at_;
};

}  // namespace thecal::replay
