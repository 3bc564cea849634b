#include "bench/common.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace thecal::bench {

// ---- JSON ---------------------------------------------------------------------------------
Json& Json::operator[](const std::string& key) {
  if (kind_ == Kind::null) kind_ = Kind::object;
  for (auto& [k, v] : members_) {
    if (k == key) return v;
  }
  members_.emplace_back(key, Json());
  return members_.back().second;
}

void Json::push(Json v) {
  if (kind_ == Kind::null) kind_ = Kind::array;
  items_.push_back(std::move(v));
}

namespace {
std::string quote(const std::string& s) {
  std::string o = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}
}  // namespace

std::string Json::dump(int indent) const {
  const std::string pad(static_cast<std::size_t>(indent + 2), ' ');
  const std::string end(static_cast<std::size_t>(indent), ' ');
  switch (kind_) {
    case Kind::null: return "null";
    case Kind::boolean: return num_ != 0 ? "true" : "false";
    case Kind::number: {
      if (!std::isfinite(num_)) return "null";
      char b[64];
      if (num_ == std::floor(num_) && std::fabs(num_) < 1e15) std::snprintf(b, sizeof b, "%.0f", num_);
      else std::snprintf(b, sizeof b, "%.6g", num_);
      return b;
    }
    case Kind::string: return quote(str_);
    case Kind::raw: return str_;
    case Kind::object: {
      if (members_.empty()) return "{}";
      std::string o = "{\n";
      for (std::size_t i = 0; i < members_.size(); ++i) {
        o += pad + quote(members_[i].first) + ": " + members_[i].second.dump(indent + 2);
        o += i + 1 < members_.size() ? ",\n" : "\n";
      }
      return o + end + "}";
    }
    case Kind::array: {
      if (items_.empty()) return "[]";
      bool flat = true;
      for (const auto& it : items_) flat = flat && (it.kind_ == Kind::number || it.kind_ == Kind::string);
      std::string o = flat ? "[" : "[\n";
      for (std::size_t i = 0; i < items_.size(); ++i) {
        o += (flat ? "" : pad) + items_[i].dump(indent + 2);
        if (i + 1 < items_.size()) o += flat ? ", " : ",\n";
      }
      return o + (flat ? "]" : "\n" + end + "]");
    }
  }
  return "null";
}

// ---- histograms ---------------------------------------------------------------------------
std::uint64_t Histogram::total() const {
  std::uint64_t n = overflow;
  for (auto c : counts) n += c;
  return n;
}

double Histogram::quantile_us(double q) const {
  const std::uint64_t n = total();
  if (n == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(n)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return static_cast<double>(i + 1);
  }
  return overflow_max_us;
}

double Histogram::max_us() const {
  if (overflow > 0) return overflow_max_us;
  for (std::size_t i = counts.size(); i-- > 0;) {
    if (counts[i] != 0) return static_cast<double>(i);
  }
  return 0;
}

double Histogram::mean_us() const {
  double s = 0;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    s += (static_cast<double>(i) + 0.5) * static_cast<double>(counts[i]);
    n += counts[i];
  }
  s += overflow_max_us * static_cast<double>(overflow);
  n += overflow;
  return n == 0 ? 0 : s / static_cast<double>(n);
}

void Histogram::add_us(std::size_t bin, std::uint64_t n) {
  if (bin >= counts.size()) counts.resize(bin + 1, 0);
  counts[bin] += n;
}

Histogram Histogram::minus(const Histogram& e) const {
  Histogram d = *this;
  for (std::size_t i = 0; i < e.counts.size() && i < d.counts.size(); ++i) d.counts[i] -= e.counts[i];
  d.overflow = overflow - e.overflow;
  return d;
}

