// libFuzzer targets over the three config loaders (prescription, drug library, thecald.yaml).
// Built once per loader (THECAL_FUZZ_LOADER: 1 prescription, 2 drug library, 3 thecald.yaml)
// so each gets its own corpus and coverage record, and once with every loader (0: all three,
// the ctest smoke run).  Inputs over 64 KiB are rejected (as systemd's fuzzers do).  Besides the sanitizers, it checks the parsers' contract: a result or problems, never
// both, never neither, and every problem located and named.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/daemon_config.hpp"
#include "config/drug_library.hpp"
#include "config/prescription.hpp"

#ifndef THECAL_FUZZ_LOADER
#define THECAL_FUZZ_LOADER 0
#endif

namespace {

constexpr int kLoader = THECAL_FUZZ_LOADER;

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

  if (kLoader == 0 || kLoader == 1) {
    thecal::config::PrescriptionContext ctx;
    ctx.drugs = g_library;
    ctx.now = thecal::wall_us(1'795'608'000'000'000LL);  // 2026-11-25T12:00:00Z: deterministic
    const auto p = thecal::config::parse_prescription(text, "fuzz.yaml", ctx);
    check(p.problems, p.plan.has_value());
    if (p.plan) {
      if (p.plan->id.view().size() != 64) __builtin_trap();
      if (thecal::config::summarize(*p.plan, ctx.board).empty()) __builtin_trap();
    }
  }
  if (kLoader == 0 || kLoader == 2) {
    const auto d = thecal::config::parse_drug_library(text, "fuzz.yaml");
    check(d.problems, d.library.has_value());
  }
  if (kLoader == 0 || kLoader == 3) {
    const auto c = thecal::config::parse_daemon_config(text, "fuzz.yaml");
    check(c.problems, c.config.has_value());
  }
  return 0;
}
