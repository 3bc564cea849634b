// The delivery history on disk (issue 15 item 5): GetDeliveryHistory and the refill checks
// survive a restart, a crash and a power loss (up to the minute in progress).
//
// One line per increase of a minute's delivery ("M <minute us> <mcg> <uL>", a few hundred a
// day at steady basal) and per refill check
// ("R <wall us> <filled> <withdrawn> <estimate> <pumped> <accuracy %> <0|1>"), each ending in
// "*<CRC-32C of the text before it, hex>".  Appended without fsync (it rides on the
// journal's: the page cache reaches the disk with the next fsync of the file system's
// journal, and what a power loss takes is at most the last minutes of a history the ledger
// does not depend on); a crash of the process loses nothing written.  At start the file is read (a torn or corrupt line and what
// follows is ignored), older than DeliveryHistory::kRetentionUs dropped, and rewritten
// compacted by atomic replacement.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "app/delivery_history.hpp"

namespace thecal::app {

class HistoryFile {
 public:
  explicit HistoryFile(std::string path) : path_(std::move(path)) {}
  HistoryFile(const HistoryFile&) = delete;
  HistoryFile& operator=(const HistoryFile&) = delete;
  ~HistoryFile();

  /// Loads the stored history into `h`, compacts the file, and from then on keeps what `h`
  /// is told (its on_minute / on_refill).  Error text (the history then lives in memory only).
  std::optional<std::string> attach(DeliveryHistory& h, std::int64_t now_wall_us);
  [[nodiscard]] std::size_t lines_read() const { return lines_; }

 private:
  void minute(std::int64_t minute_us, double mcg, double ul);
  void append(const std::string& text);

  std::string path_;
  int fd_ = -1;
  std::size_t lines_ = 0;
};

}  // namespace thecal::app
