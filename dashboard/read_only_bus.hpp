// The dashboard's only door to the bus: a connection that knows the read members of thecal
// (SPEC section 4: property reads, GetEvents, GetDeliveryHistory, PreviewPrescription, all
// open to any local user) and refuses every other member before anything is sent.  The
// dashboard is read-only by construction: nothing else in dashboard/ holds an sd_bus.
// Replies are turned into JSON generically (arrays, structs as arrays, dicts as objects,
// NaN as null), which is what the page consumes.
#pragma once

#include <systemd/sd-bus.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace thecal::dashboard {

/// A failed or refused call: the D-Bus error name and its human message.
class BusError : public std::runtime_error {
 public:
  BusError(std::string name, const std::string& message)
      : std::runtime_error(message), name_(std::move(name)) {}
  [[nodiscard]] const std::string& name() const { return name_; }
  /// The connection itself is gone (not just thecald): it must be reopened.
  [[nodiscard]] bool transport() const { return name_ == kTransport; }
  static constexpr const char* kTransport = "thecal.dashboard.Transport";

 private:
  std::string name_;
};

/// The members the dashboard may call, and nothing else: Properties.Get/GetAll on thecal's
/// interfaces, Pump1.GetEvents, GetDeliveryHistory, PreviewPrescription.
[[nodiscard]] bool is_read_member(const std::string& interface, const std::string& member);

/// Reads the next complete value of `m` (at its read position) as JSON.  Throws BusError on
/// a malformed message.
nlohmann::json read_json(sd_bus_message* m);

class ReadOnlyBus {
 public:
  /// "system", "user" or a D-Bus address.  Throws BusError (transport) if it cannot connect.
  explicit ReadOnlyBus(const std::string& which);
  /// Takes an existing connection (tests: an unstarted bus shows refusal needs no bus).
  explicit ReadOnlyBus(sd_bus* adopted) : bus_(adopted) {}
  ~ReadOnlyBus();
  ReadOnlyBus(const ReadOnlyBus&) = delete;
  ReadOnlyBus& operator=(const ReadOnlyBus&) = delete;

  /// Every property of `interface` (org.thecal.Pump1, Diagnostics1, Simulator1) as an object.
  nlohmann::json get_all(const char* interface);
  /// (time µs, type, who, detail), oldest first, from `since_usec`.
  nlohmann::json get_events(std::uint64_t since_usec, std::uint32_t max);
  /// (bucket start µs, mcg, µL).
  nlohmann::json get_delivery_history(std::uint64_t from_usec, std::uint64_t to_usec, std::uint64_t bucket_usec);
  /// [buckets a(tdddd), events a(tss)].
  nlohmann::json preview_prescription(const std::string& yaml, bool with_patient_boluses, std::uint64_t horizon_usec,
                                      std::uint64_t bucket_usec);

  /// The one place a message is sent.  Refuses (org.freedesktop.DBus.Error.AccessDenied,
  /// before any I/O) a member that is_read_member() does not list.  `sig`/args as for
  /// sd_bus_message_append.  Returns the reply's values as a JSON array.
  template <class... Args>
  nlohmann::json call(const char* interface, const char* member, const char* sig, Args... args) {
    refuse_unless_read(interface, member);
    sd_bus_message* m = new_call(interface, member);
    if (sig != nullptr && *sig != '\0') {
      const int r = sd_bus_message_append(m, sig, args...);
      if (r < 0) {
        sd_bus_message_unref(m);
        throw BusError("org.freedesktop.DBus.Error.InvalidArgs", std::string("cannot build the call: ") + member);
      }
    }
    return send(m);
  }

  /// Milliseconds a call may take before it counts as failed.
  void set_timeout_ms(std::uint64_t ms) { timeout_us_ = ms * 1000; }

 private:
  static void refuse_unless_read(const char* interface, const char* member);
  sd_bus_message* new_call(const char* interface, const char* member);
  nlohmann::json send(sd_bus_message* m);  // takes ownership of m

  sd_bus* bus_ = nullptr;
  std::uint64_t timeout_us_ = 2'000'000;
};

}  // namespace thecal::dashboard
