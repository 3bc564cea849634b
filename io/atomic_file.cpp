#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace thecal::io {

namespace {
std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

std::optional<std::string> write_temp(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return errno_text("cannot create", tmp);
  std::size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto e = errno_text("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto e = errno_text("cannot fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::close(fd) != 0) {
    auto e = errno_text("cannot close", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  return std::nullopt;
}

std::optional<std::string> commit_temp(const std::string& path) {
  const std::string tmp = path + ".tmp";
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_text("cannot rename " + tmp + " to", path);
  const std::string dir = dir_of(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno_text("cannot open directory", dir);
  const int r = ::fsync(dfd);
  const int saved = errno;
  ::close(dfd);
  if (r != 0) {
    errno = saved;
    return errno_text("cannot fsync directory", dir);
  }
  return std::nullopt;
}

void discard_temp(const std::string& path) { (void)::unlink((path + ".tmp").c_str()); }

std::optional<std::string> write_atomic(const std::string& path, std::string_view text) {
  if (auto e = write_temp(path, text)) return e;
  return commit_temp(path);
}

std::optional<std::string> read_file(const std::string& path, std::string* err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (err != nullptr) *err = errno_text("cannot open", path);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) {
    if (err != nullptr) *err = errno_text("cannot read", path);
    return std::nullopt;
  }
  return ss.str();
}

}  // namespace thecal::io
