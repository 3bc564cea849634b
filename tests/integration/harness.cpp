#include "tests/integration/harness.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace thecal::test {

std::string source_dir() { return THECAL_SOURCE_DIR; }
std::string thecald_path() { return THECALD_PATH; }
std::string thecalctl_path() { return THECALCTL_PATH; }

namespace {
std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void spit(const std::string& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
}
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) s.replace(i, from.size(), to);
  return s;
}

pid_t spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, std::optional<uid_t> as_uid) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    setpgid(0, 0);
    if (as_uid) {
      // Drop to the test user with its groups (setpriv-like), as a real client would run.
      std::vector<std::string> a{"setpriv", "--reuid=" + std::to_string(*as_uid), "--regid=" + std::to_string(*as_uid),
                                 "--init-groups", "--"};
      a.insert(a.end(), argv.begin(), argv.end());
      std::vector<char*> c;
      for (auto& s : a) c.push_back(s.data());
      c.push_back(nullptr);
      execvp(c[0], c.data());
      _exit(127);
    }
    std::vector<char*> c;
    for (const auto& s : argv) c.push_back(const_cast<char*>(s.c_str()));
    c.push_back(nullptr);
    execv(c[0], c.data());
    _exit(127);
  }
  return pid;
}
}  // namespace

