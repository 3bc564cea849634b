// The hardware-independent logic of the libgpiod backend (io/gpiod_backend.hpp), kept
// apart so that unit tests exercise it without a GPIO chip:
//   Debouncer     software debounce of a level input (libgpiod 1.6 has none)
//   EdgeCounter   counts encoder edges from kernel timestamps, with an optional dead time
//   StepQueue     how many step pulses to issue this cycle (per-cycle cap, carry, drop)
//   pulse_train() issues step pulses with a minimum high and low time by busy-waiting on
//                 a clock (no sleep: a 2 us pulse is far below the scheduler's resolution)
// Everything here is noexcept, allocation-free and takes its time from the caller.
#pragma once

#include <algorithm>
#include <cstdint>

#include "control/time.hpp"

namespace thecal::io {

/// A level becomes the debounced level once it has been read unchanged for `window`.
/// A zero window passes every reading through (safety inputs: fault, occlusion, ...).
class Debouncer {
 public:
  Debouncer() = default;
  explicit Debouncer(Duration window) noexcept : window_(window) {}

  /// Starts from a level read at request time, so a level present at start is not missed.
  void seed(bool level) noexcept {
    stable_ = level;
    pending_ = false;
  }

  bool update(bool raw, MonoTime now) noexcept {
    if (window_.count() <= 0 || raw == stable_) {
      stable_ = raw;
      pending_ = false;
      return stable_;
    }
    if (!pending_) {
      pending_ = true;
      since_ = now;
    }
    if (now - since_ >= window_) {
      stable_ = raw;
      pending_ = false;
    }
    return stable_;
  }

  [[nodiscard]] bool level() const noexcept { return stable_; }

 private:
  Duration window_{0};
  bool stable_ = false;
  bool pending_ = false;
  MonoTime since_{};
};

/// Counts edges reported by the kernel (timestamps in ns).  An edge closer than
/// `dead_time_ns` to the last counted one is contact bounce and is not counted.
class EdgeCounter {
 public:
  EdgeCounter() = default;
  explicit EdgeCounter(std::int64_t dead_time_ns) noexcept : dead_ns_(dead_time_ns) {}

  void edge(std::int64_t timestamp_ns) noexcept {
    if (counted_ > 0 && dead_ns_ > 0 && timestamp_ns - last_ns_ < dead_ns_) {
      ++bounces_;
      return;
    }
    ++counted_;
    last_ns_ = timestamp_ns;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return counted_; }
  [[nodiscard]] std::uint64_t bounces() const noexcept { return bounces_; }
  [[nodiscard]] std::int64_t last_ns() const noexcept { return last_ns_; }

 private:
  std::int64_t dead_ns_ = 0;
  std::uint64_t counted_ = 0;
  std::uint64_t bounces_ = 0;
  std::int64_t last_ns_ = 0;
};

/// Step pulses the core asked for, and how many go out this cycle.  The core already
/// limits steps to max_steps_per_second over the elapsed time; this keeps a burst after
/// a late cycle from overrunning the loop: at most `max_per_cycle` pulses per cycle, the
/// rest carried to the next cycles (at most `max_pending`).  A disabled motor cannot
/// step, so disabling drops whatever is pending.  Steps dropped were counted as issued
/// by the core: the ledger over-counts (never under-counts) what was pumped (S7).
class StepQueue {
 public:
  StepQueue() = default;
  StepQueue(std::uint32_t max_per_cycle, std::uint32_t max_pending) noexcept
      : max_per_cycle_(std::max<std::uint32_t>(1, max_per_cycle)),
        max_pending_(std::max(max_pending, max_per_cycle_)) {}

  /// Adds this cycle's request and returns how many pulses to issue now.
  std::uint32_t plan(std::uint32_t requested, bool enabled) noexcept {
    if (!enabled) {
      drop(pending_ + requested);
      pending_ = 0;
      return 0;
    }
    const std::uint64_t want = static_cast<std::uint64_t>(pending_) + requested;
    if (want > max_pending_) {
      drop(want - max_pending_);
      pending_ = max_pending_;
    } else {
      pending_ = static_cast<std::uint32_t>(want);
    }
    return std::min(pending_, max_per_cycle_);
  }

  /// Reports how many of the planned pulses really went out.
  void issued(std::uint32_t n) noexcept {
    n = std::min(n, pending_);
    pending_ -= n;
    issued_ += n;
  }

  /// Forgets the pending pulses (hardware error, safe state).
  void clear() noexcept {
    drop(pending_);
    pending_ = 0;
  }

  [[nodiscard]] std::uint32_t pending() const noexcept { return pending_; }
  [[nodiscard]] std::uint64_t total_issued() const noexcept { return issued_; }
  [[nodiscard]] std::uint64_t total_dropped() const noexcept { return dropped_; }
  [[nodiscard]] std::uint32_t max_per_cycle() const noexcept { return max_per_cycle_; }

 private:
  void drop(std::uint64_t n) noexcept { dropped_ += n; }

  std::uint32_t max_per_cycle_ = 1;
  std::uint32_t max_pending_ = 1;
  std::uint32_t pending_ = 0;
  std::uint64_t issued_ = 0;
  std::uint64_t dropped_ = 0;
};

/// Timing of one step pulse: DRV8825 needs 1.9 us high and 1.9 us low, A4988 1 us,
/// TMC2208/2209 100 ns.
struct PulseTiming {
  std::int64_t high_ns = 2000;
  std::int64_t low_ns = 2000;
};

/// Issues up to `n` pulses: set(true), hold >= high_ns, set(false), hold >= low_ns.
/// `set(bool) -> bool` drives the line (false: the write failed, stop at once);
/// `clock() -> int64 ns` is a monotonic clock.  Stops early, after a complete pulse, once
/// `budget_ns` from the start has gone.  Returns the number of complete pulses; `ok` is
/// false if a write failed (the line is then left as the failed write left it, and the
/// caller disables the motor).
template <class Set, class Clock>
std::uint32_t pulse_train(std::uint32_t n, const PulseTiming& t, std::int64_t budget_ns, Set&& set, Clock&& clock,
                          bool& ok) noexcept {
  ok = true;
  const std::int64_t start = clock();
  std::uint32_t done = 0;
  for (; done < n; ++done) {
    if (done > 0 && clock() - start >= budget_ns) break;
    // Times are taken after the write returns: the edge happened inside the write, so
    // the level is held at least this long whatever the write itself takes.
    if (!set(true)) {
      ok = false;
      break;
    }
    const std::int64_t rose = clock();
    while (clock() - rose < t.high_ns) {
    }
    if (!set(false)) {
      ok = false;
      break;
    }
    const std::int64_t fell = clock();
    while (clock() - fell < t.low_ns) {
    }
  }
  return done;
}

}  // namespace thecal::io
