// Helpers shared by the config tests.
#pragma once

#include <string>

#include "config/problem.hpp"

namespace thecal::config::test {

inline std::string source_dir() { return THECAL_SOURCE_DIR; }

/// Problems joined one per line, for readable assertion failures.
inline std::string dump(const Problems& p) { return format_all(p); }

}  // namespace thecal::config::test
