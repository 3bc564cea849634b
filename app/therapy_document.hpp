// The therapy export document (pump replacement, SPEC 2 and 4: ExportTherapy/ImportTherapy).
//
// A text document a clinician can carry from the old unit to the new one (`thecalctl export
// FILE`, `thecalctl import FILE`):
//
//   THECAL THERAPY EXPORT                 magic
//   format: 1                             kTherapyDocumentFormat; a newer one is refused
//   exported-wall-usec: ...               ... informative lines a person can read
//   payload-bytes: N
//   payload-sha256: HEX                   of the decoded payload
//   payload:
//   BASE64 lines (64 columns)             the payload, see below (app/base64.hpp, RFC 4648;
//                                         a reader takes any line width)
//   end
//   document-sha256: HEX                  of every byte before this line
//
// Payload (little-endian): "THTX", u32 format, then u32-length-prefixed sections:
//   the CoreState in its journal binary form (control/core_state.hpp), the prescription
//   text (its SHA-256 must be the plan's id), and the event log (u32 count, each event in
//   the journal's event record form).
// Everything is checked before anything is used: magic, format, both checksums, every
// length, the state's own decoder, the prescription id.  Any failure refuses the whole
// document with a message saying what was wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/core_state.hpp"
#include "app/event_log.hpp"

namespace thecal::app {

inline constexpr std::uint32_t kTherapyDocumentFormat = 1;
inline constexpr std::size_t kMaxTherapyDocumentBytes = 64u << 20;

struct TherapyDocument {
  CoreState state;
  std::string prescription;         // the prescription text (its SHA-256 is state.plan->id)
  std::vector<LoggedEvent> events;  // the old unit's event log, oldest first
};

/// The document for `state` (captured with a plan), its prescription text and event log.
std::string encode_therapy_document(const CoreState& state, std::string_view prescription,
                                    const std::vector<LoggedEvent>& events);

/// The document's contents, or nullptr with `err` saying why it is refused (truncated,
/// corrupt, a future format, or contents that do not agree with each other).
std::unique_ptr<TherapyDocument> decode_therapy_document(std::string_view text, std::string* err);

}  // namespace thecal::app
