#include "io/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/crc.hpp>

namespace thecal::io {

namespace {

constexpr char kMagic[8] = {'T', 'H', 'E', 'C', 'A', 'L', 'J', '\n'};

void put_u32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
std::uint32_t get_u32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(s[at + i])) << (8 * i);
  return v;
}
std::uint64_t get_u64(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(s[at + i])) << (8 * i);
  return v;
}
bool all_zero(std::string_view s) {
  for (char c : s) {
    if (c != '\0') return false;
  }
  return true;
}
std::string err_text(const char* what, const std::string& path, int neg_errno) {
  return std::string(what) + " " + path + ": " + std::strerror(-neg_errno);
}
std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// Writes all of `data` at the current offset; -errno on the first failure.
int write_all(FileOps& ops, int fd, std::string_view data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ops.write(fd, data.data() + off, data.size() - off);
    if (n == -EINTR) continue;
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return -EIO;
    off += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

std::uint32_t crc32c(std::string_view data) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

int FileOps::open(const std::string& path, int flags, mode_t mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  return fd < 0 ? -errno : fd;
}
ssize_t FileOps::write(int fd, const void* buf, std::size_t n) {
  const ssize_t r = ::write(fd, buf, n);
  return r < 0 ? -errno : r;
}
int FileOps::fsync(int fd) { return ::fsync(fd) != 0 ? -errno : 0; }
int FileOps::ftruncate(int fd, off_t length) { return ::ftruncate(fd, length) != 0 ? -errno : 0; }
int FileOps::close(int fd) { return ::close(fd) != 0 ? -errno : 0; }
int FileOps::rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) != 0 ? -errno : 0;
}
int FileOps::fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const int r = ::fsync(fd) != 0 ? -errno : 0;
  ::close(fd);
  return r;
}

FileOps& real_file_ops() {
  static FileOps ops;
  return ops;
}

std::string_view to_string(JournalProblem p) {
  switch (p) {
    case JournalProblem::none: return "none";
    case JournalProblem::missing: return "missing";
    case JournalProblem::bad_header: return "bad_header";
    case JournalProblem::newer_version: return "newer_version";
    case JournalProblem::torn_tail: return "torn_tail";
    case JournalProblem::zero_tail: return "zero_tail";
    case JournalProblem::bad_checksum: return "bad_checksum";
    case JournalProblem::bad_length: return "bad_length";
    case JournalProblem::duplicate_record: return "duplicate_record";
    case JournalProblem::sequence_gap: return "sequence_gap";
    case JournalProblem::unknown_type: return "unknown_type";
    case JournalProblem::bad_record: return "bad_record";
  }
  return "unknown";
}

std::string journal_header(std::uint32_t version) {
  std::string h(kMagic, sizeof kMagic);
  put_u32(h, version);
  put_u32(h, crc32c(h));
  return h;
}

std::string frame_record(RecordType type, std::uint64_t seq, std::string_view payload) {
  std::string body;
  body.reserve(9 + payload.size());
  body.push_back(static_cast<char>(type));
  put_u64(body, seq);
  body.append(payload);
  std::string out;
  out.reserve(8 + body.size());
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  put_u32(out, crc32c(body));
  out.append(body);
  return out;
}

