#include "app/prescription_store.hpp"

#include "io/atomic_file.hpp"

namespace thecal::app {

config::LoadedPrescription PrescriptionStore::parse(std::string_view text, WallTime now, const std::string& file) const {
  const config::PrescriptionContext pc{&drugs_, board_, now};
  return config::parse_prescription(text, file, pc);
}

std::unique_ptr<TherapyPlan> PrescriptionStore::compile(std::string_view text, WallTime now, std::string* problems) const {
  if (text.size() > kMaxBytes) {
    *problems = "prescription larger than " + std::to_string(kMaxBytes) + " bytes";
    return nullptr;
  }
  auto loaded = parse(text, now);
  if (!loaded.plan || !loaded.problems.empty()) {
    *problems = config::format_all(loaded.problems);
    if (problems->empty()) *problems = "invalid prescription";
    return nullptr;
  }
  return std::make_unique<TherapyPlan>(*loaded.plan);
}

std::string PrescriptionStore::summarize(const TherapyPlan& plan) const { return config::summarize(plan, board_); }

std::optional<std::string> PrescriptionStore::stage(std::string_view text) const { return io::write_temp(path_, text); }

std::optional<std::string> PrescriptionStore::commit() const { return io::commit_temp(path_); }

void PrescriptionStore::discard() const { io::discard_temp(path_); }

std::optional<std::string> PrescriptionStore::read(std::string* err) const { return io::read_file(path_, err); }

}  // namespace thecal::app
