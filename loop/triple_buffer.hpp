// A single-producer / single-consumer "latest value" buffer: the writer never waits and
// never fails, the reader always gets the newest complete value.  Three slots: the writer
// fills its back slot and swaps it with the middle one; the reader swaps the middle slot
// with its front one when a fresh value is there.  Used for the status snapshot, where a
// queue would keep stale values when the reader falls behind.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace thecal::loop {

template <class T>
class TripleBuffer {
 public:
  /// Before any thread uses it: writes every slot once (no first-touch page fault later).
  void prefault(const T& v) {
    for (auto& slot : slots_) slot = v;
  }
  /// Writer: publishes `v` (copies it into the back slot).
  void write(const T& v) {
    slots_[back_] = v;
    const std::uint8_t old = middle_.exchange(static_cast<std::uint8_t>(back_ | kFresh), std::memory_order_acq_rel);
    back_ = old & kIndex;
  }
  /// Reader: copies the newest value into `out` if one was written since the last read.
  bool read(T& out) {
    if ((middle_.load(std::memory_order_relaxed) & kFresh) == 0) return false;
    const std::uint8_t old = middle_.exchange(front_, std::memory_order_acq_rel);
    front_ = old & kIndex;
    out = slots_[front_];
    return true;
  }

 private:
  static constexpr std::uint8_t kIndex = 0x3;
  static constexpr std::uint8_t kFresh = 0x4;
  std::array<T, 3> slots_{};
  std::uint8_t back_ = 0;                  // writer's
  std::atomic<std::uint8_t> middle_{1};    // shared: index | fresh
  std::uint8_t front_ = 2;                 // reader's
};

}  // namespace thecal::loop