namespace {

JournalScan scan_prefix(std::string_view bytes) {
  JournalScan s;
  auto problem = [&](JournalProblem p, std::uint64_t at, const std::string& msg) {
    s.problem = p;
    s.problem_offset = at;
    s.message = std::string(to_string(p)) + " at byte " + std::to_string(at) + ": " + msg;
    return s;
  };
  if (bytes.size() < kJournalHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0 ||
      crc32c(bytes.substr(0, 12)) != get_u32(bytes, 12)) {
    return problem(JournalProblem::bad_header, 0, "not a thecal journal header (magic, length or checksum)");
  }
  s.version = get_u32(bytes, 8);
  if (s.version > kJournalFormat) {
    return problem(JournalProblem::newer_version, 8,
                   "journal format " + std::to_string(s.version) + " is newer than this thecald's " +
                       std::to_string(kJournalFormat) + "; refused whole");
  }
  if (s.version == 0) return problem(JournalProblem::bad_header, 8, "journal format 0");
  std::size_t pos = kJournalHeaderSize;
  s.valid_bytes = pos;
  std::uint64_t prev_seq = 0;
  while (pos < bytes.size()) {
    const std::string_view rest = bytes.substr(pos);
    if (rest.size() < kRecordHeaderSize) {
      if (all_zero(rest)) return problem(JournalProblem::zero_tail, pos, std::to_string(rest.size()) + " zero bytes at the end");
      return problem(JournalProblem::torn_tail, pos, "a record header cut short (" + std::to_string(rest.size()) + " bytes)");
    }
    const std::uint32_t len = get_u32(rest, 0);
    const std::uint32_t crc = get_u32(rest, 4);
    if (len == 0 && crc == 0 && all_zero(rest)) {
      return problem(JournalProblem::zero_tail, pos, std::to_string(rest.size()) + " zero bytes at the end");
    }
    if (len == 0 || len > kMaxPayload) {
      return problem(JournalProblem::bad_length, pos, "record length " + std::to_string(len));
    }
    if (rest.size() < kRecordHeaderSize + len) {
      return problem(JournalProblem::torn_tail, pos,
                     "the last record needs " + std::to_string(kRecordHeaderSize + len) + " bytes, " +
                         std::to_string(rest.size()) + " are there");
    }
    if (crc32c(rest.substr(8, 9 + len)) != crc) {
      return problem(JournalProblem::bad_checksum, pos, "record checksum mismatch");
    }
    const auto type = static_cast<std::uint8_t>(rest[8]);
    const std::uint64_t seq = get_u64(rest, 9);
    if (prev_seq != 0 && seq <= prev_seq) {
      return problem(JournalProblem::duplicate_record, pos,
                     "sequence " + std::to_string(seq) + " after " + std::to_string(prev_seq));
    }
    if (prev_seq != 0 && seq != prev_seq + 1) {
      return problem(JournalProblem::sequence_gap, pos,
                     "sequence " + std::to_string(seq) + " after " + std::to_string(prev_seq));
    }
    if (type < 1 || type > 3) return problem(JournalProblem::unknown_type, pos, "record type " + std::to_string(type));
    s.records.push_back(Record{static_cast<RecordType>(type), seq, std::string(rest.substr(kRecordHeaderSize, len))});
    prev_seq = seq;
    pos += kRecordHeaderSize + len;
    s.valid_bytes = pos;
  }
  return s;
}

/// Intact records after `from` (see JournalScan::salvaged), found by trying every offset.
std::vector<Record> salvage(std::string_view bytes, std::size_t from, std::uint64_t after_seq) {
  std::vector<Record> found;
  std::uint64_t last = after_seq;
  std::size_t pos = from;
  while (pos + kRecordHeaderSize <= bytes.size()) {
    const std::string_view rest = bytes.substr(pos);
    const std::uint32_t len = get_u32(rest, 0);
    const auto type = static_cast<std::uint8_t>(rest[8]);
    const std::uint64_t seq = get_u64(rest, 9);
    const bool plausible = len >= 1 && len <= kMaxPayload && kRecordHeaderSize + len <= rest.size() && type >= 1 &&
                           type <= 3 && seq > last && seq - last < (1ULL << 32);
    if (plausible && crc32c(rest.substr(8, 9 + len)) == get_u32(rest, 4)) {
      found.push_back(Record{static_cast<RecordType>(type), seq, std::string(rest.substr(kRecordHeaderSize, len))});
      last = seq;
      pos += kRecordHeaderSize + len;
    } else {
      ++pos;
    }
  }
  return found;
}

}  // namespace

JournalScan scan_journal(std::string_view bytes) {
  JournalScan s = scan_prefix(bytes);
  if (s.problem == JournalProblem::none || s.problem == JournalProblem::bad_header ||
      s.problem == JournalProblem::newer_version) {
    return s;
  }
  s.salvaged = salvage(bytes, s.problem_offset + 1, s.records.empty() ? 0 : s.records.back().seq);
  return s;
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) (void)ops_.close(fd_);
}

std::optional<std::string> JournalWriter::rewrite(const std::vector<Item>& items) {
  const std::string tmp = path_ + ".tmp";
  std::string data = journal_header();
  std::uint64_t seq = 1;
  for (const auto& it : items) data += frame_record(it.type, seq++, it.payload);
  const int fd = ops_.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
  if (fd < 0) return err_text("cannot create", tmp, fd);
  int r = write_all(ops_, fd, data);
  if (r < 0) {
    (void)ops_.close(fd);
    return err_text("cannot write", tmp, r);
  }
  r = ops_.fsync(fd);
  ++fsyncs_;
  if (r < 0) {
    (void)ops_.close(fd);
    return err_text("cannot fsync", tmp, r);
  }
  r = ops_.rename(tmp, path_);
  if (r < 0) {
    (void)ops_.close(fd);
    return err_text("cannot rename over", path_, r);
  }
  r = ops_.fsync_dir(dir_of(path_));
  ++fsyncs_;
  if (r < 0) {
    // The rename may not be durable: keep the old descriptor closed and stay poisoned.
    (void)ops_.close(fd);
    if (fd_ >= 0) (void)ops_.close(fd_);
    fd_ = -1;
    poisoned_ = true;
    return err_text("cannot fsync the directory of", path_, r);
  }
  if (fd_ >= 0) (void)ops_.close(fd_);
  fd_ = fd;
  size_ = data.size();
  next_seq_ = seq;
  poisoned_ = false;
  ++writes_;
  return std::nullopt;
}

std::optional<std::string> JournalWriter::append(const std::vector<Item>& items, bool sync) {
  if (fd_ < 0) return "the journal " + path_ + " is not open";
  if (poisoned_) return "the journal " + path_ + " had a failed fsync: nothing more is appended until it is rewritten";
  std::string data;
  std::uint64_t seq = next_seq_;
  for (const auto& it : items) data += frame_record(it.type, seq++, it.payload);
  if (!data.empty()) {
    const int r = write_all(ops_, fd_, data);
    if (r < 0) {
      // Cut back what part of it reached the file, so that the file ends on a record.
      if (ops_.ftruncate(fd_, static_cast<off_t>(size_)) < 0) poisoned_ = true;
      (void)::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
      return err_text("cannot append to", path_, r);
    }
    size_ += data.size();
    next_seq_ = seq;
    ++writes_;
  }
  if (sync) {
    const int r = ops_.fsync(fd_);
    ++fsyncs_;
    if (r < 0) {
      poisoned_ = true;
      return err_text("cannot fsync", path_, r);
    }
  }
  return std::nullopt;
}

}  // namespace thecal::io
