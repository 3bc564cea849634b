// thecal-dashboard: a read-only web page on the pump (SPEC section 9).  A D-Bus client like
// any other, unprivileged: a poller thread reads thecald through ReadOnlyBus, cpp-httplib
// serves the page, its assets, /api/status (JSON), /events (server-sent events), /report
// and /preview.  Everything the page needs is served from here (no CDN).
#include "dashboard/pages.hpp"
#include "dashboard/poller.hpp"
#include "dashboard/read_only_bus.hpp"
#include "dbus/names.hpp"

#include <httplib.h>

#include <boost/program_options.hpp>

#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

namespace po = boost::program_options;
using nlohmann::json;
using thecal::dashboard::BusError;
using thecal::dashboard::Poller;
using thecal::dashboard::ReadOnlyBus;
using thecal::dashboard::SnapshotParts;

namespace {

constexpr std::uint64_t kDayUs = 86'400'000'000ULL;
constexpr int kExitUsage = 2;

std::uint64_t param_u64(const httplib::Request& req, const char* name, std::uint64_t fallback) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  std::size_t used = 0;
  const unsigned long long n = std::stoull(v, &used);  // throws on garbage
  if (used != v.size()) throw std::invalid_argument(std::string(name) + " is not a number of µs: " + v);
  return n;
}

/// Every event from `since` on (GetEvents pages of 1,000, oldest first).
json all_events(ReadOnlyBus& bus, std::uint64_t since) {
  json out = json::array();
  while (true) {
    const json page = bus.get_events(since, 1000);
    for (const auto& e : page) {
      if (!out.empty() && out.back()[0] == e[0]) {
        bool dup = false;
        for (auto it = out.rbegin(); it != out.rend() && (*it)[0] == e[0]; ++it) dup = dup || *it == e;
        if (dup) continue;
      }
      out.push_back(e);
    }
    if (page.size() < 1000) return out;
    since = page.back()[0].get<std::uint64_t>();
    if (page.front()[0] == page.back()[0]) return out;  // 1,000 events at one µs: give up paging
  }
}

void serve_report(const std::string& bus_name, const httplib::Request& req, httplib::Response& res) {
  using namespace thecal::dashboard;
  try {
    ReadOnlyBus bus(bus_name);
    const json pump = bus.get_all(thecal::dbus::kPumpInterface);
    const json diag = bus.get_all(thecal::dbus::kDiagnosticsInterface);
    const std::uint64_t now = diag.value("WallClockUsec", std::uint64_t{0});
    const json events = all_events(bus, 0);
    // Default: the last 7 UTC days, today included (one printed week).
    Period p{now / kDayUs * kDayUs > 6 * kDayUs ? now / kDayUs * kDayUs - 6 * kDayUs : 0, now, "last 7 days"};
    if (req.has_param("period")) {
      std::string why;
      const auto found = resolve_period(req.get_param_value("period"), events, pump, now, why);
      if (!found) {
        res.status = 404;
        res.set_content(render_error_page("No such period", why), "text/html; charset=utf-8");
        return;
      }
      p = *found;
    } else if (req.has_param("from") || req.has_param("to")) {
      p.from_usec = param_u64(req, "from", p.from_usec);
      p.to_usec = param_u64(req, "to", now);
      p.name = "chosen period";
      if (p.to_usec <= p.from_usec) throw std::invalid_argument("from must be before to");
      if (p.to_usec - p.from_usec > 400 * kDayUs) throw std::invalid_argument("a report covers at most 400 days");
    }
    json drugs = pump.contains("Drugs") ? pump["Drugs"] : json::array();
    if (drugs.empty() && !pump.value("Drug", std::string()).empty()) {
      drugs.push_back({pump["Drug"], pump["ConcentrationMcgPerMl"], pump["Delivered24hMcg"], pump["DailyLimitMcg"]});
    }
    const std::uint64_t day0 = p.from_usec / kDayUs * kDayUs;
    const std::uint64_t day_end = (p.to_usec + kDayUs - 1) / kDayUs * kDayUs;
    const json daily = bus.get_delivery_history(day0, day_end, kDayUs);
    res.set_content(render_report(summarize_report(p, events, daily, drugs)), "text/html; charset=utf-8");
  } catch (const BusError& e) {
    res.status = 503;
    res.set_content(render_error_page("pump not reachable", e.name() + ": " + e.what()), "text/html; charset=utf-8");
  } catch (const std::exception& e) {
    res.status = 400;
    res.set_content(render_error_page("Bad report request", e.what()), "text/html; charset=utf-8");
  }
}

