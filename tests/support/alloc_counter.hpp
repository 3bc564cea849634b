// Counts heap calls (malloc, calloc, realloc, the aligned allocators and free): those of
// every thread but the one that called watch_from_this_thread() (the dosing loop test), or
// those of every thread between count_every_thread() and stop_counting() (the control-step
// benchmark).  The binary that links it interposes glibc's allocator entry points
// (operator new and delete go through them in libstdc++), so an allocation anywhere, in
// our code or in a library, is seen.  The one heap counter of the project: tests/loop and
// bench/ both link it (target thecal_alloc_counter).
#pragma once

#include <cstdint>

namespace thecal::test {

/// From now on, count the heap calls of every other thread.
void watch_from_this_thread();
/// Heap calls made by other threads since watch_from_this_thread().
std::uint64_t other_thread_heap_calls();
/// From now on, count the heap calls of every thread, this one included.
void count_every_thread();
/// Stops counting (the count stays readable).
void stop_counting();
/// Heap calls counted since the last watch_from_this_thread() or count_every_thread().
std::uint64_t heap_calls();
/// False in sanitizer builds, which bring their own allocator.
bool heap_counting_available();

}  // namespace thecal::test
