// The prescription as text and as a compiled plan: parsing against this unit's drug library
// and board, and the stored file (SPEC 3.3 paths.prescription) written transactionally: a
// new text is staged beside the file (written and fsynced) before its command goes to the
// dosing thread, committed (renamed over the file) only once the core took it, discarded
// if the core refused it.  At start and on SIGHUP the stored file is read again.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/drug_library.hpp"
#include "config/prescription.hpp"
#include "control/board_params.hpp"
#include "control/therapy_plan.hpp"
#include "control/time.hpp"

namespace thecal::app {

class PrescriptionStore {
 public:
  static constexpr std::size_t kMaxBytes = 64 * 1024;

  PrescriptionStore(config::DrugLibrary drugs, const BoardParams& board, std::string path)
      : drugs_(std::move(drugs)), board_(board), path_(std::move(path)) {}

  /// Every problem of `text` as a prescription loaded at wall time `now`.
  [[nodiscard]] config::LoadedPrescription parse(std::string_view text, WallTime now,
                                                 const std::string& file = "prescription.yaml") const;
  /// The compiled plan, or the text of every problem (empty text: "invalid prescription").
  [[nodiscard]] std::unique_ptr<TherapyPlan> compile(std::string_view text, WallTime now, std::string* problems) const;
  /// A plain-words summary of a valid plan (DescribePrescription).
  [[nodiscard]] std::string summarize(const TherapyPlan& plan) const;

  /// Stages `text` to replace the stored file; error text on failure.
  [[nodiscard]] std::optional<std::string> stage(std::string_view text) const;
  /// Renames the staged text over the stored file (and fsyncs the directory).
  [[nodiscard]] std::optional<std::string> commit() const;
  /// Removes the staged text.
  void discard() const;
  /// The stored text; nullopt (with `err`) if there is none or it cannot be read.
  [[nodiscard]] std::optional<std::string> read(std::string* err) const;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const BoardParams& board() const { return board_; }

 private:
  config::DrugLibrary drugs_;
  BoardParams board_;
  std::string path_;
};

}  // namespace thecal::app
