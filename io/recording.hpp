// The flight recorder's format and store (SPEC S15, docs/recorder.md).
//
// What the dosing thread hands over (LoopInput, fixed size, no allocation) is turned by the
// main thread into records of an append-only file:
//
//   header   8  magic "THECALRC"
//            4  format version (little-endian)
//            4  CRC-32C of the 12 bytes above
//   record   4  payload length n (1 .. kMaxRecordPayload)
//            4  CRC-32C of the n payload bytes
//            n  payload: 1 byte kind, then the kind's fields (little-endian, fixed width)
//
// A recording handed out by GetRecording has the same form and ends with an `end` record
// that counts the records before it, so that a cut copy is told from a whole one.
// scan_recording() reads the longest valid prefix and names the first problem after it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/board_params.hpp"
#include "control/command.hpp"
#include "control/core_state.hpp"
#include "control/event.hpp"
#include "control/io_types.hpp"
#include "control/status.hpp"
#include "control/time.hpp"

namespace thecal::io {

/// Format 2 adds the snapshot record (8); format 1 (no snapshot) is still read.
inline constexpr std::uint32_t kRecordingFormat = 2;
/// The store starts a new segment, with a snapshot, after this much pump (monotonic) time.
inline constexpr Duration kSegmentSpan = days(1);
inline constexpr std::size_t kMaxRecordPayload = 1u << 20;

enum class RecKind : std::uint8_t {
  start = 1,    // a (re)start: board, loop period, the core's state after recovery, its budget,
                //   the events the recovery left pending
  clock = 2,    // this cycle's time was not the previous one + period, or the period changed
  command = 3,  // a command applied at this cycle, with its caller, arguments and reply
  sensors = 4,  // the sensor inputs differ from what the ideal plant predicts
  event = 5,    // an output: an event the core emitted (compared by the replay)
  gap = 6,      // the dosing thread's queue overflowed: inputs were lost after this cycle
  end = 7,      // end of a recording handed out (count of the records before it)
  snapshot = 8, // an exact image of the core at a cycle boundary: a segment's first record
                //   within a run (board, time, period, the ideal plant, CoreImage)
};

/// What of a reply the replay compares (the message text is not kept: it follows from these).
struct ReplyKept {
  Refusal refusal = Refusal::none;
  Mass dose;
  WallTime ends{};
  ReplyKept() = default;
  ReplyKept(const Reply& r) : refusal(r.refusal), dose(r.dose), ends(r.ends) {}  // NOLINT(google-explicit-constructor)
};

/// What the dosing thread hands to the main thread (fixed size: it crosses an spsc queue).
/// `digest` is status_digest() of the core's status just before this input was applied.
struct LoopInput {
  RecKind kind = RecKind::clock;
  std::uint64_t cycle = 0;  // cycles since the loop started (0: the first)
  std::uint64_t digest = 0;
  Now now{};                // clock: this cycle's time
  Duration period{0};       // clock: how far each following cycle advances both clocks
  Command cmd{};            // command (its plan / state_in are read by the main thread
  ReplyKept reply{};        //   before it takes the reply: the sender still owns them)
  SensorInputs in{};        // sensors; snapshot: the ideal plant's inputs
  // snapshot: the image the main thread asked for (its buffer, filled by the dosing
  // thread), the ideal plant's step count, and how many events the loop had handed over
  // before it (those belong to the segment before).
  CoreImage* image = nullptr;
  std::uint64_t plant_steps = 0;
  std::uint64_t events_before = 0;
};

/// A digest of the status fields the replay must reproduce exactly (state, step and volume
/// totals, tip mass, reservoir, alarms, boluses).  FNV-1a over their bit patterns.
std::uint64_t status_digest(const Status& s);
/// A digest of every field of an event.
std::uint64_t event_digest(const Event& e);

/// One decoded record.
struct Recorded {
  RecKind kind = RecKind::clock;
  std::uint64_t cycle = 0;
  std::uint64_t digest = 0;
  // clock
  Now now{};
  Duration period{0};
  // start
  BoardParams board{};
  std::int64_t budget = 0;
  std::uint64_t events_before = 0;  // events the recovery left pending: the first ones logged
  // start: the state the run began from; command: state_in.  Held by pointer: a CoreState is
  // ~170 KB (the admixture's ledgers), and a scan keeps every record.
  std::shared_ptr<const CoreState> state;
  // command
  Command cmd{};  // plan/state_in/state_out pointers are null; see the fields below
  std::shared_ptr<const TherapyPlan> plan;  // by pointer too: ~10 KB each
  bool state_out = false;
  ReplyKept reply{};
  // sensors
  SensorInputs in{};
  // event
  EventType event_type = EventType::state_changed;
  // end
  std::uint64_t count = 0;
  // snapshot (also board, now, period, in)
  std::shared_ptr<const CoreImage> image;
  std::uint64_t plant_steps = 0;
};

/// The file header (16 bytes).
std::string recording_header();
/// One framed record.  For a command, `plan` and `state_in` come from the command itself
/// (the pointers must still be valid).
std::string encode_input(const LoopInput& in);
/// `events_before`: events the core holds, not yet drained, when the run starts (the
/// recovery's own): the run's first event records, which the replay does not compare.
std::string encode_start(const BoardParams& board, Now now, std::int64_t budget, const CoreState& state,
                         std::uint64_t events_before = 0);
std::string encode_event(const Event& e);
/// A snapshot record from the loop's snapshot input (its image filled).
std::string encode_snapshot(const BoardParams& board, const LoopInput& in);
std::string encode_gap(std::uint64_t cycle);
std::string encode_end(std::uint64_t count);

struct Scan {
  std::vector<Recorded> records;
  std::vector<std::size_t> offsets;  // byte offset of each record's frame
  std::size_t valid_bytes = 0;       // the longest valid prefix
  bool has_end = false;              // ended by an `end` record whose count matches
  std::string problem;               // empty: the whole input was valid
};
/// Reads a recording (a store segment or a GetRecording blob).  A bad header gives no
/// records; a torn or corrupt record ends the scan there with `problem` naming it.
Scan scan_recording(std::string_view bytes);

/// The store: one segment file per run of the daemon under `dir`
/// ("seg-<start wall us>.rec"), appended to by the main thread, synced on demand,
/// segments older than `keep` removed whole at start.
class RecordingStore {
 public:
  RecordingStore(std::string dir, Duration keep) : dir_(std::move(dir)), keep_(keep) {}
  RecordingStore(const RecordingStore&) = delete;
  RecordingStore& operator=(const RecordingStore&) = delete;
  ~RecordingStore();

