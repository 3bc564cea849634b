// thecal-replay's engine (SPEC S15, docs/recorder.md): runs a flight recording through the
// same dosing core and checks that it gives what the pump recorded.
//
// For each run (a start record and the inputs after it) the core is rebuilt from the
// recorded state, then driven cycle by cycle exactly as the dosing thread drove it: the
// cycles in which no input was recorded are jumped with PumpCore::fast_forward (their time
// is the previous one + period, their plant ideal: that is what "no input recorded" means),
// the others are applied and ticked one by one.  Checked on the way:
//   - before every input, a digest of the core's status against the one recorded there;
//   - every command's reply (refusal, dose, end) against the recorded one;
//   - every event the core emits, in order, against the recorded events.
// The first difference is the divergence, named by the input at which it appears.
//
// Independently of the core's own checks, a checker re-derives S1 to S6 and S8 from
// what it sees (see Checker in replay.cpp and docs/recorder.md for what each covers).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/pump_core.hpp"
#include "io/recording.hpp"
#include "replay/checker.hpp"

namespace thecal::replay {

struct Divergence {
  std::size_t record = 0;  // index of the input record in the recording
  std::uint64_t cycle = 0;
  WallTime wall{};
  std::string input;       // the input, described
  std::string what;        // what differed
};

/// One point of the timeline (--plot).
struct Sample {
  WallTime wall{};
  PumpState state = PumpState::idle;
  double mass_rate_mcg_h = 0.0;
  double delivered_24h_mcg = 0.0;
  double limit_mcg = 0.0;
  double reservoir_ul = 0.0;
  std::uint32_t high_alarms = 0;
  std::uint32_t alarms = 0;
};

struct Result {
  std::string problem;  // the recording could not be read whole (format, checksum, torn, gap)
  bool complete = false;  // ended by its end record
  std::optional<Divergence> divergence;
  std::vector<Violation> violations;
  std::size_t runs = 0;
  std::size_t inputs = 0;
  std::size_t events_checked = 0;
  std::uint64_t cycles = 0;
  std::uint64_t steps = 0;
  std::uint64_t computed_cycles = 0;  // cycles computed one by one (the rest were jumped)
  WallTime first{};
  WallTime last{};
  std::vector<Sample> timeline;
};

struct Options {
  bool timeline = false;
};

/// One line per record (thecal-replay --list).
std::string list_records(const io::Scan& scan);

/// Replays a scanned recording.
Result replay(const io::Scan& scan, const Options& opt = {});

/// Exit codes of thecal-replay (docs/recorder.md).
enum ExitCode : int {
  kMatch = 0,          // identical, every rule holds
  kDiverged = 1,       // the replay differs from the recording
  kViolation = 2,      // identical, but a safety rule is broken in it
  kUsage = 3,          // bad command line, unreadable file
  kUnreadable = 4,     // not a recording, bad header or format version, or a corrupt record
  kIncomplete = 5,     // matches as far as it goes, but it is cut (torn tail, no end record, gap)
};

/// The SVG timeline of a replay.
std::string plot_svg(const Result& r);

}  // namespace thecal::replay
