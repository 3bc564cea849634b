#include "daemon/process.hpp"

#include <malloc.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "io/log.hpp"

namespace thecal::daemon {

CpuDmaLatency::CpuDmaLatency(std::optional<Duration> limit) {
  if (!limit) {
    log_info("loop.cpu_dma_latency is off: the kernel chooses the CPU idle states");
    return;
  }
  const auto us = static_cast<std::int32_t>(to_usec(*limit));
  // Tests of the failure path only; read once, before any other thread exists.
  const char* test_path = std::getenv("THECAL_CPU_DMA_LATENCY_PATH");  // NOLINT(concurrency-mt-unsafe)
  const char* path = test_path != nullptr ? test_path : "/dev/cpu_dma_latency";
  fd_ = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd_ < 0 || ::write(fd_, &us, sizeof us) != static_cast<ssize_t>(sizeof us)) {
    log_warning("Could not hold %s at %d us (%s): CPUs may sleep deeper between cycles, which delays the dosing "
                "loop's wake-ups (the package's udev rule gives group thecal access; loop.cpu_dma_latency: off "
                "silences this)", path, static_cast<int>(us), strerrordesc_np(errno));
    if (fd_ >= 0) (void)::close(fd_);
    fd_ = -1;
    return;
  }
  log_info("Holding %s at %d us while thecald runs", path, static_cast<int>(us));
}

CpuDmaLatency::~CpuDmaLatency() {
  if (fd_ >= 0) (void)::close(fd_);
}

void keep_off_loop_cpu(int loop_cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (loop_cpu < 0 || loop_cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof set, &set) != 0) return;
  if (!CPU_ISSET(loop_cpu, &set) || CPU_COUNT(&set) < 2) return;  // nowhere else to go
  CPU_CLR(loop_cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    log_warning("Could not keep the main thread off the dosing loop's CPU %d: %s", loop_cpu, strerrordesc_np(errno));
  } else {
    log_info("Main thread runs on the CPUs other than the dosing loop's CPU %d", loop_cpu);
  }
}

void lock_memory() {
  // With every page locked, memory freed inside malloc's heaps stays resident.  A fixed mmap
  // threshold (which also stops glibc raising it after each large free) puts every large
  // block, such as a preview's buckets or its D-Bus reply, in its own mapping, returned to
  // the system when freed: a 100,000-bucket preview leaves the RSS where it was.
  (void)mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds map terabytes of shadow memory: locking it all would take the machine.
  log_notice("Sanitizer build: memory not locked (mlockall skipped)");
#else
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    log_warning("mlockall failed (%s): page faults may delay the dosing loop", strerrordesc_np(errno));
  }
#endif
}

namespace {

// The backend, for the fatal-signal handler: leave the motor disabled on a crash (S9).
std::atomic<io::Backend*> g_backend{nullptr};

void on_fatal_signal(int sig) {
  if (io::Backend* b = g_backend.load()) b->safe_state();
  (void)signal(sig, SIG_DFL);
  (void)raise(sig);
}

}  // namespace

void guard_backend(io::Backend* backend) {
  g_backend.store(backend);
  if (backend == nullptr) return;
  struct sigaction sa{};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) (void)sigaction(s, &sa, nullptr);
}

}  // namespace thecal::daemon
