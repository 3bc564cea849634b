// libFuzzer target over the three config parsers (prescription, drug library, thecald.yaml).
// Every input goes through all three; inputs over 64 KiB are rejected (as systemd's fuzzers
// do).  Besides the sanitizers, it checks the parsers' contract: a result or problems, never
// both, never neither, and every problem located and named.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"

namespace {

thecal::config::DrugLibrary* g_library = nullptr;

void check(const thecal::config::Problems& problems, bool has_result) {
  if (has_result == !problems.empty()) __builtin_trap();
  for (const auto& p : problems) {
    if (p.message.empty() || p.line < 0 || p.column < 0) __builtin_trap();
    if (p.format().empty()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  auto loaded = thecal::config::load_drug_library(THECAL_SOURCE_DIR "/config/drugs.yaml");
  if (!loaded.library) std::abort();
  g_library = new thecal::config::DrugLibrary(std::move(*loaded.library));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return -1;  // not added to the corpus
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  thecal::config::PrescriptionContext ctx;
  ctx.drugs = g_library;
  ctx.now = thecal::wall_us(1'795'608'000'000'000LL);  // 2026-11-25T12:00:00Z: deterministic
  const auto p = thecal::config::parse_prescription(text, "fuzz.yaml", ctx);
  check(p.problems, p.plan.has_value());
  if (p.plan) {
    if (p.plan->id.view().size() != 64) __builtin_trap();
    if (thecal::config::summarize(*p.plan, ctx.board).empty()) __builtin_trap();
  }

  const auto d = thecal::config::parse_drug_library(text, "fuzz.yaml");
  check(d.problems, d.library.has_value());

  const auto c = thecal::config::parse_daemon_config(text, "fuzz.yaml");
  check(c.problems, c.config.has_value());
  return 0;
}
