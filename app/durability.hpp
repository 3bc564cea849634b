// The S7 durability policy (SPEC S7, docs/journal.md): when the dosing thread gets more
// step budget, how big a reservation is, when the state is checkpointed, when the journal
// is compacted or rewritten, and when storage_fault is raised.
//
// The rule it keeps: the loop is granted only steps that an fsynced reserve record covers.
// A grant is the difference between what the journal holds durably and what was granted;
// a checkpoint is due when less than half a reservation is left, when the therapy state
// changed, or when the file needs compaction.  A failing journal gets no new grant (the
// pump runs out of budget and stops delivering) and raises storage_fault once; a rewrite
// into a new file is tried every kRewriteRetry until one succeeds.
//
// This class decides and journals; PumpService sends the resulting commands.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "app/event_log.hpp"
#include "app/journal_keeper.hpp"
#include "control/core_state.hpp"
#include "control/status.hpp"

namespace thecal::app {

class Durability {
 public:
  static constexpr std::int64_t kRewriteRetryUs = 10'000'000;

  /// `mono_us`: the real monotonic clock (tests pass their own).
  Durability(JournalKeeper& journal, EventLog& events, std::function<std::int64_t()> mono_us)
      : journal_(journal), events_(events), mono_us_(std::move(mono_us)) {}

  /// The steps the core holds at start (granted before the loop ran).
  void set_granted(std::int64_t steps) { granted_ = steps; }
  [[nodiscard]] std::int64_t granted() const { return granted_; }

  /// The steps to grant now (0: none): what is durable and not granted yet.  Non-zero marks
  /// a grant in flight until grant_answered().
  std::int64_t take_grant();
  void grant_answered(bool ok, std::int64_t steps);

  /// The therapy state changed: checkpoint at the next chance.
  void state_changed() { checkpoint_wanted_ = true; }
  /// Whether a checkpoint (export_state command) should be sent now, given the newest
  /// status.  When none is due, queued event records are written (without fsync).
  bool checkpoint_due(const Status& status);
  void checkpoint_sent() {
    checkpoint_in_flight_ = true;
    checkpoint_wanted_ = false;
  }
  void checkpoint_answered() { checkpoint_in_flight_ = false; }

  /// Journals `s` (a checkpoint, or a rewrite when the file is large or unhealthy or
  /// `force_rewrite`) with a reservation sized for the pump rate in `status`.  The error
  /// text if it could not be made durable; `raise_fault` is set when storage_fault is due.
  std::optional<std::string> journal_state(const CoreState& s, const Status& status, bool force_rewrite,
                                           bool& raise_fault);

  [[nodiscard]] std::uint64_t fsyncs() const { return journal_.fsyncs(); }
  [[nodiscard]] const JournalKeeper& journal() const { return journal_; }

 private:
  JournalKeeper& journal_;
  EventLog& events_;
  std::function<std::int64_t()> mono_us_;
  std::int64_t granted_ = 0;
  bool grant_in_flight_ = false;
  bool checkpoint_in_flight_ = false;
  bool checkpoint_wanted_ = false;
  bool storage_fault_raised_ = false;
  std::int64_t last_rewrite_try_us_ = 0;
};

}  // namespace thecal::app