TempDir::TempDir() {
  char tmpl[] = "/tmp/thecal-test.XXXXXX";
  const char* p = mkdtemp(tmpl);
  if (p == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = p;
  fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Process::Process(const std::vector<std::string>& argv, const std::string& log_path, std::optional<uid_t> as_uid) {
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log_path);
  pid_ = spawn(argv, fd, fd, as_uid);
  close(fd);
}

Process::~Process() {
  if (pid_ > 0 && status_ == -1) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Process::running() {
  if (status_ != -1) return false;
  const pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == 0) {
    status_ = -1;
    return true;
  }
  return false;
}

int Process::stop(int sig, int timeout_ms) {
  if (status_ != -1) return status_;
  kill(pid_, sig);
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (waitpid(pid_, &status_, WNOHANG) == pid_) return status_;
    usleep(10'000);
  }
  status_ = -1;
  return -1;
}

RunResult run(const std::vector<std::string>& argv, std::optional<uid_t> as_uid) {
  char out_tmpl[] = "/tmp/thecal-run-out.XXXXXX";
  char err_tmpl[] = "/tmp/thecal-run-err.XXXXXX";
  const int out = mkstemp(out_tmpl);
  const int err = mkstemp(err_tmpl);
  RunResult r;
  const pid_t pid = spawn(argv, out, err, as_uid);
  int status = 0;
  for (int waited = 0;; waited += 5) {
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (waited > 60'000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(5'000);
  }
  close(out);
  close(err);
  r.out = slurp(out_tmpl);
  r.err = slurp(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

PrivateBus::PrivateBus(const std::string& dir, std::string policy) {
  if (policy.empty()) policy = source_dir() + "/packaging/org.thecal.Pump1.conf";
  std::string conf = slurp(source_dir() + "/scripts/test-bus.conf.in");
  conf = replace_all(conf, "@SOCKET@", dir + "/bus");
  conf = replace_all(conf, "@POLICY@", policy);
  spit(dir + "/bus.conf", conf);
  proc_.emplace(std::vector<std::string>{"/usr/bin/dbus-daemon", "--config-file=" + dir + "/bus.conf", "--nofork",
                                         "--nopidfile"},
                dir + "/bus.log");
  address_ = "unix:path=" + dir + "/bus";
  // Up when a client can connect (the socket file appears before the daemon listens).
  const bool up = wait_until(
      [&] {
        if (!fs::exists(dir + "/bus")) return false;
        sd_bus* b = nullptr;
        int r = sd_bus_new(&b);
        if (r >= 0) r = sd_bus_set_address(b, address_.c_str());
        if (r >= 0) r = sd_bus_set_bus_client(b, 1);
        if (r >= 0) r = sd_bus_start(b);
        sd_bus_flush_close_unref(b);
        return r >= 0;
      },
      10'000);
  if (!up) throw std::runtime_error("private dbus-daemon did not start: " + slurp(dir + "/bus.log"));
  // The socket is reachable by the test users (they connect through it).
  fs::permissions(dir + "/bus", fs::perms::all);
}

Daemon::Daemon(const std::string& dir, const std::string& bus_address, double time_scale) : dir_(dir) {
  std::string cfg = slurp(source_dir() + "/examples/thecald-sim.yaml");
  std::istringstream in(cfg);
  std::ostringstream outp;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  prescription:", 0) == 0) line = "  prescription: " + dir + "/prescription.yaml";
    else if (line.rfind("  drugs:", 0) == 0) line = "  drugs: " + source_dir() + "/config/drugs.yaml";
    else if (line.rfind("  state:", 0) == 0) line = "  state: " + dir + "/state";
    else if (line.rfind("  time_scale:", 0) == 0) line = "  time_scale: " + std::to_string(time_scale);
    outp << line << "\n";
  }
  fs::create_directories(dir + "/state");
  config_ = dir + "/thecald.yaml";
  spit(config_, outp.str());
  fs::permissions(config_, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  log_ = dir + "/thecald.log";
  proc_.emplace(std::vector<std::string>{thecald_path(), "--config", config_, "--bus", bus_address}, log_);
  Client c(bus_address);
  const bool up = wait_until(
      [&] {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char* s = nullptr;
        const int r = sd_bus_get_property_string(c.bus(), "org.thecal.Pump1", "/org/thecal/Pump1", "org.thecal.Pump1",
                                                 "State", &e, &s);
        sd_bus_error_free(&e);
        free(s);
        return r >= 0;
      },
      10'000);
  if (!up) throw std::runtime_error("thecald did not come up:\n" + log());
}

Daemon::~Daemon() {
  if (proc_ && proc_->running()) (void)stop();
}

int Daemon::stop() {
  if (!proc_) return -1;
  const int status = proc_->stop(SIGTERM, 10'000);
  // S15 on every integration run (issue 15 item 6): a daemon that stopped cleanly leaves a
  // recording of its whole life, which must replay exactly and keep every checked rule.
  if (!replay_checked_ && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    replay_checked_ = true;
    const auto r = run({THECAL_REPLAY_PATH, dir_ + "/state/recorder"});
    if (r.exit_code != 0) {
      ADD_FAILURE() << "thecal-replay " << dir_ << "/state/recorder: exit " << r.exit_code << "\n" << r.out << r.err;
    } else {
      std::printf("[ replay   ] %s", r.out.substr(0, r.out.find('\n') + 1).c_str());
    }
  }
  return status;
}

std::string Daemon::log() const { return slurp(log_); }

Client::Client(const std::string& address) {
  int r = sd_bus_new(&bus_);
  if (r >= 0) r = sd_bus_set_address(bus_, address.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(bus_, 1);
  if (r >= 0) r = sd_bus_start(bus_);
  if (r < 0) throw std::runtime_error(std::string("cannot connect to ") + address + ": " + std::strerror(-r));
}

Client::~Client() { sd_bus_flush_close_unref(bus_); }

namespace {
constexpr const char* kSvc = "org.thecal.Pump1";
constexpr const char* kObj = "/org/thecal/Pump1";

template <class T>
T get_trivial(sd_bus* bus, const char* iface, const char* prop, char type) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  T v{};
  const int r = sd_bus_get_property_trivial(bus, kSvc, kObj, iface, prop, &e, type, &v);
  std::string msg = e.message != nullptr ? e.message : "";
  sd_bus_error_free(&e);
  if (r < 0) throw std::runtime_error(std::string("cannot read ") + prop + ": " + msg);
  return v;
}
}  // namespace

double Client::get_double(const char* iface, const char* prop) { return get_trivial<double>(bus_, iface, prop, 'd'); }
std::uint64_t Client::get_u64(const char* iface, const char* prop) { return get_trivial<std::uint64_t>(bus_, iface, prop, 't'); }
std::uint32_t Client::get_u32(const char* iface, const char* prop) { return get_trivial<std::uint32_t>(bus_, iface, prop, 'u'); }
bool Client::get_bool(const char* iface, const char* prop) { return get_trivial<int>(bus_, iface, prop, 'b') != 0; }

std::string Client::get_string(const char* iface, const char* prop) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  char* s = nullptr;
  const int r = sd_bus_get_property_string(bus_, kSvc, kObj, iface, prop, &e, &s);
  sd_bus_error_free(&e);
  if (r < 0) throw std::runtime_error(std::string("cannot read ") + prop);
  std::string out = s;
  free(s);
  return out;
}

std::vector<Client::Event> Client::events() {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_, kSvc, kObj, "org.thecal.Pump1", "GetEvents", &e, &reply, "tu", std::uint64_t{0},
                             std::uint32_t{10'000});
  sd_bus_error_free(&e);
  std::vector<Event> out;
  if (r < 0) return out;
  r = sd_bus_message_enter_container(reply, 'a', "(tsss)");
  std::uint64_t t = 0;
  const char *type = nullptr, *who = nullptr, *detail = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(tsss)", &t, &type, &who, &detail)) > 0) out.push_back({t, type, who, detail});
  sd_bus_message_unref(reply);
  return out;
}

std::vector<Client::Drug> Client::drugs() {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_get_property(bus_, kSvc, kObj, "org.thecal.Pump1", "Drugs", &e, &reply, "a(sddd)");
  std::string msg = e.message != nullptr ? e.message : "";
  sd_bus_error_free(&e);
  if (r < 0) throw std::runtime_error("cannot read Drugs: " + msg);
  std::vector<Drug> out;
  r = sd_bus_message_enter_container(reply, 'a', "(sddd)");
  const char* name = nullptr;
  double c = 0, d = 0, l = 0;
  while (r >= 0 && (r = sd_bus_message_read(reply, "(sddd)", &name, &c, &d, &l)) > 0) out.push_back({name, c, d, l});
  sd_bus_message_unref(reply);
  if (r < 0) throw std::runtime_error("cannot parse Drugs");
  return out;
}

std::string Client::call(const char* iface, const char* method, const char* sig, ...) {
  sd_bus_message* m = nullptr;
  int r = sd_bus_message_new_method_call(bus_, &m, kSvc, kObj, iface, method);
  if (r < 0) return "client-error";
  if (sig != nullptr && *sig != '\0') {
    va_list ap;
    va_start(ap, sig);
    r = sd_bus_message_appendv(m, sig, ap);
    va_end(ap);
  }
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  r = sd_bus_call(bus_, m, 10'000'000, &e, &reply);
  sd_bus_message_unref(m);
  sd_bus_message_unref(reply);
  std::string name = r < 0 ? (e.name != nullptr ? e.name : "errno") : "";
  sd_bus_error_free(&e);
  return name;
}

}  // namespace thecal::test