Json Histogram::summary() const {
  Json j = Json::object();
  j["samples"] = total();
  j["p50_us"] = quantile_us(0.5);
  j["p99_us"] = quantile_us(0.99);
  j["p999_us"] = quantile_us(0.999);
  j["max_us"] = max_us();
  j["mean_us"] = mean_us();
  j["overflow"] = overflow;
  return j;
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

Json sample_summary(std::vector<double> v, const char* unit) {
  Json j = Json::object();
  const std::string u = unit;
  j["samples"] = static_cast<std::uint64_t>(v.size());
  if (v.empty()) return j;
  double sum = 0;
  for (double x : v) sum += x;
  j["p50_" + u] = percentile(v, 0.5);
  j["p99_" + u] = percentile(v, 0.99);
  j["p999_" + u] = percentile(v, 0.999);
  j["max_" + u] = v.back();
  j["min_" + u] = v.front();
  j["mean_" + u] = sum / static_cast<double>(v.size());
  return j;
}

// ---- time, files ----------------------------------------------------------------------
std::int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
double now_s() { return static_cast<double>(mono_ns()) / 1e9; }

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void spit(const std::string& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + p);
}
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) s.replace(i, from.size(), to);
  return s;
}
void sleep_s(double s) {
  if (s <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(s);
  ts.tv_nsec = static_cast<long>((s - std::floor(s)) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

std::string which(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string p = dir + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// ---- child processes ----------------------------------------------------------------------
Child::Child(const std::vector<std::string>& argv, const std::string& log, const std::vector<std::string>& env,
             int fd3) {
  const std::string exe = which(argv.at(0));
  if (exe.empty()) throw std::runtime_error("not found: " + argv[0]);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log);
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  started_ns_ = mono_ns();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (fd3 == 3) fcntl(3, F_SETFD, 0);
    else if (fd3 >= 0) dup2(fd3, 3);
    setpgid(0, 0);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    execv(exe.c_str(), a.data());
    _exit(127);
  }
  close(fd);
}

Child::~Child() {
  if (!done_ && pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Child::running() {
  if (done_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) done_ = true;
  return !done_;
}

int Child::wait(double timeout_s) {
  const double end = now_s() + timeout_s;
  while (running()) {
    if (now_s() > end) return -1;
    sleep_s(0.01);
  }
  return status_;
}

int Child::stop(int sig, double timeout_s) {
  if (!running()) return status_;
  kill(-pid_, sig);
  kill(pid_, sig);
  return wait(timeout_s);
}

std::pair<int, std::string> run_capture(const std::vector<std::string>& argv, double timeout_s) {
  char tmpl[] = "/tmp/thecal-bench-run.XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  close(fd);
  int st = -1;
  {
    Child c(argv, tmpl);
    st = c.wait(timeout_s);
    if (st == -1) st = c.stop(9, 5);
  }
  std::string out = slurp(tmpl);
  unlink(tmpl);
  const int code = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return {code, out};
}

// ---- private bus --------------------------------------------------------------------------
PrivateBus::PrivateBus(const Paths& p, const std::string& dir) {
  std::string conf = slurp(p.share + "/scripts/test-bus.conf.in");
  if (conf.empty()) throw std::runtime_error("missing " + p.share + "/scripts/test-bus.conf.in");
  conf = replace_all(conf, "@SOCKET@", dir + "/bus");
  conf = replace_all(conf, "<include>@POLICY@</include>",
                     "<include>" + p.share + "/packaging/org.thecal.Pump1.conf</include>\n  <include>" + p.share +
                         "/bench/bench-baseline.conf</include>");
  spit(dir + "/bus.conf", conf);
  unlink((dir + "/bus.address").c_str());
  // dbus-daemon prints its address on its fd 3, which is this file.
  const int afd = open((dir + "/bus.address").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (afd < 0) throw std::runtime_error("cannot create bus.address");
  proc_ = std::make_unique<Child>(std::vector<std::string>{p.dbus_daemon, "--config-file=" + dir + "/bus.conf", "--nofork",
                                                           "--nopidfile", "--print-address=3"},
                                  dir + "/dbus-daemon.log", std::vector<std::string>{}, afd);
  close(afd);
  for (int i = 0; i < 200 && address_.empty(); ++i) {
    sleep_s(0.025);
    std::string a = slurp(dir + "/bus.address");
    if (const auto nl = a.find('\n'); nl != std::string::npos) address_ = a.substr(0, nl);
  }
  if (address_.empty()) throw std::runtime_error("private dbus-daemon did not start: " + slurp(dir + "/dbus-daemon.log"));
}

// ---- thecald --------------------------------------------------------------------------------
namespace {
std::string sim_config(const Paths& p, const std::string& dir, const DaemonOptions& o) {
  std::istringstream in(slurp(p.share + "/examples/thecald-sim.yaml"));
  std::ostringstream out;
  std::string line;
  while (std::getline(in, line)) {
    auto starts = [&](const char* k) { return line.rfind(k, 0) == 0; };
    if (starts("  prescription:")) line = "  prescription: " + dir + "/prescription.yaml";
    else if (starts("  drugs:")) line = "  drugs: " + p.share + "/config/drugs.yaml";
    else if (starts("  state:")) line = "  state: " + dir + "/state";
    else if (starts("  priority:")) line = "  priority: " + std::to_string(o.priority);
    else if (starts("  cpu:")) {
      if (!o.cpu) continue;
      line = "  cpu: " + std::to_string(*o.cpu);
    } else if (starts("  time_scale:")) {
      char b[64];
      std::snprintf(b, sizeof b, "  time_scale: %g", o.time_scale);
      line = b;
    }
    out << line << "\n";
  }
  return out.str();
}
}  // namespace

Daemon::Daemon(const Paths& p, const std::string& dir, const std::string& bus, const DaemonOptions& o) {
  mkdir((dir + "/state").c_str(), 0755);
  const std::string cfg = dir + "/thecald.yaml";
  spit(cfg, sim_config(p, dir, o));
  chmod(cfg.c_str(), 0644);
  if (!o.prescription.empty()) spit(dir + "/prescription.yaml", slurp(o.prescription));
  else unlink((dir + "/prescription.yaml").c_str());
  log_ = dir + "/thecald.log";

  // The sd_notify listener: a datagram socket of our own.
  const std::string sock = dir + "/notify.sock";
  unlink(sock.c_str());
  notify_fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock.c_str());
  if (notify_fd_ < 0 || bind(notify_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    throw std::runtime_error("cannot bind the notify socket " + sock);
  }
  timeval tv{0, 100'000};
  setsockopt(notify_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  child_ = std::make_unique<Child>(std::vector<std::string>{p.thecald, "--config", cfg, "--bus", bus}, log_,
                                   std::vector<std::string>{"NOTIFY_SOCKET=" + sock});
  const std::int64_t t0 = child_->started_ns();
  const double deadline = now_s() + 30;
  char buf[4096];
  while (now_s() < deadline && child_->running()) {
    const ssize_t n = recv(notify_fd_, buf, sizeof buf - 1, 0);
    if (n <= 0) continue;
    const std::int64_t t = mono_ns();
    buf[n] = '\0';
    std::string_view msg(buf, static_cast<std::size_t>(n));
    if (msg == "READY=1" || msg.rfind("READY=1\n", 0) == 0 || msg.find("\nREADY=1") != std::string_view::npos) {
      ready_s_ = static_cast<double>(t - t0) / 1e9;
      break;
    }
  }
  // Stop listening: thecald sends STATUS= every 5 s, and sd_notify blocks once an undrained
  // datagram socket's queue is full (net.unix.max_dgram_qlen, 10 by default), which would
  // freeze its main thread after about 50 s.  With no listener its notifications fail at once.
  close(notify_fd_);
  notify_fd_ = -1;
  unlink(sock.c_str());
  if (!ready_s_) throw std::runtime_error("thecald did not send READY=1; its log:\n" + slurp(log_));
}

Daemon::~Daemon() {
  child_.reset();
  if (notify_fd_ >= 0) close(notify_fd_);
}

// ---- sd-bus client ------------------------------------------------------------------------
Bus::Bus(const std::string& address) {
  int r = sd_bus_new(&bus_);
  if (r >= 0) r = sd_bus_set_address(bus_, address.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(bus_, 1);
  if (r >= 0) r = sd_bus_start(bus_);
  if (r < 0) throw std::runtime_error(std::string("cannot connect to ") + address + ": " + std::strerror(-r));
}
Bus::~Bus() { sd_bus_flush_close_unref(bus_); }

namespace {
[[noreturn]] void fail(const char* what, const sd_bus_error& e, int r) {
  throw std::runtime_error(std::string(what) + ": " + (e.message != nullptr ? e.message : std::strerror(-r)));
}
}  // namespace

std::uint64_t Bus::get_u64(const char* iface, const char* prop) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  std::uint64_t v = 0;
  const int r = sd_bus_get_property_trivial(bus_, kPumpName, kPumpPath, iface, prop, &e, 't', &v);
  if (r < 0) fail(prop, e, r);
  return v;
}
bool Bus::get_bool(const char* iface, const char* prop) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  int v = 0;
  const int r = sd_bus_get_property_trivial(bus_, kPumpName, kPumpPath, iface, prop, &e, 'b', &v);
  if (r < 0) fail(prop, e, r);
  return v != 0;
}
std::string Bus::get_string(const char* iface, const char* prop) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  char* s = nullptr;
  const int r = sd_bus_get_property_string(bus_, kPumpName, kPumpPath, iface, prop, &e, &s);
  if (r < 0) fail(prop, e, r);
  std::string out = s;
  free(s);  // NOLINT: sd-bus hands over a malloc'ed string
  return out;
}

Histogram Bus::latency_histogram() {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* m = nullptr;
  int r = sd_bus_get_property(bus_, kPumpName, kPumpPath, kDiagIface, "LatencyHistogram", &e, &m, "a(tt)");
  if (r < 0) fail("LatencyHistogram (this thecald is older than the benchmark?)", e, r);
  Histogram h;
  h.counts.assign(kHistUs, 0);
  r = sd_bus_message_enter_container(m, 'a', "(tt)");
  std::uint64_t edge = 0;
  std::uint64_t n = 0;
  while (r >= 0 && (r = sd_bus_message_read(m, "(tt)", &edge, &n)) > 0) {
    // thecald's bins: 1 us wide below 4.096 ms, 64 us wide up to 69.632 ms (a coarse bin's
    // samples are put in its last microsecond: never better than they were); beyond that,
    // (max_ns, count).
    std::size_t bin = edge / 1000;
    if (bin >= 4096 && bin < kHistUs) bin += 63;
    if (bin < kHistUs) {
      h.counts[bin] += n;
    } else {
      h.overflow += n;
      h.overflow_max_us = static_cast<double>(edge / 1000);
    }
  }
  sd_bus_message_unref(m);
  if (r < 0) throw std::runtime_error("cannot read LatencyHistogram");
  return h;
}

void Bus::call(const char* iface, const char* method, const char* sig, ...) {
  sd_bus_message* m = nullptr;
  sd_bus_message* reply = nullptr;
  sd_bus_error e = SD_BUS_ERROR_NULL;
  int r = sd_bus_message_new_method_call(bus_, &m, kPumpName, kPumpPath, iface, method);
  if (r >= 0 && sig != nullptr && *sig != '\0') {
    va_list ap;
    va_start(ap, sig);
    r = sd_bus_message_appendv(m, sig, ap);
    va_end(ap);
  }
  if (r >= 0) r = sd_bus_call(bus_, m, 30'000'000, &e, &reply);
  sd_bus_message_unref(m);
  sd_bus_message_unref(reply);
  if (r < 0) fail(method, e, r);
  sd_bus_error_free(&e);
}

void Bus::set_time_scale(double s) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  const int r = sd_bus_set_property(bus_, kPumpName, kPumpPath, kSimIface, "TimeScale", &e, "d", s);
  if (r < 0) fail("TimeScale", e, r);
}

void start_therapy(Bus& bus, const Paths& p, const std::string& prescription, double scale) {
  const std::string yaml = slurp(p.share + "/examples/" + prescription);
  if (yaml.empty()) throw std::runtime_error("missing examples/" + prescription);
  bus.call(kPumpIface, "LoadPrescription", "s", yaml.c_str());
  bus.call(kPumpIface, "Refill", "dds", 0.0, 20000.0, "");
  bus.set_time_scale(3600);
  bus.call(kPumpIface, "Prime", "d", 220.0);
  const double end = now_s() + 60;
  while (!bus.get_bool(kPumpIface, "CatheterPrimed")) {
    if (now_s() > end) throw std::runtime_error("priming did not finish");
    sleep_s(0.05);
  }
  bus.set_time_scale(scale);
  bus.call(kPumpIface, "Start", "");
  // The State property follows the loop's status snapshot (at most a few cycles behind;
  // much more under software emulation).
  std::string state;
  for (const double until = now_s() + 20; (state = bus.get_string(kPumpIface, "State")) != "infusing" && now_s() < until;) {
    sleep_s(0.05);
  }
  if (state != "infusing") throw std::runtime_error("the pump is not infusing but " + state);
}

}  // namespace thecal::bench
