#include "config/yaml_reader.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <charconv>
#include <cmath>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

namespace thecal::config {

namespace {

bool plain_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f || c == '.' || c == '[' || c == ']' || c == '"') return false;
  }
  return true;
}

}  // namespace

// Builds the node tree from yaml-cpp's events.  Not recursive (yaml-cpp's own parser is,
// and guards its depth).
class TreeBuilder final : public YAML::EventHandler {
 public:
  explicit TreeBuilder(Document& doc) : doc_(doc) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    ++documents_;
    if (documents_ > 1) {
      doc_.problem(mark.line + 1, mark.column + 1, "", "only one YAML document is allowed");
    }
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const std::size_t i = add(YamlNode::Kind::null, mark, anchor, "", "");
    if (i != kNone) close_value();
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t /*anchor*/) override {
    const std::size_t i = add(YamlNode::Kind::null, mark, 0, "", "", true);
    if (i != kNone) {
      doc_.nodes_[i].reported = true;
      doc_.problem(doc_.nodes_[i], "aliases (*name) are not allowed");
      close_value();
    }
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    const std::size_t i = add(YamlNode::Kind::scalar, mark, anchor, tag, value);
    if (i != kNone) close_value();
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    const std::size_t i = add(YamlNode::Kind::seq, mark, anchor, tag, "");
    open_.push_back(Frame{i, {}});
  }
  void OnSequenceEnd() override { end_container(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    const std::size_t i = add(YamlNode::Kind::map, mark, anchor, tag, "");
    open_.push_back(Frame{i, {}});
  }
  void OnMapEnd() override { end_container(); }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  struct Frame {
    std::size_t node;  // kNone: ignored (a second document)
    std::vector<std::size_t> key_nodes;
  };

  void end_container() {
    if (!open_.empty()) open_.pop_back();
    close_value();
  }
  // Nothing to do: a map's key/value alternation is read off its child count.
  void close_value() {}

  std::size_t add(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor, const std::string& tag,
                  const std::string& value, bool alias = false) {
    if (documents_ > 1) return kNone;
    YamlNode n;
    n.kind = kind;
    n.value = value;
    n.line = mark.line + 1;
    n.column = mark.column + 1;
    bool is_key = false;
    std::size_t parent = kNone;
    if (!open_.empty()) parent = open_.back().node;
    if (!open_.empty() && parent == kNone) return kNone;
    if (parent != kNone) {
      const YamlNode& p = doc_.nodes_[parent];
      if (p.kind == YamlNode::Kind::seq) {
        n.path = p.path + "[" + std::to_string(p.children.size()) + "]";
      } else {
        is_key = p.children.size() % 2 == 0;
        if (is_key && kind != YamlNode::Kind::scalar) {
          n.path = p.path;  // not a key anyone could name: reported below
        } else if (is_key) {
          const std::string shown = plain_key(value) ? value : in_quotes(value);
          n.path = p.path.empty() ? shown : p.path + "." + shown;
        } else {
          const YamlNode& key = doc_.nodes_[p.children.back()];
          n.path = key.path;
          if (kind == YamlNode::Kind::null && !alias) {  // "key:" with nothing after: point at the key
            n.line = key.line;
            n.column = key.column;
          }
        }
      }
    }
    const std::size_t idx = doc_.nodes_.size();
    doc_.nodes_.push_back(std::move(n));
    if (parent != kNone) doc_.nodes_[parent].children.push_back(idx);
    const YamlNode& me = doc_.nodes_[idx];

    if (anchor != 0) doc_.problem(me, "anchors (&name) are not allowed");
    if (!tag.empty() && tag != "?" && tag != "!") doc_.problem(me, "explicit tags (" + in_quotes(tag) + ") are not allowed");
    if (is_key) {
      if (kind != YamlNode::Kind::scalar || value.empty()) {
        doc_.problem(me, "a key must be a plain word, found " +
                             std::string(kind == YamlNode::Kind::scalar ? "an empty text" : Document::kind_name(kind)));
      } else {
        for (std::size_t k : open_.back().key_nodes) {
          const YamlNode& other = doc_.nodes_[k];
          if (other.value == value) {
            doc_.problem(me, "duplicate key " + in_quotes(value) + " (first at line " + std::to_string(other.line) +
                                 ", column " + std::to_string(other.column) + ")");
            break;
          }
        }
        open_.back().key_nodes.push_back(idx);
      }
    }
    return idx;
  }

  Document& doc_;
  std::vector<Frame> open_;
  int documents_ = 0;
};

