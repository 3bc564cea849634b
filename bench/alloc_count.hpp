// Counts heap calls (malloc, calloc, realloc, the aligned allocators, free) of the whole
// process while counting is on.  thecal-bench interposes glibc's entry points (as
// tests/daemon/alloc_counter.cpp does for the loop test), so any allocation, in the core or
// in a library it calls, is seen.  Off in sanitizer builds.
#pragma once

#include <cstdint>

namespace thecal::bench {
void count_heap(bool on);
std::uint64_t heap_calls();
bool heap_counting_available();
}  // namespace thecal::bench
