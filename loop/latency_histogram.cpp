#include "loop/latency_histogram.hpp"

#include <algorithm>

namespace thecal::loop {

std::uint64_t LatencyHistogram::total() const {
  std::uint64_t n = 0;
  for (auto c : counts) n += c;
  return n;
}

std::uint64_t LatencyHistogram::quantile_ns(double q) const {
  const std::uint64_t n = total();
  if (n == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBins; ++i) {
    seen += counts[i];
    if (seen >= rank) return std::min<std::uint64_t>(upper_edge_ns(i), std::max<std::uint64_t>(max_ns, 1));
  }
  return max_ns;
}

LatencyHistogram LatencyHistogram::operator-(const LatencyHistogram& earlier) const {
  LatencyHistogram d;
  for (std::size_t i = 0; i < counts.size(); ++i) d.counts[i] = counts[i] - earlier.counts[i];
  // The max over an interval is not recoverable from two cumulative maxima; the upper edge
  // of the highest non-empty bin bounds it (exact when it is the overflow bin's max).
  for (std::size_t i = counts.size(); i-- > 0;) {
    if (d.counts[i] != 0) {
      d.max_ns = i == kBins ? max_ns : std::min<std::uint64_t>(upper_edge_ns(i), max_ns);
      break;
    }
  }
  return d;
}

}  // namespace thecal::loop
