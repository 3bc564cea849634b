// Reading a config file from disk, refusing one that someone else could have written (S10).
#pragma once

#include <optional>
#include <string>

#include "config/problem.hpp"

namespace thecal::config {

struct FileText {
  std::optional<std::string> text;  // set only when the file may be trusted
  Problems problems;
};

/// Reads `path` and refuses it (a Problem naming the file) when:
///  - it is not a regular file, or is larger than kMaxConfigBytes;
///  - it is writable by its group or by others (whatever the group: only the owner may write);
///  - its owner is neither root nor the effective user of this process;
///  - its directory lets someone else replace it: group- or world-writable without the
///    sticky bit, or owned by neither root nor the effective user.
/// The checks run on the opened descriptor (fstat), so the file checked is the file read.
FileText read_config_file(const std::string& path);

}  // namespace thecal::config
