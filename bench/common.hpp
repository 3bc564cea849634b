// Shared pieces of thecal-bench: a small JSON value, latency histograms, percentiles,
// child processes, a private D-Bus and thecald under an sd_notify listener.
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dbus/names.hpp"

namespace thecal::bench {

// ---- JSON ---------------------------------------------------------------------------------
class Json {
 public:
  Json() = default;  // null
  Json(double v) : kind_(Kind::number), num_(v) {}  // NOLINT(google-explicit-constructor)
  Json(int v) : Json(static_cast<double>(v)) {}      // NOLINT(google-explicit-constructor)
  Json(std::int64_t v) : Json(static_cast<double>(v)) {}   // NOLINT(google-explicit-constructor)
  Json(std::uint64_t v) : Json(static_cast<double>(v)) {}  // NOLINT(google-explicit-constructor)
  Json(bool v) : kind_(Kind::boolean), num_(v ? 1 : 0) {}  // NOLINT(google-explicit-constructor)
  Json(const char* s) : kind_(Kind::string), str_(s) {}    // NOLINT(google-explicit-constructor)
  Json(std::string s) : kind_(Kind::string), str_(std::move(s)) {}  // NOLINT(google-explicit-constructor)
  static Json object() { Json j; j.kind_ = Kind::object; return j; }
  static Json array() { Json j; j.kind_ = Kind::array; return j; }
  /// Text that is already JSON (Google Benchmark's report).
  static Json raw(std::string text) { Json j; j.kind_ = Kind::raw; j.str_ = std::move(text); return j; }

  Json& operator[](const std::string& key);  // object member (created)
  void push(Json v);                          // array element
  [[nodiscard]] std::string dump(int indent = 0) const;

 private:
  enum class Kind { null, number, boolean, string, object, array, raw };
  Kind kind_ = Kind::null;
  double num_ = 0;
  std::string str_;
  std::vector<std::pair<std::string, Json>> members_;
  std::vector<Json> items_;
};

// ---- latency histograms: 1 us bins, the value of a sample is floor(latency / 1 us) --------
struct Histogram {
  std::vector<std::uint64_t> counts;  // counts[i]: samples in [i, i+1) us
  std::uint64_t overflow = 0;         // samples beyond the last bin
  double overflow_max_us = 0;         // the largest of those (as reported)
  [[nodiscard]] std::uint64_t total() const;
  /// Upper edge (us) of the bin holding quantile q (nearest rank); the max if in overflow.
  [[nodiscard]] double quantile_us(double q) const;
  /// floor-us of the largest sample.
  [[nodiscard]] double max_us() const;
  [[nodiscard]] double mean_us() const;  // from bin centres
  void add_us(std::size_t bin, std::uint64_t n);
  Histogram minus(const Histogram& earlier) const;
  [[nodiscard]] Json summary() const;  // samples, p50, p99, p99.9, max, mean (us)
};

/// Percentiles of raw samples (sorted in place), nearest rank.
double percentile(std::vector<double>& sorted, double q);
Json sample_summary(std::vector<double> v, const char* unit);

// ---- time, files ----------------------------------------------------------------------
std::int64_t mono_ns();
double now_s();
std::string slurp(const std::string& path);
void spit(const std::string& path, const std::string& text);
std::string replace_all(std::string s, const std::string& from, const std::string& to);
void sleep_s(double s);

// ---- child processes ----------------------------------------------------------------------
class Child {
 public:
  /// Starts argv (argv[0] looked up in PATH if it has no '/'); stdout+stderr to `log`;
  /// `env` entries NAME=VALUE are added.  The child gets its own process group.
  /// `fd3`: a descriptor handed to the child as its fd 3 (-1: none).
  Child(const std::vector<std::string>& argv, const std::string& log, const std::vector<std::string>& env = {},
        int fd3 = -1);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::int64_t started_ns() const { return started_ns_; }
  /// Sends sig to the child's process group, waits up to timeout; returns the wait status or -1.
  int stop(int sig = 15, double timeout_s = 10);
  /// Waits for it to end by itself; returns the wait status or -1 on time-out.
  int wait(double timeout_s);
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool done_ = false;
  std::int64_t started_ns_ = 0;
};

/// Runs argv to completion, returns (exit status, stdout+stderr).
std::pair<int, std::string> run_capture(const std::vector<std::string>& argv, double timeout_s = 600);
/// Finds an executable in PATH; "" if none.
std::string which(const std::string& name);

// ---- the set-up: where things are -----------------------------------------------------------
struct Paths {
  std::string share;        // the source tree (or its copy in the guest)
  std::string thecald;
  std::string baseline;     // bench-dbus-baseline
  std::string dbus_daemon = "dbus-daemon";
  std::string cyclictest = "cyclictest";
  std::string stress_ng = "stress-ng";
  std::string work;         // scratch directory
};

/// A private system-like dbus-daemon with the project's policy and the baseline's.
class PrivateBus {
 public:
  PrivateBus(const Paths& p, const std::string& dir);
  [[nodiscard]] const std::string& address() const { return address_; }

