// One problem found in a configuration file, located the way compilers do it:
//   prescription.yaml:12:9: basal.steps[1].rate: unknown unit "mg/dya"
#pragma once

#include <string>
#include <vector>

namespace thecal::config {

struct Problem {
  std::string file;     // as given by the caller (a path, or "<dbus>" for D-Bus input)
  int line = 0;         // 1-based; 0 if unknown
  int column = 0;       // 1-based; 0 if unknown
  std::string path;     // key path: basal.steps[1].rate
  std::string message;  // what is wrong, in plain words

  [[nodiscard]] std::string format() const;  // "file:line:col: path: message"
};

using Problems = std::vector<Problem>;

/// Joins problems one per line (the text of InvalidPrescription errors).
std::string format_all(const Problems& problems);

}  // namespace thecal::config