Document::Document(std::string_view text, std::string file, Problems& problems)
    : file_(std::move(file)), problems_(problems), first_problem_(problems.size()) {
  if (text.size() > kMaxConfigBytes) {
    problem(0, 0, "", "too large: " + std::to_string(text.size()) + " bytes (the limit is " +
                          std::to_string(kMaxConfigBytes) + ")");
    return;
  }
  // YAML allows no C0 control character but tab, line feed and carriage return; yaml-cpp
  // loops forever on some inputs with NUL bytes.  Refuse them before parsing.
  int line = 1;
  int column = 1;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f) {
      std::array<char, 8> hex{};
      std::snprintf(hex.data(), hex.size(), "0x%02x", u);
      problem(line, column, "", std::string("control character ") + hex.data() + " is not allowed in YAML");
      return;
    }
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;  // columns count bytes, as yaml-cpp's marks (and gcc's) do
    }
  }
  std::istringstream in{std::string(text)};
  TreeBuilder builder(*this);
  try {
    YAML::Parser parser(in);
    // One document is allowed; a second one is reported (by the builder) and ends parsing.
    for (int documents = 0; documents < 2 && parser.HandleNextDocument(builder); ++documents) {
    }
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    const int col = e.mark.is_null() ? 0 : e.mark.column + 1;
    problem(line, col, "", "YAML syntax error: " + e.msg);
    return;
  }
  if (nodes_.empty() || nodes_[0].kind == YamlNode::Kind::null) {
    problem(1, 1, "", "empty document");
    return;
  }
  parsed_ = true;
}

