// In-process benchmarks of the pure core (see core_bench.cpp).
#pragma once

#include <cstddef>
#include <string>

#include "bench/common.hpp"

namespace thecal::bench {

/// PumpCore::tick at realistic states: per-tick percentiles, heap calls, page faults; and
/// Google Benchmark over the same states (its JSON report written to `gbench_out`, "" = skip).
/// The timed loop runs SCHED_FIFO at `priority` (0: as it is) with mlockall.
Json control_step_bench(const std::string& share, std::size_t ticks, int priority, const std::string& gbench_out);

/// Trumpet curves and cumulative error for every example prescription over `days` simulated
/// days; plot data into `data_dir` ("" = none).
Json accuracy_bench(const std::string& share, double days, const std::string& data_dir);
/// The flight recorder (bench/recorder_bench.cpp): bytes per day, replay time of `days`.
Json recorder_bench(const std::string& share, double days);

/// PreviewPrescription's engine (app/preview.hpp) on the flex example with its periodic dose
/// and every allowed patient bolus, from a live state, for 1, 30, 90 and 180 days.
Json preview_bench(const std::string& share);

}  // namespace thecal::bench
