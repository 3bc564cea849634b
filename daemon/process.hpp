// The process around the dosing loop: what thecald sets up before the loop starts (the PM
// QoS request, locked memory, the main thread off the loop's CPU) and the crash handler
// that leaves the motor disabled on a fatal signal (S9).
#pragma once

#include <optional>

#include "control/time.hpp"
#include "io/backend.hpp"

namespace thecal::daemon {

/// Holds a PM QoS request on /dev/cpu_dma_latency for the life of the process (the kernel
/// drops it when the file is closed): CPUs stay out of idle states that take longer than
/// the limit to leave, so the dosing loop wakes on time, and each wake-up costs less CPU
/// (on the bench host 1.2 % instead of 2.3 % of a core at 1 kHz: docs/performance.md).
/// cyclictest does the same by default.  Not having it is not fatal: the loop runs, later.
class CpuDmaLatency {
 public:
  explicit CpuDmaLatency(std::optional<Duration> limit);
  ~CpuDmaLatency();
  CpuDmaLatency(const CpuDmaLatency&) = delete;
  CpuDmaLatency& operator=(const CpuDmaLatency&) = delete;

 private:
  int fd_ = -1;
};

/// The main thread (sd-event: D-Bus, journal writes, signals) leaves the dosing loop's CPU
/// to the loop when it may run elsewhere: the loop preempts it anyway (SCHED_FIFO), but each
/// preemption of a busy main thread on that CPU is a context switch and a colder cache for
/// the loop, which is what a D-Bus flood showed as a longer p99.9 (docs/performance.md).
void keep_off_loop_cpu(int loop_cpu);

/// mlockall, so the dosing loop takes no page fault (skipped in sanitizer builds).
void lock_memory();

/// From now on a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) first puts
/// `backend` in its safe state; nullptr stops that (before the backend goes away).
void guard_backend(io::Backend* backend);

}  // namespace thecal::daemon