Document::~Document() {
  std::stable_sort(problems_.begin() + static_cast<std::ptrdiff_t>(first_problem_), problems_.end(),
                   [](const Problem& a, const Problem& b) {
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
}

void Document::problem(const YamlNode& at, std::string path, std::string message) {
  problem(at.line, at.column, std::move(path), std::move(message));
}

void Document::problem(int line, int column, std::string path, std::string message) {
  problems_.push_back(Problem{file_, line, column, std::move(path), std::move(message)});
}

std::string_view Document::kind_name(YamlNode::Kind k) {
  switch (k) {
    case YamlNode::Kind::null: return "nothing";
    case YamlNode::Kind::scalar: return "a text value";
    case YamlNode::Kind::seq: return "a list";
    case YamlNode::Kind::map: return "a mapping";
  }
  return "?";
}

// ---- MapReader --------------------------------------------------------------------------

MapReader::MapReader(Document& doc, const YamlNode* node, std::initializer_list<std::string_view> keys)
    : doc_(doc) {
  if (node == nullptr) return;
  if (node->kind != YamlNode::Kind::map) {
    if (node->reported) return;
    doc_.problem(*node, "expected a mapping, found " + std::string(Document::kind_name(node->kind)));
    return;
  }
  map_ = node;
  for (std::size_t i = 0; i < map_->children.size(); i += 2) {
    const YamlNode& k = doc_.node(map_->children[i]);
    if (k.kind != YamlNode::Kind::scalar || k.value.empty()) continue;  // reported by the builder
    bool known = false;
    for (std::string_view allowed : keys) known = known || allowed == k.value;
    if (!known) {
      std::string list;
      for (std::string_view allowed : keys) list += (list.empty() ? "" : ", ") + std::string(allowed);
      doc_.problem(k, "unknown key " + in_quotes(k.value) + " (expected one of: " + list + ")");
    }
  }
}

const YamlNode* MapReader::get(std::string_view key) const {
  if (map_ == nullptr) return nullptr;
  for (std::size_t i = 0; i + 1 < map_->children.size(); i += 2) {
    const YamlNode& k = doc_.node(map_->children[i]);
    if (k.kind == YamlNode::Kind::scalar && k.value == key) return &doc_.node(map_->children[i + 1]);
  }
  return nullptr;
}

std::string MapReader::key_path(std::string_view key) const {
  if (map_ == nullptr || map_->path.empty()) return std::string(key);
  return map_->path + "." + std::string(key);
}

const YamlNode* MapReader::require(std::string_view key) {
  const YamlNode* v = get(key);
  if (v == nullptr && map_ != nullptr) doc_.problem(*map_, key_path(key), "missing required key");
  return v;
}

void MapReader::forbid(std::string_view key, std::string_view why) {
  const YamlNode* v = get(key);
  if (v == nullptr) return;
  for (std::size_t i = 0; i + 1 < map_->children.size(); i += 2) {
    const YamlNode& k = doc_.node(map_->children[i]);
    if (k.kind == YamlNode::Kind::scalar && k.value == key) {
      doc_.problem(k, "not allowed here: " + std::string(why));
      return;
    }
  }
}

// ---- typed readers ----------------------------------------------------------------------

namespace {

bool expect_scalar(Document& doc, const YamlNode& n, std::string_view what) {
  if (n.kind == YamlNode::Kind::scalar) return true;
  if (n.reported) return false;
  doc.problem(n, "expected " + std::string(what) + ", found " + std::string(Document::kind_name(n.kind)));
  return false;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::vector<const YamlNode*> read_list(Document& doc, const YamlNode& n) {
  std::vector<const YamlNode*> out;
  if (n.kind != YamlNode::Kind::seq) {
    if (n.reported) return out;
    doc.problem(n, "expected a list, found " + std::string(Document::kind_name(n.kind)));
    return out;
  }
  for (std::size_t c : n.children) out.push_back(&doc.node(c));
  return out;
}

std::optional<std::string> read_string(Document& doc, const YamlNode& n) {
  if (!expect_scalar(doc, n, "a text value")) return std::nullopt;
  if (n.value.empty()) {
    doc.problem(n, "empty text");
    return std::nullopt;
  }
  return n.value;
}

std::optional<bool> read_bool(Document& doc, const YamlNode& n) {
  if (!expect_scalar(doc, n, "true or false")) return std::nullopt;
  if (n.value == "true") return true;
  if (n.value == "false") return false;
  doc.problem(n, "expected true or false, found " + in_quotes(n.value));
  return std::nullopt;
}

std::optional<std::uint64_t> read_uint(Document& doc, const YamlNode& n, std::uint64_t min, std::uint64_t max) {
  const std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (!expect_scalar(doc, n, range)) return std::nullopt;
  std::uint64_t v = 0;
  const std::string& s = n.value;
  const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  if (!all_digits(s) || res.ec != std::errc{} || res.ptr != s.data() + s.size() || v < min || v > max) {
    doc.problem(n, "expected " + range + ", found " + in_quotes(s));
    return std::nullopt;
  }
  return v;
}

std::optional<double> read_number(Document& doc, const YamlNode& n, double min, double max) {
  std::ostringstream range;
  range << "a number from " << min << " to " << max;
  if (!expect_scalar(doc, n, range.str())) return std::nullopt;
  const std::string& s = n.value;
  // Same number grammar as quantities: [-]DIGITS[.DIGITS]
  std::size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  const std::size_t d0 = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  bool ok = i > d0 && s.size() <= 32;
  if (ok && i < s.size() && s[i] == '.') {
    const std::size_t f = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    ok = i > f;
  }
  ok = ok && i == s.size();
  double v = 0.0;
  if (ok) {
    const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    ok = res.ec == std::errc{} && std::isfinite(v) && v >= min && v <= max;
  }
  if (!ok) {
    doc.problem(n, "expected " + range.str() + ", found " + in_quotes(s));
    return std::nullopt;
  }
  return v;
}

void read_version(Document& doc, const YamlNode& n) {
  if (n.reported || (n.kind == YamlNode::Kind::scalar && n.value == "1")) return;
  doc.problem(n, "unsupported version " + (n.kind == YamlNode::Kind::scalar ? in_quotes(n.value) : std::string(Document::kind_name(n.kind))) +
                     ": this thecal reads version 1");
}

std::optional<std::size_t> read_choice(Document& doc, const YamlNode& n,
                                       std::initializer_list<std::string_view> choices) {
  std::string list;
  std::size_t i = 0;
  for (std::string_view c : choices) {
    if (i > 0) list += (i + 1 == choices.size()) ? " or " : ", ";
    list += c;
    ++i;
  }
  if (!expect_scalar(doc, n, list)) return std::nullopt;
  i = 0;
  for (std::string_view c : choices) {
    if (n.value == c) return i;
    ++i;
  }
  doc.problem(n, "expected " + list + ", found " + in_quotes(n.value));
  return std::nullopt;
}

std::optional<ParsedQuantity> read_quantity(Document& doc, const YamlNode& n, const QuantitySpec& spec) {
  if (n.kind != YamlNode::Kind::scalar) {
    if (n.reported) return std::nullopt;
    doc.problem(n, "expected " + std::string(dim_article_name(spec.dim)) + " in " +
                       unit_list(spec.dim, spec.allow_ms) + ", found " + std::string(Document::kind_name(n.kind)));
    return std::nullopt;
  }
  ParsedQuantity q = parse_quantity(n.value, spec);
  if (!q.ok) {
    doc.problem(n, q.error);
    return std::nullopt;
  }
  return q;
}

std::optional<Duration> read_duration(Document& doc, const YamlNode& n, Sign sign, bool allow_ms) {
  const auto q = read_quantity(doc, n, QuantitySpec{Dim::duration, sign, allow_ms});
  if (!q) return std::nullopt;
  return q->duration;
}

std::optional<Duration> read_time_of_day(Document& doc, const YamlNode& n) {
  if (!expect_scalar(doc, n, "a time of day \"HH:MM\"")) return std::nullopt;
  const std::string& s = n.value;
  const bool shape = s.size() == 5 && all_digits(s.substr(0, 2)) && s[2] == ':' && all_digits(s.substr(3, 2));
  const int h = shape ? (s[0] - '0') * 10 + (s[1] - '0') : -1;
  const int m = shape ? (s[3] - '0') * 10 + (s[4] - '0') : -1;
  if (!shape || h > 23 || m > 59) {
    doc.problem(n, "expected a time of day \"HH:MM\" from 00:00 to 23:59, found " + in_quotes(s));
    return std::nullopt;
  }
  return hours(h) + minutes(m);
}

}  // namespace thecal::config
