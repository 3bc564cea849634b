#include "config/drug_library.hpp"

#include "config/config_file.hpp"
#include "config/yaml_reader.hpp"

namespace thecal::config {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lo = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lo(a[i]) != lo(b[i])) return false;
  }
  return true;
}

std::optional<std::string> read_name(Document& doc, const YamlNode& n) {
  auto s = read_string(doc, n);
  if (!s) return std::nullopt;
  bool ok = s->size() <= kMaxDrugName && s->front() != ' ' && s->back() != ' ';
  for (char c : *s) ok = ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  if (!ok) {
    doc.problem(n, "a drug name is 1 to 32 printable characters without leading or trailing spaces, found " +
                       in_quotes(*s));
    return std::nullopt;
  }
  return s;
}

// A figure with its citation: { value: 10 mg, source: "...", verified: true|false }
template <class Q>
std::optional<Q> read_figure(Document& doc, const YamlNode* n, std::string_view label, Drug& d, bool& verified) {
  if (n == nullptr) return std::nullopt;
  MapReader m(doc, n, {"value", "source", "verified"});
  std::optional<Q> v;
  if (const YamlNode* p = m.require("value")) v = read<Q>(doc, *p);
  std::optional<std::string> src;
  if (const YamlNode* p = m.require("source")) src = read_string(doc, *p);
  std::optional<bool> ver;
  if (const YamlNode* p = m.require("verified")) ver = read_bool(doc, *p);
  if (src && ver) {
    if (!d.source.empty()) d.source += "; ";
    d.source += std::string(label) + ": " + *src + (*ver ? "" : " (unverified)");
    verified = verified && *ver;
  }
  return v;
}

}  // namespace

const Drug* DrugLibrary::find(std::string_view name) const {
  for (const Drug& d : drugs) {
    if (iequal(d.name, name)) return &d;
    for (const std::string& a : d.aliases) {
      if (iequal(a, name)) return &d;
    }
  }
  return nullptr;
}

LoadedDrugLibrary parse_drug_library(std::string_view text, const std::string& file) {
  LoadedDrugLibrary out;
  Document doc(text, file, out.problems);
  if (doc.root() == nullptr) return out;
  MapReader top(doc, doc.root(), {"version", "drugs"});
  if (const YamlNode* v = top.require("version")) read_version(doc, *v);
  DrugLibrary lib;
  struct Seen {
    std::string name;
    const YamlNode* node;
  };
  std::vector<Seen> seen;  // every name and alias so far
  auto claim = [&](const std::string& name, const YamlNode& at) {
    for (const Seen& s : seen) {
      if (iequal(s.name, name)) {
        doc.problem(at, in_quotes(name) + " is already used at line " + std::to_string(s.node->line) + " (" +
                            s.node->path + ")");
        return;
      }
    }
    seen.push_back(Seen{name, &at});
  };
  if (const YamlNode* list = top.require("drugs")) {
    const auto items = read_list(doc, *list);
    if (list->kind == YamlNode::Kind::seq && items.empty()) doc.problem(*list, "the library lists no drug");
    for (const YamlNode* item : items) {
      MapReader m(doc, item, {"name", "aliases", "max_concentration", "hard_max_daily", "soft_max_daily",
                                    "max_days_in_reservoir"});
      if (!m.valid()) continue;
      Drug d;
      if (const YamlNode* p = m.require("name")) {
        if (auto s = read_name(doc, *p)) {
          d.name = *s;
          claim(*s, *p);
        }
      }
      if (const YamlNode* p = m.get("aliases")) {
        for (const YamlNode* a : read_list(doc, *p)) {
          if (auto s = read_name(doc, *a)) {
            d.aliases.push_back(*s);
            claim(*s, *a);
          }
        }
      }
      bool verified = true;
      const auto conc = read_figure<Concentration>(doc, m.require("max_concentration"), "max_concentration", d, verified);
      const YamlNode* hard_node = m.require("hard_max_daily");
      const auto hard = read_figure<Mass>(doc, hard_node, "hard_max_daily", d, verified);
      const YamlNode* soft_node = m.require("soft_max_daily");
      const auto soft = read_figure<Mass>(doc, soft_node, "soft_max_daily", d, verified);
      if (hard && soft && *soft > *hard) {
        doc.problem(*soft_node, "the soft maximum is above the hard maximum");
      }
      // Optional, with its citation like the figures above (not part of `verified`, which
      // is about the three dose figures).
      bool stability_ok = true;
      if (const YamlNode* n = m.get("max_days_in_reservoir")) {
        MapReader f(doc, n, {"value", "source", "verified"});
        stability_ok = false;
        std::optional<Duration> v;
        if (const YamlNode* p = f.require("value")) v = read_duration(doc, *p, Sign::positive);
        std::optional<std::string> src;
        if (const YamlNode* p = f.require("source")) src = read_string(doc, *p);
        std::optional<bool> ver;
        if (const YamlNode* p = f.require("verified")) ver = read_bool(doc, *p);
        if (v && src && ver) {
          d.max_in_reservoir = *v;
          d.source += "; max_days_in_reservoir: " + *src + (*ver ? "" : " (unverified)");
          stability_ok = true;
        }
      }
      if (conc && hard && soft && stability_ok) {
        d.max_concentration = *conc;
        d.hard_max_daily = *hard;
        d.soft_max_daily = *soft;
        d.verified = verified;
        lib.drugs.push_back(std::move(d));
      }
    }
  }
  if (out.problems.empty()) out.library = std::move(lib);
  return out;
}

LoadedDrugLibrary load_drug_library(const std::string& path) {
  FileText f = read_config_file(path);
  if (!f.text) return LoadedDrugLibrary{std::nullopt, std::move(f.problems)};
  return parse_drug_library(*f.text, path);
}

}  // namespace thecal::config
