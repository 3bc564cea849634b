#include "app/delivery_history.hpp"

namespace thecal::app {

void DeliveryHistory::record_totals(std::int64_t wall_us, double total_mcg, double total_ul) {
  if (last_) {
    const double dm = total_mcg - last_->first;
    const double dv = total_ul - last_->second;
    if (dm > 0 || dv > 0) {
      const std::int64_t minute = wall_us - wall_us % kMinuteUs;
      auto& b = minutes_[minute];
      b.first += dm;
      b.second += dv;
      if (on_minute) on_minute(minute, dm, dv);
    }
  }
  last_ = {total_mcg, total_ul};
  while (!minutes_.empty() && minutes_.begin()->first < wall_us - kRetentionUs) minutes_.erase(minutes_.begin());
}

void DeliveryHistory::restore_minute(std::int64_t minute_us, double mcg, double ul) {
  auto& b = minutes_[minute_us - minute_us % kMinuteUs];
  b.first += mcg;
  b.second += ul;
}

void DeliveryHistory::restore_refill(const Refill& r) {
  refills_.push_back(r);
  if (refills_.size() > 10'000) refills_.erase(refills_.begin());
}

void DeliveryHistory::record_refill(const Refill& r) {
  if (on_refill) on_refill(r);
  refills_.push_back(r);
  if (refills_.size() > 10'000) refills_.erase(refills_.begin());
}

std::vector<DeliveryHistory::Refill> DeliveryHistory::refills_since(std::int64_t from_us) const {
  std::vector<Refill> out;
  for (const auto& r : refills_) {
    if (r.wall_us >= from_us) out.push_back(r);
  }
  return out;
}

std::optional<std::vector<DeliveryHistory::Bucket>> DeliveryHistory::query(std::uint64_t from_us, std::uint64_t to_us,
                                                                           std::uint64_t bucket_us) const {
  if (bucket_us == 0 || to_us <= from_us) return std::nullopt;
  const std::uint64_t n = (to_us - from_us + bucket_us - 1) / bucket_us;
  if (n > kMaxBuckets) return std::nullopt;
  std::vector<Bucket> out(n);
  for (std::uint64_t i = 0; i < n; ++i) out[i] = {from_us + i * bucket_us, 0.0, 0.0};
  for (auto it = minutes_.lower_bound(static_cast<std::int64_t>(from_us - from_us % kMinuteUs));
       it != minutes_.end() && static_cast<std::uint64_t>(it->first) < to_us; ++it) {
    const auto t = static_cast<std::uint64_t>(it->first);
    if (t < from_us) continue;
    auto& b = out[(t - from_us) / bucket_us];
    b.mcg += it->second.first;
    b.ul += it->second.second;
  }
  return out;
}

}  // namespace thecal::app
