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
//
// Each drug's own mass at the tip per minute (GetDrugDeliveryHistory, issue 16) goes to a
// companion file, `<path>-drugs`, the same way: one line per increase of a drug's minute,
// "D <minute us> <mcg> <drug name>*<CRC-32C>".  A file of its own, not a new line type in
// the first: the first keeps its format, so a thecald from before reads it whole (it would
// stop at the first line type it does not know), and a history file without the companion
// (written before this) loads as before.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "app/delivery_history.hpp"

namespace thecal::app {

class HistoryFile {
 public:
  explicit HistoryFile(std::string path) : path_(std::move(path)), drug_path_(path_ + "-drugs") {}
  HistoryFile(const HistoryFile&) = delete;
  HistoryFile& operator=(const HistoryFile&) = delete;
  ~HistoryFile();

  /// Loads the stored history into `h`, compacts the file, and from then on keeps what `h`
  /// is told (its on_minute / on_refill).  Error text (the history then lives in memory only).
  std::optional<std::string> attach(DeliveryHistory& h, std::int64_t now_wall_us);
  [[nodiscard]] std::size_t lines_read() const { return lines_; }
  [[nodiscard]] std::size_t drug_lines_read() const { return drug_lines_; }
  [[nodiscard]] const std::string& drug_path() const { return drug_path_; }

 private:
  std::optional<std::string> attach_drugs(DeliveryHistory& h, std::int64_t now_wall_us);
  void minute(std::int64_t minute_us, double mcg, double ul);
  void append(const std::string& text);

  std::string path_;
  std::string drug_path_;
  int fd_ = -1;
  int drug_fd_ = -1;
  std::size_t lines_ = 0;
  std::size_t drug_lines_ = 0;
};

}  // namespace thecal::app
