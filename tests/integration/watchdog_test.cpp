// S9 on its own: a hung dosing loop with a live main thread starves the systemd watchdog.
//
// No hook in the daemon makes it hang: the test stops the dosing thread alone with ptrace
// (PTRACE_SEIZE + PTRACE_INTERRUPT stop only the thread they name), as a lock-up of that
// thread would, while the main thread goes on serving D-Bus.  thecald runs under a notify
// socket of the test's own with WATCHDOG_USEC set, as systemd would start it, and the test
// reads what it sends there.
#include <dirent.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

constexpr const char* kPump = "org.thecal.Pump1";
constexpr const char* kDiag = "org.thecal.Diagnostics1";

/// A datagram socket where the daemon's sd_notify() messages arrive.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("notify socket");
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  /// Reads every waiting message; returns how many carried WATCHDOG=1.
  int drain_watchdogs() {
    int n = 0;
    char buf[4096];
    for (;;) {
      const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
      if (r <= 0) return n;
      const std::string m(buf, static_cast<std::size_t>(r));
      n += m.find("WATCHDOG=1") != std::string::npos ? 1 : 0;
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

pid_t thread_named(pid_t pid, const std::string& name) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  pid_t found = -1;
  while (const dirent* e = ::readdir(d)) {  // NOLINT(concurrency-mt-unsafe): one reader of this DIR
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/comm");
    std::string comm;
    std::getline(f, comm);
    if (comm == name) found = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
  }
  ::closedir(d);
  return found;
}

TEST(Watchdog, AHungDosingThreadStarvesTheWatchdogWhileTheMainThreadLives) {
  TempDir dir;
  PrivateBus bus(dir.path());
  NotifySocket notify(dir.path() + "/notify");
  // The daemon inherits these, as from systemd; this test process has no other thread yet.
  (void)::setenv("NOTIFY_SOCKET", (dir.path() + "/notify").c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  (void)::setenv("WATCHDOG_USEC", "400000", 1);  // NOLINT(concurrency-mt-unsafe): fed every 200 ms
  Daemon d(dir.path(), bus.address());
  (void)::unsetenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  (void)::unsetenv("WATCHDOG_USEC");  // NOLINT(concurrency-mt-unsafe)
  Client c(bus.address());

  // Fed while the loop runs.
  int fed = 0;
  ASSERT_TRUE(wait_until([&] { return (fed += notify.drain_watchdogs()) >= 3; }, 10'000)) << d.log();

  // The dosing thread stops (and only it).
  const pid_t tid = thread_named(d.pid(), "thecal-dosing");
  ASSERT_GT(tid, 0) << "no thread named thecal-dosing in " << d.pid();
  ASSERT_NE(tid, d.pid()) << "the dosing loop runs in its own thread";
  ASSERT_EQ(::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr), 0) << strerrordesc_np(errno);
  // Whatever happens below, the thread is let go before the daemon is stopped (a traced
  // thread of a killed process stays a zombie until its tracer lets it go).
  struct Detach {
    pid_t tid;
    bool done = false;
    void operator()() {
      if (!done) (void)::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
      done = true;
    }
    ~Detach() { (*this)(); }
  } detach{tid};
  ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr), 0) << strerrordesc_np(errno);
  int st = 0;
  ASSERT_EQ(::waitpid(tid, &st, __WALL), tid);
  ASSERT_TRUE(WIFSTOPPED(st));
  const std::uint64_t cycles = c.get_u64(kDiag, "LoopCycles");

  // The main thread notices at its next watchdog period and feeds no more.
  ASSERT_TRUE(wait_until([&] { return d.log().find("has not advanced") != std::string::npos; }, 10'000)) << d.log();
  (void)notify.drain_watchdogs();  // a feed sent before it noticed
  // Five more watchdog periods (each one the main thread logs as not fed): none fed, while
  // the main thread answers every D-Bus call.
  const auto refusals = [&] {
    const std::string log = d.log();
    int n = 0;
    for (auto i = log.find("has not advanced"); i != std::string::npos; i = log.find("has not advanced", i + 1)) ++n;
    return n;
  };
  const int first = refusals();
  int answered = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        EXPECT_EQ(c.get_string(kPump, "State"), "idle");
        ++answered;
        return refusals() >= first + 5;
      },
      20'000))
      << d.log();
  EXPECT_EQ(notify.drain_watchdogs(), 0) << "the watchdog was fed while the dosing loop was hung";
  EXPECT_EQ(c.get_u64(kDiag, "LoopCycles"), cycles) << "the dosing thread was stopped";
  EXPECT_GT(answered, 0) << "the main thread served the bus throughout";

  // The loop goes on: fed again.
  detach();
  fed = 0;
  EXPECT_TRUE(wait_until([&] { return (fed += notify.drain_watchdogs()) >= 2; }, 10'000)) << d.log();
  EXPECT_GT(c.get_u64(kDiag, "LoopCycles"), cycles);
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace thecal::test
