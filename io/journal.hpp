// The crash-safe journal (SPEC S7, docs/journal.md): one append-only file of checksummed,
// sequence-numbered records after a versioned header.
//
//   header   8  magic "THECALJ\n"
//            4  format version (little-endian)
//            4  CRC-32C of the 12 bytes above
//   record   4  payload length n (1 .. kMaxPayload)
//            4  CRC-32C of the next 9 + n bytes
//            1  type (RecordType)
//            8  sequence number: the previous record's + 1
//            n  payload
//
// The file is only ever appended to, or replaced whole (compaction, and every start) by
// write-temp, fsync, rename, fsync-directory.  scan_journal() reads the longest valid
// prefix and names the first problem after it; it never trusts anything past a problem.
//
// I/O goes through FileOps so that tests can inject ENOSPC and EIO on write and fsync.
// After a failed fsync the writer is poisoned (the kernel may have dropped the dirty pages
// and cleared the error: nothing written since can be called durable); only a complete
// rewrite into a new file clears it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace thecal::io {

/// CRC-32C (Castagnoli), as in iSCSI and ext4: crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::string_view data);

/// The system calls the journal makes.  Each returns >= 0 on success, -errno on failure.
class FileOps {
 public:
  FileOps() = default;
  FileOps(const FileOps&) = delete;
  FileOps& operator=(const FileOps&) = delete;
  virtual ~FileOps() = default;
  virtual int open(const std::string& path, int flags, mode_t mode);
  virtual ssize_t write(int fd, const void* buf, std::size_t n);
  virtual int fsync(int fd);
  virtual int ftruncate(int fd, off_t length);
  virtual int close(int fd);
  virtual int rename(const std::string& from, const std::string& to);
  virtual int fsync_dir(const std::string& dir);
};

/// The real system calls.
FileOps& real_file_ops();

inline constexpr std::uint32_t kJournalFormat = 1;
inline constexpr std::size_t kJournalHeaderSize = 16;
inline constexpr std::size_t kRecordHeaderSize = 17;
inline constexpr std::uint32_t kMaxPayload = 16u << 20;

enum class RecordType : std::uint8_t {
  state = 1,    // the dosing core's whole state (+ clock reference), see JournalKeeper
  reserve = 2,  // a reservation: cumulative step budget the loop may issue
  event = 3,    // one event-log entry
};

struct Record {
  RecordType type = RecordType::state;
  std::uint64_t seq = 0;
  std::string payload;
};

/// What can be wrong with a journal file.  Every kind has a name (to_string) that the
/// daemon logs and puts in the state_lost explanation.
enum class JournalProblem : std::uint8_t {
  none,
  missing,          // no journal file
  bad_header,       // header magic or checksum wrong (or shorter than a header)
  newer_version,    // written by a newer thecald: refused whole
  torn_tail,        // the last record stops before its length says (crash mid-append)
  zero_tail,        // zero bytes where a record should start (lost or preallocated blocks)
  bad_checksum,     // a record's CRC does not match (bit flip, torn sector)
  bad_length,       // a record length of zero or beyond kMaxPayload
  duplicate_record, // a record's sequence number repeats an earlier one
  sequence_gap,     // a record's sequence number skips ahead
  unknown_type,     // a record type this version does not know
  bad_record,       // a record passed its checksum but its contents do not decode
};

std::string_view to_string(JournalProblem p);

struct JournalScan {
  std::uint32_t version = 0;
  std::vector<Record> records;  // the valid prefix, in order
  std::uint64_t valid_bytes = 0;
  JournalProblem problem = JournalProblem::none;
  std::uint64_t problem_offset = 0;
  std::string message;  // human explanation of `problem`
  /// Past a problem inside the records (not a bad header or a newer format): the intact
  /// records found by resynchronising on every later byte offset (length, checksum, type and
  /// a sequence number after the prefix's all hold).  Never trusted as state: they only tell
  /// how far the pump may have gone (the highest reservation), so that a damaged record in
  /// the middle of the file cannot make recovery under-count (S7).
  std::vector<Record> salvaged;
};

/// Parses a whole journal file's bytes.
JournalScan scan_journal(std::string_view bytes);

/// The bytes of a header, and of one framed record (for writers and tests).
std::string journal_header(std::uint32_t version = kJournalFormat);
std::string frame_record(RecordType type, std::uint64_t seq, std::string_view payload);

class JournalWriter {
 public:
  JournalWriter(FileOps& ops, std::string path) : ops_(ops), path_(std::move(path)) {}
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;
  ~JournalWriter();

  struct Item {
    RecordType type;
    std::string payload;
  };

  /// Replaces the journal with a new file holding `items` (sequence numbers from 1):
  /// path.tmp written, fsynced, renamed over path, directory fsynced; then kept open
  /// for append.  Clears a poisoned writer.  Error text on failure (the old file stays).
  std::optional<std::string> rewrite(const std::vector<Item>& items);
  /// Appends `items` with one write; fsyncs if `sync`.  On a failed write the file is cut
  /// back to where it was; on a failed fsync the writer is poisoned.
  std::optional<std::string> append(const std::vector<Item>& items, bool sync);

  [[nodiscard]] bool is_open() const { return fd_ >= 0; }
  [[nodiscard]] bool poisoned() const { return poisoned_; }
  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] std::uint64_t fsyncs() const { return fsyncs_; }
  [[nodiscard]] std::uint64_t writes() const { return writes_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  FileOps& ops_;
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t next_seq_ = 1;
  bool poisoned_ = false;
  std::uint64_t fsyncs_ = 0;
  std::uint64_t writes_ = 0;
};

}  // namespace thecal::io
