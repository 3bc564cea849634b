// The dashboard's one door to the bus lets only the read members through (SPEC section 4:
// property reads, GetEvents, GetDeliveryHistory, PreviewPrescription) and refuses every
// other member of the real introspection XML before a single byte is sent.
#include "dashboard/read_only_bus.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace thecal::dashboard {
namespace {

std::vector<std::string> methods_in(const std::string& xml_file) {
  std::ifstream in(std::string(THECAL_SOURCE_DIR) + "/dbus/" + xml_file);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> out;
  const std::regex re("<method name=\"([A-Za-z0-9_]+)\"");
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) out.push_back((*it)[1]);
  return out;
}

TEST(ReadOnlyBus, OnlyTheReadMembersOfTheRealInterfacesAreAllowed) {
  const std::set<std::string> reads = {"GetEvents", "GetDeliveryHistory", "PreviewPrescription"};
  const auto pump = methods_in("org.thecal.Pump1.xml");
  ASSERT_GE(pump.size(), 15U) << "the XML was read";
  std::size_t refused = 0;
  for (const auto& m : pump) {
    EXPECT_EQ(is_read_member("org.thecal.Pump1", m), reads.count(m) == 1) << m;
    refused += reads.count(m) == 0 ? 1 : 0;
  }
  EXPECT_GE(refused, 12U);
  for (const char* m : {"LoadPrescription", "Refill", "ClinicianBolus", "RequestBolus", "Start", "ImportTherapy"}) {
    EXPECT_FALSE(is_read_member("org.thecal.Pump1", m)) << m;
  }
  for (const auto& m : methods_in("org.thecal.Simulator1.xml")) EXPECT_FALSE(is_read_member("org.thecal.Simulator1", m)) << m;
  EXPECT_TRUE(is_read_member("org.thecal.Pump1", "PreviewPrescription"));
  EXPECT_TRUE(is_read_member("org.freedesktop.DBus.Properties", "Get"));
  EXPECT_TRUE(is_read_member("org.freedesktop.DBus.Properties", "GetAll"));
  EXPECT_FALSE(is_read_member("org.freedesktop.DBus.Properties", "Set")) << "TimeScale is writable: not by the dashboard";
  EXPECT_FALSE(is_read_member("org.thecal.Diagnostics1", "GetEvents"));
  EXPECT_FALSE(is_read_member("org.thecal.Pump1", "getevents"));
  EXPECT_FALSE(is_read_member("", ""));
}

/// A connection over a socketpair whose other end the test reads: what was sent shows.
struct PeerBus {
  int peer = -1;
  sd_bus* bus = nullptr;
  PeerBus() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    peer = sv[1];
    EXPECT_GE(sd_bus_new(&bus), 0);
    EXPECT_GE(sd_bus_set_fd(bus, sv[0], sv[0]), 0);
    EXPECT_GE(sd_bus_start(bus), 0);
  }
  ~PeerBus() {
    if (owned) sd_bus_close_unref(bus);
    if (peer >= 0) close(peer);
  }
  bool owned = true;  // false once a ReadOnlyBus adopted it
  std::size_t drain() {
    char buf[4096];
    std::size_t n = 0;
    ssize_t r = 0;
    while ((r = recv(peer, buf, sizeof buf, 0)) > 0) n += static_cast<std::size_t>(r);
    return n;
  }
};

TEST(ReadOnlyBus, AProgrammingCallIsRefusedAsAccessDeniedBeforeAnythingIsSent) {
  PeerBus p;
  ReadOnlyBus bus(p.bus);
  p.owned = false;
  bus.set_timeout_ms(100);
  (void)p.drain();  // the authentication greeting
  struct Call {
    const char* iface;
    const char* member;
  } calls[] = {{"org.thecal.Pump1", "LoadPrescription"}, {"org.thecal.Pump1", "Start"},
               {"org.thecal.Simulator1", "InjectFault"}, {"org.freedesktop.DBus.Properties", "Set"}};
  for (const auto& c : calls) {
    try {
      (void)bus.call(c.iface, c.member, "s", "x");
      ADD_FAILURE() << c.member << " was not refused";
    } catch (const BusError& e) {
      EXPECT_EQ(e.name(), "org.freedesktop.DBus.Error.AccessDenied") << c.member;
      EXPECT_NE(std::string(e.what()).find(c.member), std::string::npos) << e.what();
      EXPECT_FALSE(e.transport());
    }
    EXPECT_EQ(p.drain(), 0U) << c.member << ": nothing may reach the socket";
  }
  // A read member does go to the socket: with the other end closed it fails on the transport.
  close(p.peer);
  p.peer = -1;
  try {
    (void)bus.get_events(0, 10);
    ADD_FAILURE() << "no answer expected";
  } catch (const BusError& e) {
    EXPECT_NE(e.name(), "org.freedesktop.DBus.Error.AccessDenied");
    EXPECT_TRUE(e.transport()) << e.name() << ": " << e.what();
  }
}

sd_bus_message* sealed(PeerBus& p, const std::function<void(sd_bus_message*)>& fill) {
  sd_bus_message* m = nullptr;
  EXPECT_GE(sd_bus_message_new_method_call(p.bus, &m, "org.thecal.Pump1", "/org/thecal/Pump1", "org.thecal.Pump1", "X"), 0);
  fill(m);
  EXPECT_GE(sd_bus_message_seal(m, 1, 0), 0);
  EXPECT_GE(sd_bus_message_rewind(m, 1), 0);
  return m;
}

TEST(ReadJson, ArraysOfStructsDictsVariantsAndNaN) {
  PeerBus p;
  sd_bus_message* m = sealed(p, [](sd_bus_message* m) {
    EXPECT_GE(sd_bus_message_append(m, "a(sddd)", 2, "morphine", 10.0, 1.5, 3.0, "clonidine", 5.0, 0.75, 150.0), 0);
    EXPECT_GE(sd_bus_message_append(m, "a{sv}", 3, "State", "s", "infusing", "RefillAccuracyPercent", "d", NAN,
                                    "ActiveAlarms", "a(ssst)", 1, "occlusion", "high", "blocked", UINT64_C(1700000000000000)),
              0);
    EXPECT_GE(sd_bus_message_append(m, "btu", 1, UINT64_C(18446744073709551615), 7U), 0);
  });
  const auto drugs = read_json(m);
  ASSERT_EQ(drugs.size(), 2U);
  EXPECT_EQ(drugs[1][0], "clonidine");
  EXPECT_DOUBLE_EQ(drugs[1][2].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(drugs[1][3].get<double>(), 150.0);
  const auto props = read_json(m);
  EXPECT_EQ(props["State"], "infusing");
  EXPECT_TRUE(props["RefillAccuracyPercent"].is_null()) << "NaN (not measured) becomes null";
  EXPECT_EQ(props["ActiveAlarms"][0][1], "high");
  EXPECT_EQ(props["ActiveAlarms"][0][3].get<std::uint64_t>(), 1700000000000000ULL);
  EXPECT_EQ(read_json(m), true);
  EXPECT_EQ(read_json(m).get<std::uint64_t>(), 18446744073709551615ULL);
  EXPECT_EQ(read_json(m), 7);
  EXPECT_THROW((void)read_json(m), BusError) << "past the end";
  sd_bus_message_unref(m);
}

}  // namespace
}  // namespace thecal::dashboard
