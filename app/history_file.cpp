#include "app/history_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <vector>

#include "io/atomic_file.hpp"
#include "io/journal.hpp"

namespace thecal::app {

namespace {

std::string line(const std::string& text) {
  char crc[16];
  (void)std::snprintf(crc, sizeof crc, "*%08x\n", io::crc32c(text));
  return text + crc;
}

std::string minute_text(std::int64_t m, double mcg, double ul) {
  char buf[128];
  (void)std::snprintf(buf, sizeof buf, "M %lld %.17g %.17g", static_cast<long long>(m), mcg, ul);
  return buf;
}

std::string refill_text(const DeliveryHistory::Refill& r) {
  char buf[256];
  (void)std::snprintf(buf, sizeof buf, "R %lld %.17g %.17g %.17g %.17g %.17g %d", static_cast<long long>(r.wall_us),
                      r.filled_ul, r.withdrawn_ul, r.estimate_ul, r.pumped_ul, r.accuracy_percent, r.discrepancy ? 1 : 0);
  return buf;
}

std::string drug_minute_text(std::int64_t m, const std::string& drug, double mcg) {
  char buf[96];
  (void)std::snprintf(buf, sizeof buf, "D %lld %.17g ", static_cast<long long>(m), mcg);
  return buf + drug;
}

/// Each whole line of `path` whose checksum holds, in order, to `take` (its text before the
/// '*'), until a torn or corrupt line or one `take` refuses; the number taken.
template <class Take>
std::size_t read_lines(const std::string& path, Take take) {
  std::size_t n = 0;
  std::string err;
  const auto text = io::read_file(path, &err);
  if (!text) return 0;  // none yet
  std::istringstream in(*text);
  std::string l;
  while (std::getline(in, l)) {
    const auto star = l.rfind('*');
    if (star == std::string::npos || in.eof()) break;  // torn: no checksum or no newline
    unsigned crc = 0;
    if (std::sscanf(l.c_str() + star + 1, "%x", &crc) != 1 || crc != io::crc32c(l.substr(0, star))) break;
    if (star == 0 || !take(l.substr(0, star))) break;
    ++n;
  }
  return n;
}

int open_append(const std::string& path) { return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC); }

void append_to(int fd, const std::string& text) {
  if (fd < 0) return;
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the in-memory history goes on; the next start reads what is whole
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

HistoryFile::~HistoryFile() {
  if (fd_ >= 0) ::close(fd_);
  if (drug_fd_ >= 0) ::close(drug_fd_);
}

std::optional<std::string> HistoryFile::attach_drugs(DeliveryHistory& h, std::int64_t now_wall_us) {
  // drug -> minute -> mcg; a drug name is the rest of the line (the library's names).
  std::map<std::string, std::map<std::int64_t, double>> drugs;
  drug_lines_ = read_lines(drug_path_, [&](const std::string& body) {
    long long t = 0;
    double m = 0;
    int used = 0;
    if (body[0] != 'D' || std::sscanf(body.c_str(), "D %lld %lf %n", &t, &m, &used) != 2 || used <= 0) return false;
    const std::string name = body.substr(static_cast<std::size_t>(used));
    if (name.empty() || !(m >= 0)) return false;
    drugs[name][t] += m;
    return true;
  });
  std::string compact;
  for (const auto& [name, minutes] : drugs) {
    for (const auto& [t, m] : minutes) {
      if (t < now_wall_us - DeliveryHistory::kRetentionUs || !(m > 0)) continue;
      h.restore_drug_minute(t, name, m);
      compact += line(drug_minute_text(t, name, m));
    }
  }
  if (auto e = io::write_atomic(drug_path_, compact)) return e;
  drug_fd_ = open_append(drug_path_);
  if (drug_fd_ < 0) return "cannot open " + drug_path_ + ": " + strerrordesc_np(errno);
  h.on_drug_minute = [this](std::int64_t m, const std::string& drug, double mcg) {
    append_to(drug_fd_, line(drug_minute_text(m, drug, mcg)));
  };
  return std::nullopt;
}

std::optional<std::string> HistoryFile::attach(DeliveryHistory& h, std::int64_t now_wall_us) {
  std::map<std::int64_t, std::pair<double, double>> minutes;
  std::vector<DeliveryHistory::Refill> refills;
  lines_ = read_lines(path_, [&](const std::string& body) {
    long long t = 0;
    if (body[0] == 'M') {
      double m = 0, v = 0;
      if (std::sscanf(body.c_str(), "M %lld %lf %lf", &t, &m, &v) != 3) return false;
      minutes[t].first += m;
      minutes[t].second += v;
      return true;
    }
    if (body[0] == 'R') {
      DeliveryHistory::Refill r;
      int disc = 0;
      if (std::sscanf(body.c_str(), "R %lld %lf %lf %lf %lf %lf %d", &t, &r.filled_ul, &r.withdrawn_ul, &r.estimate_ul,
                      &r.pumped_ul, &r.accuracy_percent, &disc) != 7) {
        return false;
      }
      r.wall_us = t;
      r.discrepancy = disc != 0;
      refills.push_back(r);
      return true;
    }
    return false;
  });
  std::string compact;
  for (const auto& r : refills) {
    h.restore_refill(r);
    compact += line(refill_text(r));
  }
  for (const auto& [t, mv] : minutes) {
    if (t < now_wall_us - DeliveryHistory::kRetentionUs) continue;
    h.restore_minute(t, mv.first, mv.second);
    compact += line(minute_text(t, mv.first, mv.second));
  }
  if (auto e = io::write_atomic(path_, compact)) return e;
  fd_ = open_append(path_);
  if (fd_ < 0) return "cannot open " + path_ + ": " + strerrordesc_np(errno);
  h.on_minute = [this](std::int64_t m, double mcg, double ul) { minute(m, mcg, ul); };
  h.on_refill = [this](const DeliveryHistory::Refill& r) { append(line(refill_text(r))); };
  return attach_drugs(h, now_wall_us);
}

void HistoryFile::minute(std::int64_t minute_us, double mcg, double ul) {
  // Each increase at once (a crash loses none); the start sums them per minute.
  append(line(minute_text(minute_us, mcg, ul)));
}

void HistoryFile::append(const std::string& text) { append_to(fd_, text); }

}  // namespace thecal::app