void serve_preview(const std::string& bus_name, const httplib::Request& req, httplib::Response& res) {
  using namespace thecal::dashboard;
  const auto page = [&](const json* a, const json* b, const std::string& err, const std::string& name) {
    res.set_content(render_preview_page(a, b, err, name), "text/html; charset=utf-8");
  };
  if (!req.has_file("prescription")) {
    res.status = 400;
    return page(nullptr, nullptr, "no prescription file in the upload", "");
  }
  const auto file = req.get_file_value("prescription");
  std::uint64_t days = 7;
  if (req.has_file("horizon_days")) days = std::strtoull(req.get_file_value("horizon_days").content.c_str(), nullptr, 10);
  if (days < 1 || days > 180) {
    res.status = 400;
    return page(nullptr, nullptr, "horizon must be 1 to 180 days", file.filename);
  }
  const bool boluses = req.has_file("with_patient_boluses");
  const std::uint64_t horizon = days * kDayUs;
  const std::uint64_t bucket = days <= 1 ? 15 * 60'000'000ULL : 3'600'000'000ULL;
  try {
    ReadOnlyBus bus(bus_name);
    bus.set_timeout_ms(30'000);
    const json now = bus.preview_prescription("", boluses, horizon, bucket);
    const json next = bus.preview_prescription(file.content, boluses, horizon, bucket);
    page(&now, &next, "", file.filename);
  } catch (const BusError& e) {
    res.status = 502;
    page(nullptr, nullptr, "thecald refused the preview: " + e.name() + ": " + e.what(), file.filename);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string bus_name = "system";
  std::string listen = "127.0.0.1:8470";
  po::options_description opts("thecal-dashboard [options]");
  opts.add_options()("help,h", "this help")("bus", po::value(&bus_name)->default_value(bus_name),
                                            "system, user, or a D-Bus address")(
      "listen", po::value(&listen)->default_value(listen), "HOST:PORT to serve on (port 0: any free port)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "thecal-dashboard: " << e.what() << "\n" << opts;
    return kExitUsage;
  }
  if (vm.count("help") != 0) {
    std::cout << opts;
    return 0;
  }
  const auto colon = listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    const std::string digits = listen.substr(colon + 1);
    const bool all_digits = !digits.empty() && digits.size() <= 5 &&
                            digits.find_first_not_of("0123456789") == std::string::npos;
    if (all_digits) port = std::stoi(digits);
  }
  if (colon == std::string::npos || port < 0 || port > 65535) {
    std::cerr << "thecal-dashboard: --listen wants HOST:PORT, got '" << listen << "'\n";
    return kExitUsage;
  }
  const std::string host = listen.substr(0, colon);

  // SIGTERM/SIGINT are taken by one thread (sigwait); every other thread blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  (void)std::signal(SIGPIPE, SIG_IGN);

  Poller poller(bus_name, {});
  httplib::Server svr;
  svr.new_task_queue = [] { return new httplib::ThreadPool(32); };
  svr.Get("/", [&](const httplib::Request&, httplib::Response& res) {
    // The current snapshot goes with the page, so its first paint already shows the pump.
    std::string page = thecal::dashboard::live_page_html();
    std::string snap = poller.snapshot().dump();
    for (std::size_t at = 0; (at = snap.find("</", at)) != std::string::npos; at += 3) snap.replace(at, 2, "<\\/");
    const std::string tag = "<script src=\"/live.js\">";
    page.replace(page.find(tag), 0, "<script>window.thecalInitial=" + snap + ";</script>");
    res.set_content(page, "text/html; charset=utf-8");
  });
  svr.Get("/style.css", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(thecal::dashboard::style_css(), "text/css");
  });
  svr.Get("/live.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(thecal::dashboard::live_js(), "text/javascript");
  });
  svr.Get("/api/status", [&](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(poller.snapshot().dump(), "application/json");
  });
  svr.Get("/events", [&](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    struct Seen {
      bool first = true;
      SnapshotParts parts;
    };
    auto seen = std::make_shared<Seen>();
    res.set_chunked_content_provider("text/event-stream", [&poller, seen](std::size_t, httplib::DataSink& sink) {
      if (poller.stopping()) return false;
      const SnapshotParts now = seen->first ? poller.current() : poller.wait_newer(seen->parts, std::chrono::seconds(15));
      if (poller.stopping()) return false;
      std::string out = seen->first ? "retry: 1000\n\n" : "";
      if (seen->first || now.status_version != seen->parts.status_version) out += "event: status\ndata: " + now.status + "\n\n";
      if (seen->first || now.history_version != seen->parts.history_version) out += "event: history\ndata: " + now.history + "\n\n";
      if (out.empty()) out = ": keep-alive\n\n";
      seen->first = false;
      seen->parts.status_version = now.status_version;
      seen->parts.history_version = now.history_version;
      return sink.write(out.data(), out.size());
    });
  });
  svr.Get("/report", [&](const httplib::Request& req, httplib::Response& res) { serve_report(bus_name, req, res); });
  svr.Get("/preview", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(thecal::dashboard::render_preview_page(nullptr, nullptr, "", ""), "text/html; charset=utf-8");
  });
  svr.Post("/preview", [&](const httplib::Request& req, httplib::Response& res) { serve_preview(bus_name, req, res); });

  int bound = -1;
  if (port == 0) {
    bound = svr.bind_to_any_port(host);
  } else if (svr.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) {
    std::cerr << "thecal-dashboard: cannot listen on " << listen << "\n";
    return 1;
  }
  poller.start();
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    poller.stop();
    svr.stop();
  });
  std::cout << "thecal-dashboard: serving http://" << host << ":" << bound << "/ (bus " << bus_name << ")" << std::endl;
  const bool ok = svr.listen_after_bind();
  if (stopper.joinable()) {
    // listen ended by itself (not by a signal): wake the stopper.
    (void)pthread_kill(stopper.native_handle(), SIGINT);
    stopper.join();
  }
  poller.stop();
  return ok ? 0 : 1;
}
