#include "app/durability.hpp"

#include <limits>

#include "io/log.hpp"

namespace thecal::app {

std::int64_t Durability::take_grant() {
  if (grant_in_flight_) return 0;
  const auto delta = static_cast<std::int64_t>(journal_.reserved()) - granted_;
  if (delta <= 0) return 0;
  grant_in_flight_ = true;
  granted_ += delta;
  return delta;
}

void Durability::grant_answered(bool ok, std::int64_t steps) {
  grant_in_flight_ = false;
  if (!ok) granted_ -= steps;
}

bool Durability::checkpoint_due(const Status& status) {
  if (checkpoint_in_flight_) return false;
  const auto size = static_cast<std::int64_t>(journal_.reservation_steps(status.pump_rate, status.prime_left));
  const auto left = static_cast<std::int64_t>(journal_.reserved()) - static_cast<std::int64_t>(status.steps_issued);
  bool want = checkpoint_wanted_ || left < size / 2 || journal_.needs_compaction();
  if (!journal_.healthy()) {
    // Try a rewrite into a new file now and then (it clears a poisoned journal).
    const std::int64_t now_us = mono_us_();
    want = now_us - last_rewrite_try_us_ >= kRewriteRetryUs;
    if (want) last_rewrite_try_us_ = now_us;
  }
  if (!want && journal_.healthy()) {
    if (auto e = journal_.flush_events()) log_warning("Failed to write event records to the journal: %s", e->c_str());
  }
  return want;
}

std::optional<std::string> Durability::journal_state(const CoreState& s, const Status& status, bool force_rewrite,
                                                     bool& raise_fault) {
  raise_fault = false;
  VolumeRate rate = status.pump_rate;
  // The state exported with this command is newer than the last status: a priming that has
  // just ended must not be reserved for at the prime rate.
  if (status.state == PumpState::priming && !(s.prime_left > Volume{})) rate = VolumeRate{};
  const std::uint64_t target = s.steps_issued + journal_.reservation_steps(rate, s.prime_left);
  std::optional<std::string> err;
  if (force_rewrite || journal_.needs_compaction() || !journal_.healthy()) {
    err = journal_.rewrite(s, target, events_.since(0, std::numeric_limits<std::uint32_t>::max()));
  } else {
    err = journal_.checkpoint(s, target);
  }
  if (err) {
    log_error("Journal write failed: %s; no new delivery budget", err->c_str());
    raise_fault = !storage_fault_raised_;
    storage_fault_raised_ = true;
    return err;
  }
  storage_fault_raised_ = false;
  return std::nullopt;
}

}  // namespace thecal::app
