// The daemon's side of the journal (SPEC S7, docs/journal.md): what goes into the records,
// how a start recovers, and how big a reservation is.  Main thread only: it does the
// fsyncs, never the dosing thread (which simply runs out of budget if storage is slow).
//
//   state dir/journal   the journal (io/journal.hpp): [events] state reserve, then appends
//   state dir/unit      marker written at a unit's first start: a later start without a
//                       journal is a lost state, not a fresh unit
//
// Records:
//   state    clock reference (boot id, CLOCK_MONOTONIC and CLOCK_REALTIME at capture)
//            + the encoded CoreState (control/core_state.hpp)
//   reserve  cumulative steps the loop may issue (R), its size G, steps issued at capture
//   event    one event-log entry
//
// The reservation rule: the loop is granted only steps covered by an fsynced reserve
// record, so steps_issued <= R on disk at every moment.  A restart counts R - (steps in
// the last state record) as pumped.  Each reserve record is written with a state captured
// just before it, R = issued_at_capture + G, so the over-count is at most G.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "control/board_params.hpp"
#include "control/core_state.hpp"
#include "app/event_log.hpp"
#include "io/journal.hpp"

namespace thecal::app {

/// The clocks at a state capture (or now).
struct ClockRef {
  std::string boot_id;
  std::int64_t real_mono_us = 0;  // CLOCK_MONOTONIC
  std::int64_t real_wall_us = 0;  // CLOCK_REALTIME
};

/// Reads the boot id (one line of /proc/sys/kernel/random/boot_id, or the file named).
std::string read_boot_id(const std::string& path = "/proc/sys/kernel/random/boot_id");

/// The time the new run may assume has passed since `then` (S8): the monotonic difference
/// within one boot (never negative); zero across a reboot, where neither clock can be
/// trusted to say how long the pump was off (a wall clock can be wrong in either direction).
Duration assumed_elapsed(const ClockRef& then, const ClockRef& now);

struct ReserveRecord {
  std::uint64_t reserved = 0;  // cumulative steps the loop may issue
  std::uint64_t size = 0;      // G: this reservation's size
  std::uint64_t issued_at_capture = 0;
};

std::string encode_state_payload(const ClockRef& clock, const CoreState& s);
std::optional<std::pair<ClockRef, CoreState>> decode_state_payload(std::string_view p, std::string* err);
std::string encode_reserve_payload(const ReserveRecord& r);
std::optional<ReserveRecord> decode_reserve_payload(std::string_view p);
std::string encode_event_payload(const LoggedEvent& e);
std::optional<LoggedEvent> decode_event_payload(std::string_view p);

/// What a start found.
struct Recovery {
  enum class Kind : std::uint8_t {
    fresh,     // empty state dir: a new unit
    restored,  // journal intact: state back, therapy resumes if it was infusing
    lost,      // journal missing, torn or corrupt: what could be read is back, the pump is
               // stopped with the high state_lost alarm, `explanation` says why
  };
  Kind kind = Kind::fresh;
  std::optional<CoreState> state;   // the last valid state record
  ClockRef clock;                   // its clock reference
  std::uint64_t reserved = 0;       // the highest reservation in the valid prefix
  std::int64_t unconfirmed = 0;     // reserved - state's steps_issued (>= 0)
  std::vector<LoggedEvent> events;  // the event log, oldest first
  io::JournalProblem problem = io::JournalProblem::none;
  std::string explanation;
  std::size_t records = 0;
};

/// Interprets a scanned journal (pure: tests feed it damaged files).  `marker` says whether
/// this unit has started before; `scan` is nullopt when there is no journal file.
Recovery interpret(const std::optional<io::JournalScan>& scan, bool marker);

class JournalKeeper {
 public:
  static constexpr std::uint64_t kMinReservationSteps = 4;
  static constexpr std::uint64_t kMaxReservationSteps = 1200;
  static constexpr Duration kReservationHorizon = minutes(10);
  static constexpr std::uint64_t kCompactBytes = 2u << 20;
  static constexpr std::size_t kSnapshotEvents = 5000;

  JournalKeeper(io::FileOps& ops, std::string state_dir, const BoardParams& board, std::string boot_id_path);

  /// Reads the state dir.  Moves a damaged journal aside (journal.damaged-N) so that the
  /// evidence is kept and the next rewrite cannot destroy it.
  Recovery recover();

  /// Starts a new journal with the retained events and `s`, reserving `reserve_to`
  /// (>= s.steps_issued); writes the unit marker.  Compaction uses it too.
  std::optional<std::string> rewrite(const CoreState& s, std::uint64_t reserve_to, const std::vector<LoggedEvent>& events);
  /// At a clean stop (the loop has stopped, so its unused budget is provably unused):
  /// a rewrite that reserves exactly what was issued.
  std::optional<std::string> close_clean(const CoreState& s, const std::vector<LoggedEvent>& events);
  /// Appends a state record (and a reservation if `reserve_to` > reserved()), with the
  /// pending event records, and fsyncs once.  On success the reservation is durable.
  std::optional<std::string> checkpoint(const CoreState& s, std::uint64_t reserve_to);
  /// Queues an event record; it reaches the file with the next write (flush_events or a
  /// checkpoint), fsynced with the next checkpoint.
  void add_event(const LoggedEvent& e);
  /// Writes queued events without fsync (they survive a process crash; a power loss may
  /// take the last ones, never a reservation or an acknowledged programming act).
  std::optional<std::string> flush_events();

  /// Reservation size for a pump rate: kReservationHorizon of delivery, within
  /// [kMinReservationSteps, kMaxReservationSteps].
  [[nodiscard]] std::uint64_t reservation_steps(VolumeRate pump_rate) const;
  /// The same, for a pump that is priming with `prime_left` still to go: never more than
  /// priming needs (at least kMinReservationSteps), so no prime-rate reservation is still
  /// outstanding when priming ends (a crash would count it all as pumped, S7).
  [[nodiscard]] std::uint64_t reservation_steps(VolumeRate pump_rate, Volume prime_left) const;

  [[nodiscard]] std::uint64_t reserved() const { return reserved_; }
  [[nodiscard]] std::uint64_t last_size() const { return last_size_; }
  [[nodiscard]] bool needs_compaction() const { return writer_.size() > kCompactBytes; }
  [[nodiscard]] bool healthy() const { return writer_.is_open() && !writer_.poisoned(); }
  [[nodiscard]] std::uint64_t fsyncs() const { return writer_.fsyncs(); }
  [[nodiscard]] std::uint64_t writes() const { return writer_.writes(); }
  [[nodiscard]] ClockRef clock_now() const;
  [[nodiscard]] const std::string& journal_path() const { return journal_path_; }

 private:
  io::FileOps& ops_;
  std::string dir_;
  std::string journal_path_;
  std::string marker_path_;
  BoardParams board_;
  std::string boot_id_;
  io::JournalWriter writer_;
  std::uint64_t reserved_ = 0;
  std::uint64_t last_size_ = 0;
  std::vector<io::JournalWriter::Item> pending_events_;
};

}  // namespace thecal::app
