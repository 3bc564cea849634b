// Helpers shared by the config tests.
#pragma once

#include <chrono>
#include <string>

#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "config/problem.hpp"

namespace thecal::config::test {

inline std::string source_dir() { return THECAL_SOURCE_DIR; }

/// Problems joined one per line, for readable assertion failures.
inline std::string dump(const Problems& p) { return format_all(p); }

/// The shipped library, loaded once.
inline const DrugLibrary& shipped_library() {
  static const DrugLibrary lib = [] {
    LoadedDrugLibrary l = load_drug_library(source_dir() + "/config/drugs.yaml");
    return l.library.value_or(DrugLibrary{});
  }();
  return lib;
}

/// 2026-11-25T12:00:00Z: the fixed "now" of the table-driven tests.
inline constexpr WallTime kTestNow = wall_us(1'795'608'000'000'000LL);

inline WallTime real_now() {
  return wall_us(std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
}

inline PrescriptionContext context(WallTime now = kTestNow) {
  PrescriptionContext c;
  c.drugs = &shipped_library();
  c.now = now;
  return c;
}

}  // namespace thecal::config::test
