// The therapy document's envelope around a given payload, written here independently of
// app/therapy_document.cpp (from its documented format), for the fuzzer and the codec tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/sha256.hpp"

namespace thecal::fuzz {

inline std::string base64_lines(std::string_view in) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t col = 0;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<std::uint8_t>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(in[i + 1])) << 8;
    if (i + 2 < in.size()) v |= static_cast<std::uint8_t>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kB64[v & 63] : '=';
    if ((col += 4) == 76) {
      out += '\n';
      col = 0;
    }
  }
  if (col != 0) out += '\n';
  return out;
}

/// The payload bytes of a document: the base64 between "payload:" and "end", line breaks
/// skipped (no validation: for tests and seeds only).
inline std::string payload_of(std::string_view doc) {
  static constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto a = doc.find("\npayload:\n");
  const auto b = doc.rfind("\nend\n");
  if (a == std::string_view::npos || b == std::string_view::npos || b < a) return {};
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : doc.substr(a + 10, b - (a + 10))) {
    const auto v = kB64.find(c);
    if (v == std::string_view::npos) continue;  // line breaks, padding
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    if ((bits += 6) >= 8) out += static_cast<char>((acc >> (bits -= 8)) & 0xFF);
  }
  return out;
}

/// `doc` with its last line (document-sha256) recomputed over everything before it.
inline std::string resum(std::string doc) {
  const auto at = doc.rfind("document-sha256: ");
  doc.resize(at);
  return doc + "document-sha256: " + config::sha256_hex(doc) + "\n";
}

/// The payload's prescription section ("THTX", u32 format, u32-prefixed state, then the
/// u32-prefixed prescription text), if the payload is long enough to have one.
inline std::string_view prescription_section(std::string_view p) {
  auto u32 = [&p](std::uint32_t& v) {
    if (p.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[static_cast<std::size_t>(i)])) << (8 * i);
    p.remove_prefix(4);
    return true;
  };
  std::uint32_t v = 0;
  if (p.size() < 8) return {};
  p.remove_prefix(4);
  if (!u32(v) || !u32(v) || p.size() < v) return {};
  p.remove_prefix(v);
  if (!u32(v) || p.size() < v) return {};
  return p.substr(0, v);
}

/// A document of format 1 whose checksums are right for `payload`, with the header's
/// prescription-id the SHA-256 of the payload's prescription section.
inline std::string wrap_payload(std::string_view payload) {
  std::string doc = "THECAL THERAPY EXPORT\nformat: 1\n";
  doc += "prescription-id: " + config::sha256_hex(prescription_section(payload)) + "\n";
  doc += "payload-bytes: " + std::to_string(payload.size()) + "\n";
  doc += "payload-sha256: " + config::sha256_hex(payload) + "\n";
  doc += "payload:\n" + base64_lines(payload) + "end\n";
  doc += "document-sha256: " + config::sha256_hex(doc) + "\n";
  return doc;
}

}  // namespace thecal::fuzz
