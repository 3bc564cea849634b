#include "config/problem.hpp"

namespace thecal::config {

std::string Problem::format() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

std::string format_all(const Problems& problems) {
  std::string out;
  for (const Problem& p : problems) {
    out += p.format();
    out += '\n';
  }
  return out;
}

}  // namespace thecal::config
