// libFuzzer target over the therapy export document (ImportTherapy, SPEC 4): the whole
// decoder behind the one D-Bus method that takes a binary structure from outside.
//
// The document is self-checking (two SHA-256 sums), so mutated documents almost never get
// past the checksums.  The first input byte therefore picks what is fuzzed:
//   even  the input is the document text as a client would send it (header, base64, sums);
//   odd   the input is the payload (core state, prescription, event log): the fuzzer wraps
//         it in a correct envelope, so the payload's own decoders (decode_core_state, the
//         event records, the cross-checks) see every mutation.
// Seeds: tests/fuzz/therapy_document_seed writes a real export in each mode.  Besides the
// sanitizers, it checks the decoder's contract: a document or a reason, never both, never
// neither; a decoded document's prescription has the SHA-256 that is its id; what decodes
// encodes again to a document that decodes to the same state.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "app/therapy_document.hpp"
#include "config/sha256.hpp"
#include "tests/support/therapy_envelope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 256 * 1024) return -1;  // not added to the corpus
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string text = (data[0] & 1) != 0 ? thecal::fuzz::wrap_payload(rest) : std::string(rest);
  std::string err;
  const auto doc = thecal::app::decode_therapy_document(text, &err);
  if ((doc == nullptr) == err.empty()) __builtin_trap();
  if (doc) {
    if (!doc->state.plan) __builtin_trap();
    if (thecal::config::sha256_hex(doc->prescription) != doc->state.plan->id.view()) __builtin_trap();
    const std::string again = thecal::app::encode_therapy_document(doc->state, doc->prescription, doc->events);
    std::string err2;
    const auto doc2 = thecal::app::decode_therapy_document(again, &err2);
    if (!doc2 || doc2->events.size() != doc->events.size()) __builtin_trap();
    if (thecal::encode_core_state(doc2->state) != thecal::encode_core_state(doc->state)) __builtin_trap();
  }
  return 0;
}
