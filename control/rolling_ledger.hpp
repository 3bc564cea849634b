// The rolling 24 h ledger of delivered mass (SPEC S1), on the monotonic clock.
//
// Mass is kept in one-minute buckets.  A bucket leaves the window only when its *end* is
// more than 24 h old, so the window sum is never less than the true mass delivered in the
// last 24 h: the ledger can only over-count (hold back a little early), never under-count.
#pragma once

#include <array>
#include <cstdint>

#include "control/time.hpp"
#include "control/units.hpp"

namespace thecal {

class RollingLedger {
 public:
  static constexpr Duration kBucket = minutes(1);
  static constexpr Duration kWindow = hours(24);
  static constexpr std::size_t kBuckets = 24 * 60 + 1;

  /// Records `m` delivered at `now`.
  void add(MonoTime now, Mass m);
  /// Mass delivered in the window ending at `now` (conservative, see above).
  [[nodiscard]] Mass sum(MonoTime now) const;
  /// Earliest time at which the window sum drops by at least `m` (for "next bolus allowed").
  [[nodiscard]] MonoTime when_room_for(MonoTime now, Mass m, Mass limit) const;

  struct Bucket {
    std::int64_t index = -1;  // minute number on the monotonic clock, -1: empty
    Mass mass;
  };
  [[nodiscard]] const std::array<Bucket, kBuckets>& buckets() const { return buckets_; }
  void restore(const std::array<Bucket, kBuckets>& b) { buckets_ = b; }

 private:
  static std::int64_t minute_of(MonoTime t) { return to_usec(t) / to_usec(kBucket); }
  [[nodiscard]] bool in_window(const Bucket& b, MonoTime now) const {
    return b.index >= 0 && b.index + 1 + kWindow / kBucket > minute_of(now);
  }
  std::array<Bucket, kBuckets> buckets_{};
};

}  // namespace thecal
