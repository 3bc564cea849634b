// S10: a config file that someone other than its owner or root could write is refused.
// Real files in a temporary directory, real chmod/chown (the tests run as root or not).
#include "config/config_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "tests/config/test_util.hpp"

namespace thecal::config {
namespace {

namespace fs = std::filesystem;

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "thecal-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    path_ = dir_ + "/thecald.yaml";
    fs::copy_file(test::source_dir() + "/examples/thecald-sim.yaml", path_);
    ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir_;
  std::string path_;
};

TEST_F(ConfigFile, OwnerWritableFileLoads) {
  const LoadedDaemonConfig r = load_daemon_config(path_);
  EXPECT_TRUE(r.config.has_value()) << test::dump(r.problems);
  ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
  EXPECT_TRUE(load_daemon_config(path_).config.has_value());
  ASSERT_EQ(::chmod(path_.c_str(), 0400), 0);
  EXPECT_TRUE(load_daemon_config(path_).config.has_value());
}

TEST_F(ConfigFile, WorldWritableFileIsRefused) {
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  const LoadedDaemonConfig r = load_daemon_config(path_);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].format(),
            path_ + ": refused: the file is writable by all users (mode 0666); only its owner (root or the "
                    "daemon's user) may write it");
}

TEST_F(ConfigFile, GroupWritableFileIsRefused) {
  ASSERT_EQ(::chmod(path_.c_str(), 0664), 0);
  const FileText r = read_config_file(path_);
  EXPECT_FALSE(r.text.has_value());
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].message,
            "refused: the file is writable by its group (mode 0664); only its owner (root or the daemon's user) may "
            "write it");
  // The drug library goes through the same door.
  fs::copy_file(test::source_dir() + "/config/drugs.yaml", dir_ + "/drugs.yaml");
  ASSERT_EQ(::chmod((dir_ + "/drugs.yaml").c_str(), 0620), 0);
  EXPECT_FALSE(load_drug_library(dir_ + "/drugs.yaml").library.has_value());
  ASSERT_EQ(::chmod((dir_ + "/drugs.yaml").c_str(), 0644), 0);
  EXPECT_TRUE(load_drug_library(dir_ + "/drugs.yaml").library.has_value());
}

TEST_F(ConfigFile, WritableDirectoryIsRefused) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  LoadedDaemonConfig r = load_daemon_config(path_);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].message, "refused: its directory " + dir_ +
                                       " is writable by all users (mode 0777), so someone else could replace the file");
  // With the sticky bit (like /tmp) others cannot replace a file they do not own.
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  r = load_daemon_config(path_);
  EXPECT_TRUE(r.config.has_value()) << test::dump(r.problems);
}

TEST_F(ConfigFile, FileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file away (chown)";
  ASSERT_EQ(::chown(path_.c_str(), 4242, 4242), 0);
  const LoadedDaemonConfig r = load_daemon_config(path_);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].message,
            "refused: the file is owned by uid 4242, which is neither root nor this process's user (uid 0); only its "
            "owner (root or the daemon's user) may write it");
}

TEST_F(ConfigFile, MissingFileAndDirectory) {
  const FileText r = read_config_file(dir_ + "/nope.yaml");
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].format(), dir_ + "/nope.yaml: cannot open: No such file or directory");
  const FileText d = read_config_file(dir_);
  ASSERT_EQ(d.problems.size(), 1U);
  EXPECT_EQ(d.problems[0].message, "not a regular file");
}

TEST_F(ConfigFile, ProblemsNameTheFileAsGiven) {
  std::ofstream(path_, std::ios::trunc) << "backend: sim\nbogus: 1\n";
  const LoadedDaemonConfig r = load_daemon_config(path_);
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].file, path_);
}

}  // namespace
}  // namespace thecal::config
