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
#include <string_view>
#include <utility>
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
  /// Silence after an acknowledgement (SPEC S5: "at most 2 minutes"; thecal's choice is
  /// exactly 2 minutes, docs/alarms.md): an acknowledged alarm that is still active sounds
  /// again after it.
  static constexpr Duration kSilence = minutes(2);
  /// TestAlarm's patterns own the buzzer this long (unless a high alarm sounds).
  static constexpr Duration kAlarmTest = seconds(7);
  /// Rounding between the core's arithmetic and this checker's (both IEEE doubles, in
  /// another order): a relative 1e-9 of the figure compared, plus 1 pg (the core's ledger
  /// rounds each addition up to whole picograms).
  static constexpr double kRelTol = 1e-9;
  static constexpr double kAbsTolMcg = 1e-6;

  explicit Checker(std::vector<Violation>& out) : out_(out) {}
  /// A run without a recorded state (tests): empty catheter of the plan's volume, nothing
  /// in the reservoir but the plan's solution, no history.
  void begin_run(const BoardParams& b, const std::optional<TherapyPlan>& plan);
  /// A run from its start record: the state the core was restored to (catheter contents,
  /// reservoir, rolling-24 h history per drug, alarms) is this checker's starting point.
  void begin_run(const BoardParams& b, const CoreState& state);
  /// A cycle's time from a clock record.
  void clock(Now now);
  /// A command applied, its reply, and the state before it.
  void command(const io::Recorded& rec, const Reply& reply, PumpState before, Now now);
  void sensors(const SensorInputs& in, std::uint64_t cycle, Now now);
  /// `n` steps commanded over cycles first..last; `resumed`: a Start or Resume was granted.
  void steps(std::uint64_t first_cycle, std::uint64_t last_cycle, std::uint64_t n, Now now, bool resumed);
  /// One computed cycle: the steps it commanded (pushed through this checker's own
  /// catheter: S1, S3) and the buzzer pattern it output (S5).  Every cycle that steps
  /// must come through here, in time order with the events.
  void cycle(Now now, std::uint32_t steps, BuzzerPattern pattern);
  /// The buzzer pattern output at `now` by a cycle whose steps were already given (S5).
  void sound(Now now, BuzzerPattern pattern);
  /// The status after an input or a jump.
  void status(const Status& s, Now now);
  void event(const Event& e);
  void end_run();

  /// This checker's own figures (tests, --plot): the rolling 24 h of `drug` at its last
  /// step, and its mass at the tip since the run began.
  [[nodiscard]] double window_mcg(std::string_view drug) const;
  [[nodiscard]] double total_mcg(std::string_view drug) const;

 private:
  struct Drug {
    std::string name;
    std::optional<double> limit_mcg;  // from the last plan that had the drug
    std::deque<std::pair<MonoTime, double>> window;  // mass at the tip by time, last 24 h
    double sum = 0.0;                 // of `window`
    double total = 0.0;               // at the tip since the run began
  };
  /// A solution: concentration (mcg/uL) by drug id, and which drug is its primary.
  struct Solution {
    std::vector<double> conc;
    std::size_t primary = 0;
    bool operator==(const Solution&) const = default;
  };
  struct Segment {
    double ul = 0.0;
    Solution sol;
  };
  struct Alarm {
    bool active = false;
    std::optional<MonoTime> acknowledged;  // when
  };
  /// The line, reservoir, limits and rolling 24 h of a core state (a start record's, an
  /// imported therapy's), its monotonic times moved by `shift`.
  void seed(const CoreState& st, Duration shift);
  std::size_t drug_id(std::string_view name);
  Solution solution_of(const TherapyPlan& p);
  void take_limits(const TherapyPlan& p);
  /// Pushes `ul` of the reservoir's solution into the line; counts what leaves the tip.
  void push(double ul, MonoTime t, Now now);
  void add_mass(std::size_t drug, double mcg, MonoTime t, Now now);
  void set_capacity(double ul);
  [[nodiscard]] double contents() const;
  [[nodiscard]] BuzzerPattern expected_sound(MonoTime t) const;
  void violation(std::string rule, Now now, std::string what);

  std::vector<Violation>& out_;
  BoardParams board_{};
  std::optional<TherapyPlan> plan_;
  std::optional<std::uint64_t> fault_since_;
  std::optional<std::int64_t> last_offset_;
  bool pending_jump_ = false;
  Now jump_at_{};
  std::vector<MonoTime> patient_starts_;
  std::array<bool, 3> bolus_on_{};  // by BolusSource, from the events
  std::optional<MonoTime> high_at_;
  // S1/S3: this checker's own plug-flow line and reservoir.
  std::vector<Drug> drugs_;
  std::deque<Segment> line_;        // front: at the tip
  double capacity_ul_ = 0.0;
  Solution reservoir_;
  double reservoir_ul_ = 0.0;
  double primary_total_ = 0.0;      // each segment's primary drug out of the tip, this run
  double core_total0_ = 0.0;        // the core's total tip mass when the run began
  std::array<std::string, kDrugSlots> slot_names_;  // the slots' drugs when the run began
  std::array<bool, kDrugSlots> slot_stable_{};      // still the same drug since then
  bool slots_seen_ = false;
  bool s3_reported_ = false;
  // S5: alarms as the events show them, and the alarm test.
  std::array<Alarm, kAlarmCount> alarms_{};
  std::optional<MonoTime> test_since_;
  bool s5_reported_ = false;
  bool reseed_alarms_ = false;  // after an import: the imported alarms, from the next status
};

}  // namespace thecal::replay
