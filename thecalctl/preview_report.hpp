// thecalctl preview: what PreviewPrescription returned, in words and as an SVG plot.  Pure
// functions of the two previews (the prescription in force, the new one), no bus here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace thecalctl {

struct PreviewBucket {
  std::uint64_t start_us = 0;
  double mcg = 0;           // primary drug mass at the tip in the bucket
  double ul = 0;            // pump volume in the bucket
  double reservoir_ul = 0;  // at the bucket's end
  double rolling_mcg = 0;   // rolling 24 h at the bucket's end
};

struct PreviewEvent {
  std::uint64_t time_us = 0;
  std::string type, detail;
};

struct Preview {
  std::vector<PreviewBucket> buckets;
  std::vector<PreviewEvent> events;
};

/// One drug of a solution: the primary first, then the admixture (SPEC 3.1, Drugs).
struct SolutionDrug {
  std::string name;
  double conc_mcg_per_ml = 0;
  double limit_mcg = 0;  // its own rolling-24 h limit
};

struct PreviewSide {
  std::string label;                 // "in force" / the file's name
  std::optional<Preview> preview;    // none: no prescription (or it could not be previewed)
  std::string why;                   // when there is none
  double limit_mcg = 0;              // rolling-24 h limit (0: unknown)
  std::vector<SolutionDrug> drugs;   // the solution, primary first (empty: unknown)
};

struct PreviewContext {
  std::uint64_t start_us = 0;  // the preview's first bucket
  std::uint64_t bucket_us = 0;
  double days = 0;
  bool with_boluses = false;
  std::string pump_state;  // the pump's State now
};

/// The side-by-side summary (daily mass, tip mass by time of day, patient boluses, refill
/// date, bridge, alarms), with a warning line when the daily mass jumps.
std::string preview_summary(const PreviewSide& old_side, const PreviewSide& new_side, const PreviewContext& ctx);

/// An SVG document: tip mass rate, rolling 24 h against the limit, reservoir; old and new.
std::string preview_svg(const PreviewSide& old_side, const PreviewSide& new_side, const PreviewContext& ctx);

/// `max_daily_dose` as written in a prescription's text (mcg), for the plot's limit line.
std::optional<double> max_daily_dose_in(const std::string& yaml);

/// The solution a prescription's text describes (drug, then admixture: name, concentration,
/// max_daily_dose); empty when it cannot be read (the pump validates; this is for the words).
std::vector<SolutionDrug> solution_in(const std::string& yaml);

}  // namespace thecalctl
