// The dosing loop's timing figures (SPEC 4, org.thecal.Diagnostics1): plain values the
// loop fills and anyone may copy.  The application takes the last-minute window from them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace thecal::loop {

/// Wake-up latency histogram: 1 us bins up to 4.096 ms (cyclictest's resolution), then
/// 64 us bins up to 69.632 ms (a hypervisor or SMI stall still lands in a bin, so the max
/// over any interval is known to 64 us), then one overflow bin.
struct LatencyHistogram {
  static constexpr std::size_t kFineBins = 4096;     // [0, 4096) us, 1 us each
  static constexpr std::size_t kCoarseBins = 1024;   // [4096, 69632) us, 64 us each
  static constexpr std::uint64_t kCoarseWidthNs = 64'000;
  static constexpr std::size_t kBins = kFineBins + kCoarseBins;  // index kBins: overflow
  static constexpr std::uint64_t kFineEndNs = kFineBins * 1000;
  static constexpr std::uint64_t kCoarseEndNs = kFineEndNs + kCoarseBins * kCoarseWidthNs;
  std::array<std::uint64_t, kBins + 1> counts{};
  std::uint64_t max_ns = 0;
  /// The bin a latency falls in (kBins: overflow).
  [[nodiscard]] static constexpr std::size_t bin_of(std::uint64_t ns) {
    if (ns < kFineEndNs) return static_cast<std::size_t>(ns / 1000);
    if (ns < kCoarseEndNs) return kFineBins + static_cast<std::size_t>((ns - kFineEndNs) / kCoarseWidthNs);
    return kBins;
  }
  /// Lower and upper edge (ns) of bin i < kBins.
  [[nodiscard]] static constexpr std::uint64_t lower_edge_ns(std::size_t i) {
    return i < kFineBins ? i * 1000 : kFineEndNs + (i - kFineBins) * kCoarseWidthNs;
  }
  [[nodiscard]] static constexpr std::uint64_t upper_edge_ns(std::size_t i) {
    return i < kFineBins ? (i + 1) * 1000 : kFineEndNs + (i - kFineBins + 1) * kCoarseWidthNs;
  }
  [[nodiscard]] std::uint64_t total() const;
  /// Upper edge (ns) of the bin holding quantile q in [0, 1] (never above the max); the
  /// max if it overflowed.
  [[nodiscard]] std::uint64_t quantile_ns(double q) const;
  /// The difference of two cumulative histograms; its max_ns is the upper edge of the
  /// highest non-empty bin (exact for the overflow bin only if it holds the overall max).
  LatencyHistogram operator-(const LatencyHistogram& earlier) const;
};

struct LoopDiagnostics {
  std::uint64_t cycles = 0;
  std::uint64_t overruns = 0;
  std::uint64_t control_step_max_ns = 0;
  bool realtime = false;  // SCHED_FIFO granted
  LatencyHistogram latency;
};

}  // namespace thecal::loop
