// Delivery history for GetDeliveryHistory: mass at the tip and volume pumped per minute of
// wall time, from the dosing thread's running totals.  Kept for kRetention.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace thecal::app {

class DeliveryHistory {
 public:
  static constexpr std::int64_t kMinuteUs = 60'000'000;
  static constexpr std::int64_t kRetentionUs = 62LL * 24 * 3600 * 1'000'000;  // two months
  static constexpr std::size_t kMaxBuckets = 100'000;  // per query

  /// Records the totals (mcg at the tip, uL pumped) as of wall time `wall_us`; the increase
  /// since the previous call goes to that minute.
  void record_totals(std::int64_t wall_us, double total_mcg, double total_ul);

  /// One drug's running total at the tip (mcg) as the core reports it.
  struct DrugTotal {
    std::string name;  // empty: nothing in this place
    double mcg = 0;
  };
  /// Per-drug history (GetDrugDeliveryHistory): `totals[0]` is the primary drug (the core's
  /// total, which runs on across a change of drug), `totals[1..]` the admixture drug slots
  /// (whose total starts again at 0 when the slot takes another drug).  The increase of each
  /// since the previous call goes to that minute of that drug.
  void record_drug_totals(std::int64_t wall_us, const std::vector<DrugTotal>& totals);
  /// Whether `drug` has mass in the kept history.
  [[nodiscard]] bool knows_drug(std::string_view drug) const;

  struct Bucket {
    std::uint64_t start_us;
    double mcg;
    double ul;
  };
  /// Every refill's check (SPEC 2: the measured accuracy), oldest first.
  struct Refill {
    std::int64_t wall_us = 0;
    double filled_ul = 0, withdrawn_ul = 0, estimate_ul = 0, pumped_ul = 0;
    double accuracy_percent = 0;  // NaN when not measured (first fill)
    bool discrepancy = false;
  };
  void record_refill(const Refill& r);
  /// Persistence (app/history_file.hpp): told every increase of a minute and every refill;
  /// restore_*() put stored ones back without telling.
  std::function<void(std::int64_t minute_us, double mcg, double ul)> on_minute;
  std::function<void(const Refill& r)> on_refill;
  /// Told every increase of one drug's minute (GetDrugDeliveryHistory's figures).
  std::function<void(std::int64_t minute_us, const std::string& drug, double mcg)> on_drug_minute;
  void restore_minute(std::int64_t minute_us, double mcg, double ul);
  void restore_refill(const Refill& r);
  void restore_drug_minute(std::int64_t minute_us, const std::string& drug, double mcg);
  [[nodiscard]] std::vector<Refill> refills_since(std::int64_t from_us) const;

  /// Buckets of `bucket_us` from `from_us` to `to_us` (end exclusive); nullopt if the
  /// arguments are out of range (zero bucket, to <= from, too many buckets).
  [[nodiscard]] std::optional<std::vector<Bucket>> query(std::uint64_t from_us, std::uint64_t to_us,
                                                         std::uint64_t bucket_us) const;
  /// As query(), with `mcg` the mass of `drug` alone at the tip (`ul` stays the pump's
  /// volume in the bucket); nullopt on the same bad arguments.
  [[nodiscard]] std::optional<std::vector<Bucket>> query_drug(std::string_view drug, std::uint64_t from_us,
                                                              std::uint64_t to_us, std::uint64_t bucket_us) const;

 private:
  std::map<std::int64_t, std::pair<double, double>> minutes_;  // minute start -> (mcg, uL)
  std::optional<std::pair<double, double>> last_;
  std::vector<Refill> refills_;
  std::map<std::string, std::map<std::int64_t, double>, std::less<>> drug_minutes_;  // drug -> minute -> mcg
  std::vector<DrugTotal> last_drugs_;
};

}  // namespace thecal::app
