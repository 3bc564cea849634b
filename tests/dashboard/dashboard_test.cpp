// thecal-dashboard as it runs: a separate process under an unprivileged uid, against the
// real thecald on the sim backend over a private bus with the project's real policy.  It
// shows the pump's state, cannot program it (its uid is refused by the bus policy and the
// daemon; its own code never asks, see read_only_bus_test), says so when thecald goes away
// and reconnects when it is back.  The browser test drives Debian's headless Chromium
// through chromedriver (tests/dashboard/browser_test.py).
#include "tests/integration/harness.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace thecal::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string slurp_file(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uid_t nobody_uid() {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  return getpwnam_r("nobody", &pw, buf, sizeof buf, &found) == 0 && found != nullptr ? found->pw_uid : 65534;
}

/// The dashboard process, on any free port, as `uid`.
class Dashboard {
 public:
  Dashboard(const std::string& dir, const std::string& bus, uid_t uid) : log_(dir + "/dashboard.log") {
    proc_.emplace(std::vector<std::string>{THECAL_DASHBOARD_PATH, "--bus", bus, "--listen", "127.0.0.1:0"}, log_, uid);
    const std::regex re("serving http://127\\.0\\.0\\.1:([0-9]+)/");
    const bool up = wait_until([&] {
      std::smatch m;
      const std::string text = slurp_file(log_);
      if (!std::regex_search(text, m, re)) return false;
      port_ = std::stoi(m[1]);
      return true;
    });
    if (!up) throw std::runtime_error("thecal-dashboard did not start: " + slurp_file(log_));
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return proc_->pid(); }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
  [[nodiscard]] std::string log() const { return slurp_file(log_); }
  json status() const {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/status");
    if (!r || r->status != 200) return json::object();
    return json::parse(r->body);
  }
  int stop() { return proc_->stop(SIGTERM, 5'000); }

 private:
  std::string log_;
  std::optional<Process> proc_;
  int port_ = 0;
};

class DashboardTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::optional<PrivateBus> bus;
  std::optional<Daemon> daemon;
  std::optional<Client> client;
  void SetUp() override {
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    bus.emplace(dir.path());
    daemon.emplace(dir.path(), bus->address());
    client.emplace(bus->address());
  }
  RunResult ctl(std::vector<std::string> args, std::optional<uid_t> as = std::nullopt) {
    args.insert(args.begin(), {thecalctl_path(), "--address", bus->address()});
    return run(args, as);
  }
};

TEST_F(DashboardTest, RunsUnprivilegedShowsThePumpAndCannotProgramIt) {
  ASSERT_EQ(geteuid(), 0U) << "runs the dashboard as another uid (CI runs as root)";
  const uid_t nobody = nobody_uid();
  Dashboard dash(dir.path(), bus->address(), nobody);
  // It really runs as that uid.
  const std::string st = slurp_file("/proc/" + std::to_string(dash.pid()) + "/status");
  EXPECT_NE(st.find("Uid:\t" + std::to_string(nobody) + "\t" + std::to_string(nobody)), std::string::npos) << st;

  ASSERT_EQ(ctl({"load", source_dir() + "/examples/prescription-flex.yaml"}).exit_code, 0);
  json s;
  ASSERT_TRUE(wait_until([&] {
    s = dash.status();
    return s.value("reachable", false) && !s["pump"].value("PrescriptionId", std::string()).empty();
  })) << s.dump() << dash.log();
  EXPECT_EQ(s["pump"]["PrescriptionId"], client->get_string("org.thecal.Pump1", "PrescriptionId"));
  EXPECT_EQ(s["pump"]["State"], client->get_string("org.thecal.Pump1", "State"));
  EXPECT_EQ(s["pump"]["Drug"], client->get_string("org.thecal.Pump1", "Drug"));
  EXPECT_TRUE(s["diagnostics"]["LatencyHistogram"].is_array());
  EXPECT_GT(s["diagnostics"]["LoopCycles"].get<std::uint64_t>(), 0U);
  ASSERT_TRUE(wait_until([&] {
    s = dash.status();
    for (const auto& e : s["events"]) {
      if (e[1] == "prescription_loaded") return true;
    }
    return false;
  })) << s.dump();

  // The dashboard's uid may not program: the policy and thecald refuse a programming call.
  const std::string id_before = client->get_string("org.thecal.Pump1", "PrescriptionId");
  for (const std::vector<std::string>& call :
       {std::vector<std::string>{"org.thecal.Pump1.LoadPrescription", "string:version: 1"},
        std::vector<std::string>{"org.thecal.Pump1.Refill", "double:0", "double:1000", "string:"},
        std::vector<std::string>{"org.thecal.Simulator1.InjectFault", "string:occlusion", "boolean:true"}}) {
    std::vector<std::string> argv{"/usr/bin/dbus-send", "--bus=" + bus->address(), "--print-reply",
                                  "--dest=org.thecal.Pump1", "/org/thecal/Pump1"};
    argv.insert(argv.end(), call.begin(), call.end());
    const auto r = run(argv, nobody);
    EXPECT_NE(r.exit_code, 0) << call[0];
    EXPECT_NE(r.err.find("org.freedesktop.DBus.Error.AccessDenied"), std::string::npos) << call[0] << ": " << r.err;
  }
  EXPECT_EQ(client->get_string("org.thecal.Pump1", "PrescriptionId"), id_before);
  EXPECT_EQ(client->get_double("org.thecal.Pump1", "ReservoirUl"), 0.0);

  // The page's pages are served by the process itself.
  httplib::Client http("127.0.0.1", dash.port());
  for (const char* path : {"/", "/live.js", "/style.css", "/preview", "/report"}) {
    const auto r = http.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
  }
  EXPECT_EQ(http.Get("/report?from=abc")->status, 400);
  const auto none = http.Get("/report?period=trial");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404) << "no trial on this pump: said plainly";
  EXPECT_NE(none->body.find("no trial"), std::string::npos);
  // The preview refuses a form without a file or with a horizon beyond SPEC's 180 days.
  httplib::MultipartFormDataItems no_file = {{"horizon_days", "7", "", ""}};
  auto p = http.Post("/preview", no_file);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, 400);
  EXPECT_NE(p->body.find("no prescription file"), std::string::npos) << p->body;
  httplib::MultipartFormDataItems too_long = {{"prescription", "version: 1\n", "p.yaml", "application/yaml"},
                                              {"horizon_days", "181", "", ""}};
  p = http.Post("/preview", too_long);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, 400);
  EXPECT_NE(p->body.find("1 to 180 days"), std::string::npos) << p->body;
  EXPECT_EQ(dash.stop(), 0) << dash.log();
}