 private:
  std::string address_;
  std::unique_ptr<Child> proc_;
};

struct DaemonOptions {
  int priority = 80;
  std::optional<int> cpu = 1;
  double time_scale = 1;
  std::string prescription;  // stored prescription to start with ("" = none)
};

/// thecald on the sim backend, started under an sd_notify listener.
class Daemon {
 public:
  Daemon(const Paths& p, const std::string& dir, const std::string& bus, const DaemonOptions& o);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  /// Seconds from just before exec to the READY=1 datagram; nullopt if it did not come.
  [[nodiscard]] std::optional<double> ready_s() const { return ready_s_; }
  [[nodiscard]] pid_t pid() const { return child_->pid(); }
  int stop() { return child_->stop(15, 15); }
  [[nodiscard]] std::string log() const { return slurp(log_); }

 private:
  std::string log_;
  int notify_fd_ = -1;
  std::unique_ptr<Child> child_;
  std::optional<double> ready_s_;
};

// ---- an sd-bus client -------------------------------------------------------------------
class Bus {
 public:
  explicit Bus(const std::string& address);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  [[nodiscard]] sd_bus* get() const { return bus_; }
  std::uint64_t get_u64(const char* iface, const char* prop);
  bool get_bool(const char* iface, const char* prop);
  std::string get_string(const char* iface, const char* prop);
  Histogram latency_histogram();
  /// Calls a Pump1/Simulator1 method; throws with the D-Bus error on failure.
  void call(const char* iface, const char* method, const char* sig, ...);
  void set_time_scale(double s);

 private:
  sd_bus* bus_ = nullptr;
};

/// Latency histograms cover 1 us bins up to thecald's coarse range (69.632 ms), so neither
/// side's max is cut at 4 ms; cyclictest is run with `-h` this size.
inline constexpr std::size_t kHistUs = 69'632;
inline constexpr const char* kPumpName = dbus::kBusName;
inline constexpr const char* kPumpPath = dbus::kObjectPath;
inline constexpr const char* kPumpIface = dbus::kPumpInterface;
inline constexpr const char* kDiagIface = dbus::kDiagnosticsInterface;
inline constexpr const char* kSimIface = dbus::kSimulatorInterface;
inline constexpr const char* kBaseName = "org.thecal.BenchBaseline";
inline constexpr const char* kBasePath = "/org/thecal/BenchBaseline";
inline constexpr const char* kBaseIface = "org.thecal.BenchBaseline1";

/// Loads `prescription` (a file under share/examples), fills 20 mL, primes the catheter at a
/// high time scale, sets the time scale back to `scale`, and starts therapy.
void start_therapy(Bus& bus, const Paths& p, const std::string& prescription, double scale = 1);

}  // namespace thecal::bench
