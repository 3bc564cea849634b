// The durable state across a start and a stop (SPEC S7), on the dosing core itself: both
// run while the dosing thread does not (before it starts, after it stopped), so they call
// the core directly instead of going through the LoopChannel.
#pragma once

#include <cstdint>

#include "app/event_log.hpp"
#include "app/journal_keeper.hpp"
#include "control/pump_core.hpp"

namespace thecal::app {

struct Recovered {
  /// The steps the core holds (what the first reservation made durable): give it to
  /// PumpService::set_granted.
  std::int64_t granted_steps = 0;
  /// The journal brought back a prescription (the stored file is not loaded then).
  bool restored_plan = false;
  /// The first reservation could not be written: storage_fault is raised, no budget.
  bool storage_fault = false;
};

/// Restores the core from the journal (or starts a fresh unit), logs what was found, raises
/// state_lost when the journal was missing, torn or corrupt, and makes the first
/// reservation durable before granting it.  `now`: the loop's time.
Recovered recover_state(JournalKeeper& journal, PumpCore& core, Now now, EventLog& events);

/// At a clean stop, after the dosing thread stopped: logs the stop and writes the final
/// snapshot (the budget the loop did not use is released, the journal compacted).
void close_state(JournalKeeper& journal, const PumpCore& core, EventLog& events);

}  // namespace thecal::app
