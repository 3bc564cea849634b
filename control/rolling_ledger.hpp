// The rolling 24 h ledger of delivered mass (SPEC S1), on the monotonic clock.
//
// Mass is kept in one-minute buckets.  A bucket leaves the window only when its *end* is
// more than 24 h old, so the window sum is never less than the true mass delivered in the
// last 24 h: the ledger can only over-count (hold back a little early), never under-count.
//
// Masses are stored as integer picograms, each addition rounded *up*, so the running window
// sum is exact integer arithmetic (no floating drift in add/subtract) and still never less
// than the true mass.  sum() is O(1); expiry is O(1) amortized (each bucket expires once),
// so one control cycle never scans the whole day.
#pragma once

#include <array>
#include <cstdint>
#include <limits>

#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

class RollingLedger {
 public:
  static constexpr Duration kBucket = minutes(1);
  static constexpr Duration kWindow = hours(24);
  static constexpr std::size_t kBuckets = 24 * 60 + 1;
  static constexpr double kPicogramsPerMcg = 1e6;

  /// Records `m` delivered at `now` (negative or non-finite masses are ignored).
  void add(MonoTime now, Mass m);
  /// Mass delivered in the window ending at `now` (conservative, see above).  `now` must
  /// not go backwards between calls (it is the monotonic clock); an earlier `now` is
  /// treated as the latest one seen.
  [[nodiscard]] Mass sum(MonoTime now) const;
  /// Same, in exact integer picograms.
  [[nodiscard]] std::int64_t sum_pg(MonoTime now) const;
  /// Earliest time at which the window sum plus `m` is within `limit` (for "next bolus
  /// allowed").  O(buckets in window): call it at most about once a second.
  [[nodiscard]] MonoTime when_room_for(MonoTime now, Mass m, Mass limit) const;

  /// Mass in picograms, rounded up (what add() records); never negative.
  static std::int64_t to_pg_ceil(Mass m);
  /// Mass in picograms, rounded down (a limit).
  static std::int64_t to_pg_floor(Mass m);

  /// The index of an empty bucket (minute numbers may be negative: a restored ledger's
  /// minutes can lie before the new run's clock zero).
  static constexpr std::int64_t kEmpty = std::numeric_limits<std::int64_t>::min();
  struct Bucket {
    std::int64_t index = kEmpty;  // minute number on the monotonic clock
    std::int64_t pg = 0;      // mass in picograms
  };
  [[nodiscard]] const std::array<Bucket, kBuckets>& buckets() const { return buckets_; }
  /// Restores buckets (journal recovery, therapy import); recomputes the running sum.
  void restore(const std::array<Bucket, kBuckets>& b, MonoTime now);
  /// The cursor beside the buckets (an exact image of the core, control/core_state.hpp).
  struct Cursor {
    std::int64_t total_pg = 0;
    std::int64_t next_to_expire = 0;
    std::int64_t latest_minute = 0;
    bool started = false;
  };
  [[nodiscard]] Cursor cursor() const { return {total_pg_, next_to_expire_, latest_minute_, started_}; }
  /// Exactly the ledger whose buckets and cursor these are (each bucket back in its minute's
  /// slot of the ring); no bucket is dropped or moved.
  void restore_exact(const std::array<Bucket, kBuckets>& b, const Cursor& c);

 private:
  static std::int64_t minute_of(MonoTime t);
  /// First minute index still inside the window ending at `now`.
  static std::int64_t first_minute_in_window(MonoTime now);
  void expire(MonoTime now) const;

  // Expiry is logically const (it forgets nothing that sum() could still report).
  mutable std::array<Bucket, kBuckets> buckets_{};
  mutable std::int64_t total_pg_ = 0;         // sum of every bucket not yet expired
  mutable std::int64_t next_to_expire_ = 0;  // lowest minute that may still hold mass
  mutable std::int64_t latest_minute_ = std::numeric_limits<std::int64_t>::min();
  mutable bool started_ = false;
};

}  // namespace thecal
