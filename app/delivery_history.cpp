#include "app/delivery_history.hpp"

#include <algorithm>

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

void DeliveryHistory::restore_drug_minute(std::int64_t minute_us, const std::string& drug, double mcg) {
  if (drug.empty() || !(mcg > 0)) return;
  drug_minutes_[drug][minute_us - minute_us % kMinuteUs] += mcg;
}

void DeliveryHistory::restore_refill(const Refill& r) {
  refills_.push_back(r);
  if (refills_.size() > 10'000) refills_.erase(refills_.begin());
}

void DeliveryHistory::record_drug_totals(std::int64_t wall_us, const std::vector<DrugTotal>& totals) {
  for (std::size_t i = 0; i < totals.size(); ++i) {
    const DrugTotal& now = totals[i];
    if (now.name.empty() || i >= last_drugs_.size()) continue;  // the first call sets the base
    const DrugTotal& before = last_drugs_[i];
    // The primary's total runs on across a change of drug; a slot's starts again at 0 when
    // it takes another drug (or a new core begins counting).
    const bool continues = i == 0 || (before.name == now.name && now.mcg >= before.mcg);
    const double dm = continues ? now.mcg - before.mcg : now.mcg;
    if (dm > 0) {
      const std::int64_t minute = wall_us - wall_us % kMinuteUs;
      drug_minutes_[now.name][minute] += dm;
      if (on_drug_minute) on_drug_minute(minute, now.name, dm);
    }
  }
  last_drugs_ = totals;
  for (auto& [name, minutes] : drug_minutes_) {
    while (!minutes.empty() && minutes.begin()->first < wall_us - kRetentionUs) minutes.erase(minutes.begin());
  }
  std::erase_if(drug_minutes_, [](const auto& d) { return d.second.empty(); });
}

bool DeliveryHistory::knows_drug(std::string_view drug) const { return drug_minutes_.find(drug) != drug_minutes_.end(); }

std::optional<std::vector<DeliveryHistory::Bucket>> DeliveryHistory::query_drug(std::string_view drug,
                                                                                std::uint64_t from_us,
                                                                                std::uint64_t to_us,
                                                                                std::uint64_t bucket_us) const {
  auto out = query(from_us, to_us, bucket_us);
  if (!out) return out;
  for (auto& b : *out) b.mcg = 0;
  const auto d = drug_minutes_.find(drug);
  if (d == drug_minutes_.end()) return out;
  for (auto it = d->second.lower_bound(static_cast<std::int64_t>(from_us - from_us % kMinuteUs));
       it != d->second.end() && static_cast<std::uint64_t>(it->first) < to_us; ++it) {
    const auto t = static_cast<std::uint64_t>(it->first);
    if (t >= from_us) (*out)[(t - from_us) / bucket_us].mcg += it->second;
  }
  return out;
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
