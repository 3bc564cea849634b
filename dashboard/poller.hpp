// The dashboard's view of the pump: a thread that reads thecald over its ReadOnlyBus
// (properties every `fast`, events and delivery history every `slow`) into a snapshot, and
// wakes every page stream when it changes.  When thecald (or the bus) goes away the
// snapshot says so and the thread keeps trying: it reconnects when the pump is back.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace thecal::dashboard {

class ReadOnlyBus;

struct PollIntervals {
  std::chrono::milliseconds fast{250};
  std::chrono::milliseconds slow{2000};
};

/// What a page stream has seen: the two parts of the snapshot, each with its version.
struct SnapshotParts {
  std::uint64_t status_version = 0;
  std::string status;  // JSON: reachable, error, pump, diagnostics, simulator
  std::uint64_t history_version = 0;
  std::string history;  // JSON: events, hourly, daily
};

class Poller {
 public:
  Poller(std::string bus, PollIntervals intervals);
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  void start();
  void stop();

  /// Waits until a part is newer than the versions in `seen` (or `timeout`, or stop()) and
  /// returns the current parts.
  SnapshotParts wait_newer(const SnapshotParts& seen, std::chrono::milliseconds timeout);
  [[nodiscard]] SnapshotParts current();
  /// The whole snapshot as one JSON object (GET /api/status).
  [[nodiscard]] nlohmann::json snapshot();
  [[nodiscard]] bool stopping();

 private:
  void run();
  void poll_fast(ReadOnlyBus& bus);
  void poll_slow(ReadOnlyBus& bus);
  void set_unreachable(const std::string& why);
  void publish_status(const nlohmann::json& status);
  void publish_history(const nlohmann::json& history);

  std::string bus_name_;
  PollIntervals intervals_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  SnapshotParts parts_;
  std::string last_status_compare_;
  // Events accumulated across polls (GetEvents returns the oldest first).
  std::deque<nlohmann::json> events_;
  std::uint64_t events_since_ = 0;
  std::uint64_t pump_now_usec_ = 0;
  bool reachable_ = false;
};

}  // namespace thecal::dashboard
