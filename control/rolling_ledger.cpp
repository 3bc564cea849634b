#include "control/rolling_ledger.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace thecal {

namespace {
constexpr std::int64_t kWindowMinutes = RollingLedger::kWindow / RollingLedger::kBucket;
constexpr auto kSlots = static_cast<std::int64_t>(RollingLedger::kBuckets);
// 9.2e18 pg = 9.2e12 mcg: far beyond any dose; clamp so a corrupt input cannot overflow.
constexpr double kMaxPg = 1e17;
}  // namespace

std::int64_t RollingLedger::to_pg_ceil(Mass m) {
  const double pg = to_mcg(m) * kPicogramsPerMcg;
  if (!(pg > 0.0)) return 0;  // also NaN
  return static_cast<std::int64_t>(std::ceil(std::min(pg, kMaxPg)));
}

std::int64_t RollingLedger::to_pg_floor(Mass m) {
  const double pg = to_mcg(m) * kPicogramsPerMcg;
  if (!(pg > 0.0)) return 0;
  return static_cast<std::int64_t>(std::floor(std::min(pg, kMaxPg)));
}

std::int64_t RollingLedger::minute_of(MonoTime t) {
  const std::int64_t us = to_usec(t);
  const std::int64_t b = to_usec(kBucket);
  return us >= 0 ? us / b : -((-us + b - 1) / b);
}

std::int64_t RollingLedger::first_minute_in_window(MonoTime now) {
  // A bucket is in the window while its end (index + 1) is less than 24 h before now.
  return minute_of(now) - kWindowMinutes;
}

void RollingLedger::expire(MonoTime now) const {
  std::int64_t m = minute_of(now);
  if (m < latest_minute_) m = latest_minute_;  // never let time run backwards
  latest_minute_ = m;
  const std::int64_t first = m - kWindowMinutes;
  if (!started_) {
    started_ = true;
    next_to_expire_ = first;
    return;
  }
  if (next_to_expire_ >= first) return;
  if (first - next_to_expire_ >= kSlots) {
    // More than a whole ring since the last call: everything has expired.
    buckets_.fill(Bucket{});
    total_pg_ = 0;
    next_to_expire_ = first;
    return;
  }
  // Bounded: fewer than kSlots iterations, and each minute is passed only once overall.
  for (; next_to_expire_ < first; ++next_to_expire_) {
    auto& b = buckets_[static_cast<std::size_t>(((next_to_expire_ % kSlots) + kSlots) % kSlots)];
    if (b.index == next_to_expire_) {
      total_pg_ -= b.pg;
      b = Bucket{};
    }
  }
}

void RollingLedger::add(MonoTime now, Mass m) {
  expire(now);
  const std::int64_t pg = to_pg_ceil(m);
  if (pg == 0) return;
  const std::int64_t idx = latest_minute_;
  auto& b = buckets_[static_cast<std::size_t>(((idx % kSlots) + kSlots) % kSlots)];
  if (b.index != idx) {
    // The slot's previous minute is more than a ring old, so expire() has removed it.
    b.index = idx;
    b.pg = 0;
  }
  b.pg += pg;
  total_pg_ += pg;
}

std::int64_t RollingLedger::sum_pg(MonoTime now) const {
  expire(now);
  return total_pg_;
}

Mass RollingLedger::sum(MonoTime now) const {
  return mcg(static_cast<double>(sum_pg(now)) / kPicogramsPerMcg);
}

MonoTime RollingLedger::when_room_for(MonoTime now, Mass m, Mass limit) const {
  expire(now);
  const std::int64_t need = to_pg_ceil(m);
  const std::int64_t lim = to_pg_floor(limit);
  std::int64_t total = total_pg_;
  if (total + need <= lim) return now;
  // Walk the minutes oldest first; each leaves the window one window after its end.
  for (std::int64_t i = next_to_expire_; i <= latest_minute_; ++i) {
    const auto& b = buckets_[static_cast<std::size_t>(((i % kSlots) + kSlots) % kSlots)];
    if (b.index != i) continue;
    total -= b.pg;
    if (total + need <= lim) return mono_us((b.index + 1) * to_usec(kBucket) + to_usec(kWindow));
  }
  if (need > lim) return MonoTime::max();  // never fits
  return now + kWindow + kBucket;
}

void RollingLedger::restore(const std::array<Bucket, kBuckets>& b, MonoTime now) {
  buckets_.fill(Bucket{});
  total_pg_ = 0;
  latest_minute_ = minute_of(now);
  const std::int64_t first = latest_minute_ - kWindowMinutes;
  next_to_expire_ = first;
  started_ = true;
  for (const auto& x : b) {
    if (x.index == kEmpty || x.pg <= 0) continue;
    // A bucket stamped after `now` cannot have happened yet on this clock: count it now
    // (over-count, never under-count).  One already out of the window is forgotten.
    const std::int64_t idx = std::min(x.index, latest_minute_);
    if (idx < first) continue;
    auto& slot = buckets_[static_cast<std::size_t>(((idx % kSlots) + kSlots) % kSlots)];
    slot.index = idx;
    slot.pg += x.pg;
    total_pg_ += x.pg;
  }
}

void RollingLedger::restore_exact(const std::array<Bucket, kBuckets>& b, const Cursor& c) {
  buckets_.fill(Bucket{});
  for (const auto& x : b) {
    if (x.index == kEmpty) continue;
    buckets_[static_cast<std::size_t>(((x.index % kSlots) + kSlots) % kSlots)] = x;
  }
  total_pg_ = c.total_pg;
  next_to_expire_ = c.next_to_expire;
  latest_minute_ = c.latest_minute;
  started_ = c.started;
}

}  // namespace thecal
