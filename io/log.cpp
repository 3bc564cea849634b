#include "io/log.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace thecal::io {

void log_at(int priority, const char* format, ...) {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  if (journal) std::fprintf(stderr, "<%d>%s\n", priority, buf);
  else std::fprintf(stderr, "thecald: %s\n", buf);
}

}  // namespace thecal::io
