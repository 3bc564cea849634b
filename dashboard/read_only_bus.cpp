#include "dashboard/read_only_bus.hpp"

#include "dbus/bus_connection.hpp"
#include "dbus/names.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string_view>
#include <system_error>

namespace thecal::dashboard {

namespace {
constexpr std::string_view kProperties = "org.freedesktop.DBus.Properties";

[[noreturn]] void malformed(int r) {
  throw BusError("org.freedesktop.DBus.Error.InvalidSignature",
                 std::string("cannot read the reply: ") + std::generic_category().message(-r));
}

void check(int r) {
  if (r < 0) malformed(r);
}

template <class T>
T read_basic(sd_bus_message* m, char type) {
  T v{};
  check(sd_bus_message_read_basic(m, type, &v));
  return v;
}
}  // namespace

bool is_read_member(const std::string& interface, const std::string& member) {
  if (interface == kProperties) return member == "Get" || member == "GetAll";
  if (interface == dbus::kPumpInterface) {
    return member == "GetEvents" || member == "GetDeliveryHistory" || member == "PreviewPrescription";
  }
  return false;
}

nlohmann::json read_json(sd_bus_message* m) {
  char type = 0;
  const char* contents = nullptr;
  check(sd_bus_message_peek_type(m, &type, &contents));
  switch (type) {
    case SD_BUS_TYPE_ARRAY: {
      const bool dict = contents != nullptr && contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN;
      check(sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, contents));
      nlohmann::json out = dict ? nlohmann::json::object() : nlohmann::json::array();
      while (true) {
        const int end = sd_bus_message_at_end(m, 0);
        check(end);
        if (end > 0) break;
        if (dict) {
          char et = 0;
          const char* ec = nullptr;
          check(sd_bus_message_peek_type(m, &et, &ec));
          check(sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, ec));
          nlohmann::json key = read_json(m);
          nlohmann::json value = read_json(m);
          check(sd_bus_message_exit_container(m));
          out[key.is_string() ? key.get<std::string>() : key.dump()] = std::move(value);
        } else {
          out.push_back(read_json(m));
        }
      }
      check(sd_bus_message_exit_container(m));
      return out;
    }
    case SD_BUS_TYPE_STRUCT: {
      check(sd_bus_message_enter_container(m, SD_BUS_TYPE_STRUCT, contents));
      nlohmann::json out = nlohmann::json::array();
      while (true) {
        const int end = sd_bus_message_at_end(m, 0);
        check(end);
        if (end > 0) break;
        out.push_back(read_json(m));
      }
      check(sd_bus_message_exit_container(m));
      return out;
    }
    case SD_BUS_TYPE_VARIANT: {
      check(sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, contents));
      nlohmann::json out = read_json(m);
      check(sd_bus_message_exit_container(m));
      return out;
    }
    case SD_BUS_TYPE_BOOLEAN: return read_basic<int>(m, type) != 0;
    case SD_BUS_TYPE_BYTE: return read_basic<std::uint8_t>(m, type);
    case SD_BUS_TYPE_INT16: return read_basic<std::int16_t>(m, type);
    case SD_BUS_TYPE_UINT16: return read_basic<std::uint16_t>(m, type);
    case SD_BUS_TYPE_INT32: return read_basic<std::int32_t>(m, type);
    case SD_BUS_TYPE_UINT32: return read_basic<std::uint32_t>(m, type);
    case SD_BUS_TYPE_INT64: return read_basic<std::int64_t>(m, type);
    case SD_BUS_TYPE_UINT64: return read_basic<std::uint64_t>(m, type);
    case SD_BUS_TYPE_UNIX_FD: return read_basic<int>(m, type);
    case SD_BUS_TYPE_DOUBLE: {
      const double d = read_basic<double>(m, type);
      if (!std::isfinite(d)) return nullptr;  // NaN: "not measured yet" (JSON has no NaN)
      return d;
    }
    case SD_BUS_TYPE_STRING:
    case SD_BUS_TYPE_OBJECT_PATH:
    case SD_BUS_TYPE_SIGNATURE: return std::string(read_basic<const char*>(m, type));
    default: malformed(-EBADMSG);
  }
}

ReadOnlyBus::ReadOnlyBus(const std::string& which) {
  const int r = dbus::open_bus(which, &bus_);
  if (r < 0) throw BusError(BusError::kTransport, "cannot connect to the bus " + which + ": " + std::generic_category().message(-r));
}

// Nothing to flush: every call waits for its reply.
ReadOnlyBus::~ReadOnlyBus() { sd_bus_close_unref(bus_); }

void ReadOnlyBus::refuse_unless_read(const char* interface, const char* member) {
  if (interface == nullptr || member == nullptr || !is_read_member(interface, member)) {
    throw BusError(dbus::kErrAccessDenied, std::string("thecal-dashboard is read-only: it does not call ") +
                                               (interface ? interface : "?") + "." + (member ? member : "?"));
  }
}

sd_bus_message* ReadOnlyBus::new_call(const char* interface, const char* member) {
  sd_bus_message* m = nullptr;
  const int r = sd_bus_message_new_method_call(bus_, &m, dbus::kBusName, dbus::kObjectPath, interface, member);
  if (r < 0) throw BusError(BusError::kTransport, std::string("cannot create a call: ") + std::generic_category().message(-r));
  return m;
}

nlohmann::json ReadOnlyBus::send(sd_bus_message* m) {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  const int r = sd_bus_call(bus_, m, timeout_us_, &e, &reply);
  sd_bus_message_unref(m);
  if (r < 0) {
    const bool named = sd_bus_error_is_set(&e) != 0 && e.name != nullptr;
    std::string name = named ? e.name : BusError::kTransport;
    std::string msg = e.message != nullptr ? e.message : std::generic_category().message(-r);
    sd_bus_error_free(&e);
    // The connection is unusable (the bus went away): reopen it.
    if (!named || sd_bus_is_open(bus_) <= 0) name = BusError::kTransport;
    throw BusError(name, msg);
  }
  nlohmann::json out = nlohmann::json::array();
  try {
    while (true) {
      const int end = sd_bus_message_at_end(reply, 1);
      check(end);
      if (end > 0) break;
      out.push_back(read_json(reply));
    }
  } catch (...) {
    sd_bus_message_unref(reply);
    throw;
  }
  sd_bus_message_unref(reply);
  return out;
}

nlohmann::json ReadOnlyBus::get_all(const char* interface) {
  return call(kProperties.data(), "GetAll", "s", interface).at(0);
}

nlohmann::json ReadOnlyBus::get_events(std::uint64_t since_usec, std::uint32_t max) {
  return call(dbus::kPumpInterface, "GetEvents", "tu", since_usec, max).at(0);
}

nlohmann::json ReadOnlyBus::get_delivery_history(std::uint64_t from_usec, std::uint64_t to_usec,
                                                 std::uint64_t bucket_usec) {
  return call(dbus::kPumpInterface, "GetDeliveryHistory", "ttt", from_usec, to_usec, bucket_usec).at(0);
}

nlohmann::json ReadOnlyBus::preview_prescription(const std::string& yaml, bool with_patient_boluses,
                                                 std::uint64_t horizon_usec, std::uint64_t bucket_usec) {
  return call(dbus::kPumpInterface, "PreviewPrescription", "sbtt", yaml.c_str(), static_cast<int>(with_patient_boluses),
              horizon_usec, bucket_usec);
}

}  // namespace thecal::dashboard
