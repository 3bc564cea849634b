// The D-Bus contract: what the running daemon serves matches the XML kept in the repo, and
// both match SPEC section 4 (the shared contract checker, run against the live bus).
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/integration/harness.hpp"

namespace thecal::test {
namespace {

TEST(Contract, ServedIntrospectionMatchesRepoXmlAndSpec) {
  TempDir dir;
  PrivateBus bus(dir.path());
  Daemon daemon(dir.path(), bus.address());
  const std::string xml = source_dir() + "/dbus/";
  const auto same = run({"/usr/bin/python3", source_dir() + "/tests/integration/compare_introspection.py", bus.address(),
                         xml + "org.thecal.Pump1.xml", xml + "org.thecal.Diagnostics1.xml", xml + "org.thecal.Simulator1.xml"});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  EXPECT_NE(same.out.find(" 0 differences"), std::string::npos) << same.out;

  ASSERT_TRUE(std::filesystem::exists(THECAL_CONTRACT_CHECKER))
      << "the shared contract checker is missing at " << THECAL_CONTRACT_CHECKER;
  const auto live = run({"/usr/bin/python3", THECAL_CONTRACT_CHECKER, "--bus", bus.address()});
  EXPECT_EQ(live.exit_code, 0) << live.out << live.err;
  const auto files = run({"/usr/bin/python3", THECAL_CONTRACT_CHECKER, xml + "org.thecal.Pump1.xml",
                          xml + "org.thecal.Diagnostics1.xml", xml + "org.thecal.Simulator1.xml"});
  EXPECT_EQ(files.exit_code, 0) << files.out << files.err;
}

}  // namespace
}  // namespace thecal::test