  /// Creates the directory if needed, removes segments that ended more than `keep` before
  /// `now`, truncates a torn tail of the newest, and opens a new segment beginning with
  /// `start_record`.  Error text on failure (the daemon then runs without a recorder).
  std::optional<std::string> begin(WallTime now, const std::string& start_record);
  /// Starts a new segment at `now` beginning with `snapshot_record` (within a run), then
  /// removes the segments that ended more than `keep` before `now`.  The previous segment
  /// is synced with the next sync() (no sync of its own).  Error text on failure (the
  /// recording then goes on in the previous segment).
  std::optional<std::string> rotate(WallTime now, const std::string& snapshot_record);
  /// Removes every closed segment whose successor began more than `keep` before `now` (its
  /// last record is before its successor's first).  The number removed.
  std::size_t prune(WallTime now);
  /// Appends (buffered until flush()).
  void append(const std::string& framed);
  /// Writes what is buffered (no sync).  Error text on failure.
  std::optional<std::string> flush();
  /// fdatasync of the open segment.
  std::optional<std::string> sync();
  /// The recording of [from, to] (wall µs): each segment that overlaps it, from its first
  /// record (a run's start or a mid-run snapshot: the one at or before `from`), cut after
  /// the last record at or before `to`, then an end record.  Reads the files; the open
  /// segment is flushed first.
  std::string window(WallTime from, WallTime to);

  [[nodiscard]] std::uint64_t bytes_written() const { return bytes_; }
  [[nodiscard]] std::uint64_t syncs() const { return syncs_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  /// The segment files, oldest first.
  [[nodiscard]] std::vector<std::string> segments() const;

 private:
  std::optional<std::string> open_segment(WallTime now, const std::string& first_record);
  std::string dir_;
  Duration keep_;
  int fd_ = -1;
  int prev_fd_ = -1;  // the segment before a rotation, until its sync
  std::string path_;  // the open segment
  std::string buffer_;
  std::uint64_t bytes_ = 0;
  std::uint64_t syncs_ = 0;
};

/// The wall time of each record, from the clock records and the cycle numbers (a start
/// record carries its own; an event its own).  Used to cut windows.
std::vector<WallTime> record_walls(const std::vector<Recorded>& records);

}  // namespace thecal::io
