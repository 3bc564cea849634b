#include "app/therapy_document.hpp"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <algorithm>
#include <limits>
#include <memory>
#include <stdexcept>


#include "config/sha256.hpp"
#include "app/base64.hpp"
#include "app/journal_keeper.hpp"

namespace thecal::app {

namespace {

constexpr std::string_view kMagic = "THECAL THERAPY EXPORT\n";
constexpr std::string_view kPayloadMagic = "THTX";
constexpr std::string_view kDocSumKey = "document-sha256: ";
constexpr std::size_t kMaxEvents = 1'000'000;

void put_u32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}

struct Reader {
  std::string_view p;
  bool ok = true;
  std::uint32_t u32() {
    if (p.size() < 4) {
      ok = false;
      return 0;
    }
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[static_cast<std::size_t>(i)])) << (8 * i);
    p.remove_prefix(4);
    return v;
  }
  std::string_view bytes(std::size_t n) {
    if (!ok || p.size() < n) {
      ok = false;
      return {};
    }
    auto v = p.substr(0, n);
    p.remove_prefix(n);
    return v;
  }
  std::string_view section() { return bytes(u32()); }
};

std::string iso_utc(std::int64_t wall_us) {
  const std::time_t t = static_cast<std::time_t>(wall_us / 1'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  (void)std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// The value of "key: value" among the header lines, or nullopt.
std::optional<std::string_view> header(std::string_view head, std::string_view key) {
  std::size_t pos = 0;
  while (pos < head.size()) {
    const std::size_t nl = head.find('\n', pos);
    const std::string_view line = head.substr(pos, (nl == std::string_view::npos ? head.size() : nl) - pos);
    if (line.size() > key.size() + 1 && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      std::string_view v = line.substr(key.size() + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> number(std::optional<std::string_view> v) {
  if (!v || v->empty() || v->size() > 19) return std::nullopt;
  std::uint64_t n = 0;
  for (const char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

}  // namespace

std::string encode_therapy_document(const CoreState& state, std::string_view prescription,
                                    const std::vector<LoggedEvent>& events) {
  std::string payload(kPayloadMagic);
  put_u32(payload, kTherapyDocumentFormat);
  const auto core = encode_core_state(state);
  put_u32(payload, static_cast<std::uint32_t>(core.size()));
  payload.append(reinterpret_cast<const char*>(core.data()), core.size());
  put_u32(payload, static_cast<std::uint32_t>(prescription.size()));
  payload.append(prescription);
  put_u32(payload, static_cast<std::uint32_t>(events.size()));
  for (const auto& e : events) {
    const std::string ev = encode_event_payload(e);
    put_u32(payload, static_cast<std::uint32_t>(ev.size()));
    payload.append(ev);
  }

  std::string doc(kMagic);
  char buf[256];
  auto line = [&](const char* fmt, auto... args) {
    (void)std::snprintf(buf, sizeof buf, fmt, args...);
    doc += buf;
  };
  const std::int64_t wall = to_usec(state.wall);
  line("format: %u\n", kTherapyDocumentFormat);
  line("exported-wall-usec: %" PRId64 "\n", wall);
  line("exported: %s\n", iso_utc(wall).c_str());
  if (state.plan) {
    line("prescription-id: %s\n", std::string(state.plan->id.view()).c_str());
    line("patient: %s\n", std::string(state.plan->patient.view()).c_str());
    line("drug: %s\n", std::string(state.plan->drug.view()).c_str());
  }
  line("state: %s\n", std::string(to_string(state.state)).c_str());
  line("patient-bolus-starts: %zu\n", state.patient_starts.size());
  line("events: %zu\n", events.size());
  line("payload-bytes: %zu\n", payload.size());
  doc += "payload-sha256: " + config::sha256_hex(payload) + "\n";
  doc += "payload:\n";
  doc += base64_encode(payload);
  doc += "end\n";
  doc += std::string(kDocSumKey) + config::sha256_hex(doc) + "\n";
  return doc;
}

std::unique_ptr<TherapyDocument> decode_therapy_document(std::string_view text, std::string* err) {
  auto fail = [&](std::string why) {
    if (err != nullptr) *err = std::move(why);
    return nullptr;
  };
  if (text.size() > kMaxTherapyDocumentBytes) return fail("the document is larger than 64 MiB");
  if (text.substr(0, kMagic.size()) != kMagic) return fail("not a thecal therapy export (no 'THECAL THERAPY EXPORT' header)");
  // The last line: the checksum of everything before it.  A document cut short has none.
  std::string_view body = text;
  if (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  const std::size_t last_nl = body.rfind('\n');
  if (last_nl == std::string_view::npos) return fail("the document is truncated (no document-sha256 line)");
  const std::string_view last = body.substr(last_nl + 1);
  if (last.substr(0, kDocSumKey.size()) != kDocSumKey) return fail("the document is truncated (no document-sha256 line at its end)");
  const std::string_view covered = text.substr(0, last_nl + 1);
  if (config::sha256_hex(covered) != last.substr(kDocSumKey.size())) {
    return fail("the document's checksum does not match its contents: it was altered or damaged");
  }
  const std::size_t pay_at = covered.find("\npayload:\n");
  const std::size_t end_at = covered.rfind("\nend\n");
  if (pay_at == std::string_view::npos || end_at == std::string_view::npos || end_at < pay_at) {
    return fail("the document has no payload section");
  }
  const std::string_view head = covered.substr(0, pay_at + 1);
  const auto format = number(header(head, "format"));
  if (!format) return fail("the document has no format version");
  if (*format > kTherapyDocumentFormat) {
    return fail("the document is of format " + std::to_string(*format) + ", newer than this thecald reads (" +
                std::to_string(kTherapyDocumentFormat) + "): update thecald on this unit");
  }
  if (*format != kTherapyDocumentFormat) return fail("unknown document format " + std::to_string(*format));
  const auto payload = base64_decode(covered.substr(pay_at + 10, end_at + 1 - (pay_at + 10)));
  if (!payload) return fail("the payload is not valid base64");
  const auto bytes = number(header(head, "payload-bytes"));
  if (!bytes || *bytes != payload->size()) return fail("the payload's length does not match payload-bytes: truncated");
  const auto sum = header(head, "payload-sha256");
  if (!sum || config::sha256_hex(*payload) != *sum) return fail("the payload's checksum does not match");

  Reader in{*payload};
  if (in.bytes(kPayloadMagic.size()) != kPayloadMagic) return fail("the payload has no THTX magic");
  if (in.u32() != kTherapyDocumentFormat) return fail("the payload's format does not match the header's");
  auto doc = std::make_unique<TherapyDocument>();
  const std::string_view core = in.section();
  if (!in.ok) return fail("the payload is truncated (therapy state)");
  std::string why;
  auto st = decode_core_state(core, &why);
  if (!st) return fail("the therapy state does not decode: " + why);
  doc->state = std::move(*st);
  const std::string_view rx = in.section();
  if (!in.ok) return fail("the payload is truncated (prescription)");
  doc->prescription = std::string(rx);
  const std::uint32_t n = in.u32();
  if (!in.ok || n > kMaxEvents) return fail("the payload is truncated (event log)");
  doc->events.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::string_view ev = in.section();
    if (!in.ok) return fail("the payload is truncated (event " + std::to_string(i) + ")");
    auto e = decode_event_payload(ev);
    if (!e) return fail("event " + std::to_string(i) + " does not decode");
    doc->events.push_back(std::move(*e));
  }
  if (!in.p.empty()) return fail("the payload has trailing bytes");
  // The parts must agree with each other.
  if (!doc->state.plan) return fail("the exported state has no prescription");
  if (config::sha256_hex(doc->prescription) != doc->state.plan->id.view()) {
    return fail("the prescription text does not match the exported state's prescription id: mismatched document");
  }
  if (const auto id = header(head, "prescription-id"); !id || *id != doc->state.plan->id.view()) {
    return fail("the header's prescription-id does not match the exported state: mismatched document");
  }
  return doc;
}

}  // namespace thecal::app
