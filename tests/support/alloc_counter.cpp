#include "tests/support/alloc_counter.hpp"

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define THECAL_NO_HEAP_HOOK 1
#endif

namespace {
std::atomic<bool> g_watching{false};
std::atomic<bool> g_every_thread{false};
pthread_t g_watcher{};
std::atomic<std::uint64_t> g_calls{0};

inline void note() noexcept {
  if (g_watching.load(std::memory_order_acquire) &&
      (g_every_thread.load(std::memory_order_relaxed) || pthread_equal(pthread_self(), g_watcher) == 0)) {
    g_calls.fetch_add(1, std::memory_order_relaxed);
  }
}
}  // namespace

namespace thecal::test {
void watch_from_this_thread() {
  g_watcher = pthread_self();
  g_every_thread.store(false);
  g_calls.store(0);
  g_watching.store(true, std::memory_order_release);
}
std::uint64_t other_thread_heap_calls() { return g_calls.load(); }
void count_every_thread() {
  g_every_thread.store(true);
  g_calls.store(0);
  g_watching.store(true, std::memory_order_release);
}
void stop_counting() { g_watching.store(false, std::memory_order_release); }
std::uint64_t heap_calls() { return g_calls.load(); }
#ifdef THECAL_NO_HEAP_HOOK
bool heap_counting_available() { return false; }
#else
bool heap_counting_available() { return true; }
#endif
}  // namespace thecal::test

#ifndef THECAL_NO_HEAP_HOOK
// glibc's own entry points, which its malloc, calloc, ... are aliases of.
extern "C" {
void* __libc_malloc(std::size_t n);  // NOLINT(bugprone-reserved-identifier): glibc's own entry point
void* __libc_calloc(std::size_t n, std::size_t size);  // NOLINT(bugprone-reserved-identifier): glibc's own entry point
void* __libc_realloc(void* p, std::size_t n);  // NOLINT(bugprone-reserved-identifier): glibc's own entry point
void* __libc_memalign(std::size_t align, std::size_t n);  // NOLINT(bugprone-reserved-identifier): glibc's own entry point
void __libc_free(void* p);  // NOLINT(bugprone-reserved-identifier)

void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) {
  note();
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* memalign(std::size_t align, std::size_t n) {
  note();
  return __libc_memalign(align, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) {
  note();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n) {
  note();
  void* p = __libc_memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) {
  if (p != nullptr) note();
  __libc_free(p);
}
}
#endif
