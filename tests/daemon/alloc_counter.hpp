// Counts heap calls (malloc, calloc, realloc, the aligned allocators and free) made by
// every thread but the one that called watch_from_this_thread().  The test binary
// interposes glibc's allocator entry points (operator new and delete go through them in
// libstdc++), so an allocation anywhere, in our code or in a library, is seen.
#pragma once

#include <cstdint>

namespace thecal::test {

/// From now on, count the heap calls of every other thread.
void watch_from_this_thread();
/// Heap calls made by other threads since watch_from_this_thread().
std::uint64_t other_thread_heap_calls();
/// False in sanitizer builds, which bring their own allocator.
bool heap_counting_available();

}  // namespace thecal::test
