// drugs.yaml: the drug library's hard and soft limits (SPEC 3.2).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/problem.hpp"
#include "control/units.hpp"

namespace thecal::config {

struct Drug {
  std::string name;
  std::vector<std::string> aliases;
  Concentration max_concentration;
  Mass hard_max_daily;
  Mass soft_max_daily;
  /// max_days_in_reservoir (optional): the solution's stability in the reservoir from the
  /// drug's label; a refill is due that long after the fill (SPEC 3.2, S13).  0: none.
  Duration max_in_reservoir{0};
  std::string source;  // citation; says "unverified" where it is
  /// Added: true only when every one of the three figures is marked verified in the file.
  bool verified = false;
};

struct DrugLibrary {
  std::vector<Drug> drugs;
  /// By name or alias, case-insensitive.
  [[nodiscard]] const Drug* find(std::string_view name) const;
};

struct LoadedDrugLibrary {
  std::optional<DrugLibrary> library;
  Problems problems;
};

/// Longest drug name or alias (TherapyPlan::drug holds 32 characters).
inline constexpr std::size_t kMaxDrugName = 32;

LoadedDrugLibrary parse_drug_library(std::string_view text, const std::string& file);
LoadedDrugLibrary load_drug_library(const std::string& path);

}  // namespace thecal::config
