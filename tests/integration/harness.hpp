// Test harness for integration tests: a private dbus-daemon carrying the project's real
// policy file, the real thecald on the simulated pump, thecalctl, and a small sd-bus
// client to read properties and call methods.  Nothing here is mocked.
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace thecal::test {

std::string source_dir();  // the repository
std::string thecald_path();
std::string thecalctl_path();

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A child process; killed (SIGKILL) at destruction if still running.
class Process {
 public:
  /// Starts argv[0] with argv; stdout and stderr go to `log_path` (appended).
  Process(const std::vector<std::string>& argv, const std::string& log_path, std::optional<uid_t> as_uid = std::nullopt);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Sends `sig` and waits up to `timeout_ms`; returns the wait status or -1 on time-out.
  int stop(int sig, int timeout_ms = 10'000);
  [[nodiscard]] bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs a command to completion (time-out 60 s), capturing stdout and stderr.
RunResult run(const std::vector<std::string>& argv, std::optional<uid_t> as_uid = std::nullopt);

class PrivateBus {
 public:
  /// `policy`: the bus policy file to include (default: packaging/org.thecal.Pump1.conf).
  explicit PrivateBus(const std::string& dir, std::string policy = "");
  [[nodiscard]] const std::string& address() const { return address_; }

 private:
  std::string address_;
  std::optional<Process> proc_;
};

/// The real thecald on the sim backend, with the examples' sim board file pointed at `dir`.
class Daemon {
 public:
  Daemon(const std::string& dir, const std::string& bus_address, double time_scale = 1.0);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  /// SIGTERM and wait; returns the exit status.  After a clean stop, its flight recording
  /// (state/recorder) must replay exactly with thecal-replay: a test failure otherwise.
  int stop();
  [[nodiscard]] std::string log() const;
  [[nodiscard]] const std::string& config_path() const { return config_; }
  [[nodiscard]] pid_t pid() const { return proc_ ? proc_->pid() : -1; }

 private:
  std::string dir_;
  std::string config_;
  std::string log_;
  std::optional<Process> proc_;
  bool replay_checked_ = false;
};

/// An sd-bus client connection to the private bus (as root, or as `uid` via setresuid in a
/// child is not possible in-process: use thecalctl with run(..., uid) for other users).
class Client {
 public:
  explicit Client(const std::string& address);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  [[nodiscard]] sd_bus* bus() const { return bus_; }

  double get_double(const char* iface, const char* prop);
  std::string get_string(const char* iface, const char* prop);
  std::uint64_t get_u64(const char* iface, const char* prop);
  std::uint32_t get_u32(const char* iface, const char* prop);
  bool get_bool(const char* iface, const char* prop);

  struct Event {
    std::uint64_t time_us;
    std::string type, who, detail;
  };
  std::vector<Event> events();
  /// Drugs a(sddd): (name, concentration mcg/mL, 24 h mcg, limit mcg), primary first.
  struct Drug {
    std::string name;
    double conc = 0, delivered = 0, limit = 0;
  };
  std::vector<Drug> drugs();

  /// Calls a method with a signature and arguments; returns the D-Bus error name ("" if ok).
  std::string call(const char* iface, const char* method, const char* sig, ...);

 private:
  sd_bus* bus_ = nullptr;
};

/// Polls `pred` every 20 ms until it holds or `timeout_ms` passes.
template <class F>
bool wait_until(F&& pred, int timeout_ms = 10'000);

}  // namespace thecal::test

#include "tests/integration/harness_inl.hpp"
