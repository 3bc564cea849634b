#include "dashboard/poller.hpp"

#include "dashboard/read_only_bus.hpp"
#include "dbus/names.hpp"

#include <memory>

namespace thecal::dashboard {

namespace {
constexpr std::uint64_t kHourUs = 3'600'000'000ULL;
constexpr std::uint64_t kDayUs = 24 * kHourUs;
constexpr std::size_t kEventsKept = 300;
constexpr std::uint32_t kEventsPage = 1000;

std::uint64_t wall_now_usec() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}
}  // namespace

Poller::Poller(std::string bus, PollIntervals intervals) : bus_name_(std::move(bus)), intervals_(intervals) {
  parts_.status = nlohmann::json{{"reachable", false}, {"error", "not read yet"}}.dump();
  parts_.history = nlohmann::json{{"events", nlohmann::json::array()},
                                  {"hourly", nlohmann::json::array()},
                                  {"daily", nlohmann::json::array()}}
                       .dump();
}

Poller::~Poller() { stop(); }

void Poller::start() { thread_ = std::thread([this] { run(); }); }

void Poller::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Poller::stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

SnapshotParts Poller::wait_newer(const SnapshotParts& seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] {
    return stop_ || parts_.status_version != seen.status_version || parts_.history_version != seen.history_version;
  });
  return parts_;
}

SnapshotParts Poller::current() {
  std::lock_guard<std::mutex> lock(mu_);
  return parts_;
}

nlohmann::json Poller::snapshot() {
  const SnapshotParts p = current();
  nlohmann::json out = nlohmann::json::parse(p.status);
  const nlohmann::json h = nlohmann::json::parse(p.history);
  for (const auto& [k, v] : h.items()) out[k] = v;
  return out;
}

void Poller::publish_status(const nlohmann::json& status) {
  std::string text = status.dump();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (text == parts_.status) return;
    parts_.status = std::move(text);
    ++parts_.status_version;
  }
  cv_.notify_all();
}

void Poller::publish_history(const nlohmann::json& history) {
  std::string text = history.dump();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (text == parts_.history) return;
    parts_.history = std::move(text);
    ++parts_.history_version;
  }
  cv_.notify_all();
}

void Poller::set_unreachable(const std::string& why) {
  if (reachable_) {
    // thecald restarted or went away: the event list is read again from the start.
    events_.clear();
    events_since_ = 0;
  }
  reachable_ = false;
  nlohmann::json s = nlohmann::json::parse(current().status);
  s["reachable"] = false;
  s["error"] = why;
  if (!s.contains("unreachable_since_usec") || s["unreachable_since_usec"].is_null()) {
    s["unreachable_since_usec"] = wall_now_usec();
  }
  publish_status(s);
}

void Poller::poll_fast(ReadOnlyBus& bus) {
  nlohmann::json s;
  s["pump"] = bus.get_all(dbus::kPumpInterface);
  s["diagnostics"] = bus.get_all(dbus::kDiagnosticsInterface);
  try {
    s["simulator"] = bus.get_all(dbus::kSimulatorInterface);
  } catch (const BusError& e) {
    if (e.transport()) throw;
    s["simulator"] = nullptr;  // not the sim backend
  }
  if (s["diagnostics"].contains("WallClockUsec")) pump_now_usec_ = s["diagnostics"]["WallClockUsec"].get<std::uint64_t>();
  s["reachable"] = true;
  s["error"] = "";
  s["unreachable_since_usec"] = nullptr;
  reachable_ = true;
  publish_status(s);
}

void Poller::poll_slow(ReadOnlyBus& bus) {
  // New events since the last one seen (the last timestamp is asked again: equal-time
  // events already held are skipped).
  while (true) {
    const nlohmann::json page = bus.get_events(events_since_, kEventsPage);
    std::size_t added = 0;
    for (const auto& e : page) {
      bool dup = false;
      for (auto it = events_.rbegin(); it != events_.rend() && (*it)[0] == e[0]; ++it) dup = dup || *it == e;
      if (dup) continue;
      events_.push_back(e);
      ++added;
    }
    while (events_.size() > kEventsKept) events_.pop_front();
    if (!page.empty()) events_since_ = page.back()[0].get<std::uint64_t>();
    if (page.size() < kEventsPage || added == 0) break;
  }
  const std::uint64_t now = pump_now_usec_ != 0 ? pump_now_usec_ : wall_now_usec();
  const std::uint64_t hour0 = now / kHourUs * kHourUs - 47 * kHourUs;
  const std::uint64_t day0 = now / kDayUs * kDayUs - 13 * kDayUs;
  nlohmann::json h;
  h["events"] = nlohmann::json::array();
  for (const auto& e : events_) h["events"].push_back(e);
  h["hourly"] = bus.get_delivery_history(hour0, now, kHourUs);
  h["daily"] = bus.get_delivery_history(day0, now, kDayUs);
  h["history_now_usec"] = now;
  publish_history(h);
}

void Poller::run() {
  std::unique_ptr<ReadOnlyBus> bus;
  auto next_slow = std::chrono::steady_clock::now();
  while (!stopping()) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      if (!bus) bus = std::make_unique<ReadOnlyBus>(bus_name_);
      poll_fast(*bus);
      if (t0 >= next_slow) {
        poll_slow(*bus);
        next_slow = t0 + intervals_.slow;
      }
    } catch (const BusError& e) {
      if (e.transport()) bus.reset();
      set_unreachable("pump not reachable: " + std::string(e.what()));
      next_slow = t0;  // read the history again as soon as it is back
    } catch (const std::exception& e) {
      set_unreachable(std::string("pump not readable: ") + e.what());
      next_slow = t0;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, t0 + intervals_.fast, [&] { return stop_; });
  }
}

}  // namespace thecal::dashboard
