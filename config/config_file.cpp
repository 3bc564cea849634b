#include "config/config_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "config/yaml_reader.hpp"

namespace thecal::config {
namespace {

std::string octal_mode(mode_t m) {
  std::array<char, 8> buf{};
  std::snprintf(buf.data(), buf.size(), "%04o", static_cast<unsigned>(m & 07777));
  return buf.data();
}

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Who may write a file or directory with this owner and mode, besides its owner and root.
std::optional<std::string> foreign_writer(const struct stat& st, bool directory) {
  const uid_t me = geteuid();
  if (st.st_uid != 0 && st.st_uid != me) {
    return "is owned by uid " + std::to_string(st.st_uid) + ", which is neither root nor this process's user (uid " +
           std::to_string(me) + ")";
  }
  const bool sticky = directory && (st.st_mode & S_ISVTX) != 0;
  if ((st.st_mode & S_IWOTH) != 0 && !sticky) {
    return "is writable by all users (mode " + octal_mode(st.st_mode) + ")";
  }
  if ((st.st_mode & S_IWGRP) != 0 && !sticky) {
    return "is writable by its group (mode " + octal_mode(st.st_mode) + ")";
  }
  return std::nullopt;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) (void)::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

FileText read_config_file(const std::string& path) {
  FileText out;
  auto refuse = [&](const std::string& message) {
    out.problems.push_back(Problem{path, 0, 0, "", message});
    return out;
  };

  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) return refuse(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return refuse(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return refuse("not a regular file");
  if (auto who = foreign_writer(st, false)) {
    return refuse("refused: the file " + *who + "; only its owner (root or the daemon's user) may write it");
  }
  const std::string dir = directory_of(path);
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0) return refuse("cannot stat its directory " + dir + ": " + std::strerror(errno));
  if (auto who = foreign_writer(dst, true)) {
    return refuse("refused: its directory " + dir + " " + *who + ", so someone else could replace the file");
  }
  if (static_cast<std::size_t>(st.st_size) > kMaxConfigBytes) {
    return refuse("too large: " + std::to_string(st.st_size) + " bytes (the limit is " +
                  std::to_string(kMaxConfigBytes) + ")");
  }

  std::string text;
  std::array<char, 8192> buf{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return refuse(std::string("cannot read: ") + std::strerror(errno));
    }
    if (n == 0) break;
    text.append(buf.data(), static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigBytes) return refuse("too large (the limit is " + std::to_string(kMaxConfigBytes) + " bytes)");
  }
  out.text = std::move(text);
  return out;
}

}  // namespace thecal::config