TEST(DashboardCommandLine, ABadListenAddressIsRefusedPlainly) {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "127.0.0.1:84x", "127.0.0.1:"}) {
    const auto r = run({THECAL_DASHBOARD_PATH, "--bus", "unix:path=/nonexistent", "--listen", bad});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("--listen wants HOST:PORT"), std::string::npos) << r.err;
  }
  const auto r = run({THECAL_DASHBOARD_PATH, "--no-such-option"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(DashboardTest, SaysWhenThecaldIsGoneAndReconnectsWhenItIsBack) {
  Dashboard dash(dir.path(), bus->address(), nobody_uid());
  json s;
  ASSERT_TRUE(wait_until([&] { return (s = dash.status()).value("reachable", false); })) << s.dump();
  ASSERT_EQ(daemon->stop(), 0);
  ASSERT_TRUE(wait_until([&] { return !(s = dash.status()).value("reachable", true); }, 3000)) << s.dump();
  EXPECT_NE(s["error"].get<std::string>().find("pump not reachable"), std::string::npos) << s.dump();
  daemon.reset();
  daemon.emplace(dir.path(), bus->address());
  ASSERT_TRUE(wait_until([&] { return (s = dash.status()).value("reachable", false); }, 3000)) << s.dump();
  EXPECT_EQ(s["pump"]["State"], client->get_string("org.thecal.Pump1", "State"));
  // The event log is read again from the restarted daemon: both starts, the stop between
  // them and the journal restored, each once.
  ASSERT_TRUE(wait_until([&] {
    int started = 0, stopped = 0, restored = 0;
    for (const auto& e : (s = dash.status())["events"]) {
      started += e[1] == "daemon_started" ? 1 : 0;
      stopped += e[1] == "daemon_stopped" ? 1 : 0;
      restored += e[1] == "journal_restored" ? 1 : 0;
    }
    return started == 2 && stopped == 1 && restored == 1;
  })) << s.dump();
}

TEST_F(DashboardTest, InAHeadlessBrowser) {
  const uid_t nobody = nobody_uid();
  Dashboard dash(dir.path(), bus->address(), nobody);
  // A pump in therapy: flex prescription, filled, primed (fast), started.
  ASSERT_EQ(ctl({"load", source_dir() + "/examples/prescription-flex.yaml"}).exit_code, 0);
  ASSERT_EQ(ctl({"refill", "--withdrawn", "0 mL", "20 mL"}).exit_code, 0);
  ASSERT_EQ(ctl({"time-scale", "3600"}).exit_code, 0);
  ASSERT_EQ(ctl({"prime", "0.22 mL"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] {
    return client->get_bool("org.thecal.Pump1", "CatheterPrimed") && client->get_string("org.thecal.Pump1", "State") == "idle";
  })) << daemon->log();
  ASSERT_EQ(ctl({"time-scale", "1"}).exit_code, 0);
  ASSERT_EQ(ctl({"start"}).exit_code, 0);

  const std::string artifacts = THECAL_DASHBOARD_ARTIFACTS;
  fs::create_directories(artifacts);
  const auto r = run({"/usr/bin/python3", THECAL_BROWSER_TEST, "--url", dash.url(), "--bus", bus->address(),
                      "--thecalctl", thecalctl_path(), "--thecald", thecald_path(), "--config", daemon->config_path(),
                      "--thecald-pid", std::to_string(daemon->pid()), "--artifacts", artifacts, "--work", dir.path()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n--- dashboard:\n" << dash.log();
  std::cout << r.out;
}

}  // namespace
}  // namespace thecal::test
