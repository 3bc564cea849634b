#include "control/rolling_ledger.hpp"

#include <algorithm>

namespace thecal {

void RollingLedger::add(MonoTime now, Mass m) {
  const std::int64_t idx = minute_of(now);
  auto& b = buckets_[static_cast<std::size_t>(idx % static_cast<std::int64_t>(kBuckets))];
  if (b.index != idx) {
    b.index = idx;
    b.mass = mcg(0);
  }
  b.mass += m;
}

Mass RollingLedger::sum(MonoTime now) const {
  Mass total = mcg(0);
  for (const auto& b : buckets_) {
    if (in_window(b, now)) total += b.mass;
  }
  return total;
}

MonoTime RollingLedger::when_room_for(MonoTime now, Mass m, Mass limit) const {
  Mass total = sum(now);
  if (total + m <= limit) return now;
  // Walk buckets oldest first; each leaves the window one window after its end.
  std::array<Bucket, kBuckets> sorted = buckets_;
  std::sort(sorted.begin(), sorted.end(), [](const Bucket& a, const Bucket& b) { return a.index < b.index; });
  for (const auto& b : sorted) {
    if (!in_window(b, now)) continue;
    total -= b.mass;
    if (total + m <= limit) return mono_us((b.index + 1) * to_usec(kBucket) + to_usec(kWindow));
  }
  return now + kWindow;
}

}  // namespace thecal
