// Whether two prescriptions' reservoirs hold the same solution (issue 16).
#pragma once

#include "control/therapy_plan.hpp"

namespace thecal {

/// The same primary drug at the same concentration and the same admixture (drugs and
/// concentrations, in any order).  Otherwise a change of it needs Refill: LoadPrescription
/// refuses it in a filled reservoir, and the preview applies it as a refill.
bool same_solution(const TherapyPlan& a, const TherapyPlan& b);

}  // namespace thecal
