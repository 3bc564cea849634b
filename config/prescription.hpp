// prescription.yaml: validated and compiled into the core's TherapyPlan (SPEC 3.1).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/drug_library.hpp"
#include "config/problem.hpp"
#include "control/board_params.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"

namespace thecal::config {

struct PrescriptionContext {
  const DrugLibrary* drugs = nullptr;  // required
  BoardParams board;                   // reachable motor rates
  WallTime now{};                      // trial.ends must be after this
};

struct LoadedPrescription {
  std::optional<TherapyPlan> plan;  // set only when there is no problem
  Problems problems;
};

/// Validates prescription text and compiles it (id = hex SHA-256 of `text`; UTC offset
/// table from the tz database for the prescription's time zone).  Every problem is
/// reported, not only the first.
LoadedPrescription parse_prescription(std::string_view text, const std::string& file,
                                      const PrescriptionContext& ctx);

/// A one-screen plain-words summary of a valid plan: daily mass by source, uL/day, days
/// of reservoir to the low alarm (thecald --check-config, thecalctl validate).
std::string summarize(const TherapyPlan& plan, const BoardParams& board);

}  // namespace thecal::config
