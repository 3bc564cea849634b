// The one schema walker for the three config files.
//
// `Document` parses YAML text with yaml-cpp's event parser into a small tree whose every
// node knows its line, column and key path, and reports what yaml-cpp would let through
// silently: duplicate keys, anchors and aliases, explicit tags, several documents.
// `MapReader` and the read_* functions below check the schema: unknown keys, missing keys,
// wrong types, strict quantities.  Each reports its own Problem and returns nullopt, so a
// caller goes on and every problem in a file is reported at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/problem.hpp"
#include "config/quantity.hpp"
#include "control/units.hpp"

namespace thecal::config {

/// Texts longer than this are refused whole (a prescription is a few hundred bytes).
inline constexpr std::size_t kMaxConfigBytes = 1024 * 1024;

struct YamlNode {
  enum class Kind : std::uint8_t { null, scalar, seq, map };
  Kind kind = Kind::null;
  std::string value;  // scalar text
  int line = 0;       // 1-based
  int column = 0;     // 1-based
  std::string path;   // key path: basal.steps[1].rate
  std::vector<std::size_t> children;  // seq: items; map: key, value, key, value, ...
  bool reported = false;  // already refused (an alias): readers say nothing more about it
};

class Document {
 public:
  Document(std::string_view text, std::string file, Problems& problems);

  /// The top node, or nullptr when the text did not parse (the problem is reported).
  [[nodiscard]] const YamlNode* root() const { return parsed_ && !nodes_.empty() ? &nodes_[0] : nullptr; }
  [[nodiscard]] const YamlNode& node(std::size_t i) const { return nodes_[i]; }

  void problem(const YamlNode& at, std::string message) { problem(at, at.path, std::move(message)); }
  void problem(const YamlNode& at, std::string path, std::string message);
  void problem(int line, int column, std::string path, std::string message);
  [[nodiscard]] std::size_t problem_count() const { return problems_.size(); }
  /// Puts the problems in file order (line, then column), as compilers do.
  ~Document();

  /// "a mapping", "a list", "a text value", "nothing".
  static std::string_view kind_name(YamlNode::Kind k);

 private:
  friend class TreeBuilder;
  std::string file_;
  Problems& problems_;
  std::vector<YamlNode> nodes_;
  std::size_t first_problem_ = 0;
  bool parsed_ = false;
};

class MapReader {
 public:
  /// `keys`: every key allowed in this mapping; any other key is reported.  A node that is
  /// not a mapping is reported once, and every lookup on it then finds nothing silently.
  MapReader(Document& doc, const YamlNode* node, std::initializer_list<std::string_view> keys);

  [[nodiscard]] bool valid() const { return map_ != nullptr; }
  /// The value of `key`, or nullptr if absent (the first one if duplicated).
  [[nodiscard]] const YamlNode* get(std::string_view key) const;
  /// As get(), and reports a missing key.
  const YamlNode* require(std::string_view key);
  /// Reports `key` if present: "only for ..." rules.
  void forbid(std::string_view key, std::string_view why);
  /// The path a key of this mapping has (for problems about a missing key).
  [[nodiscard]] std::string key_path(std::string_view key) const;
  [[nodiscard]] const YamlNode* node() const { return map_; }

 private:
  Document& doc_;
  const YamlNode* map_ = nullptr;
};

/// Items of a list, or nothing (reported) when `n` is not a list.
std::vector<const YamlNode*> read_list(Document& doc, const YamlNode& n);
std::optional<std::string> read_string(Document& doc, const YamlNode& n);
std::optional<bool> read_bool(Document& doc, const YamlNode& n);
std::optional<std::uint64_t> read_uint(Document& doc, const YamlNode& n, std::uint64_t min, std::uint64_t max);
/// A plain decimal number without unit, within [min, max].
std::optional<double> read_number(Document& doc, const YamlNode& n, double min, double max);
/// The file format's `version:`; only 1 exists.
void read_version(Document& doc, const YamlNode& n);
/// Index into `choices` of the text.
std::optional<std::size_t> read_choice(Document& doc, const YamlNode& n,
                                       std::initializer_list<std::string_view> choices);
/// Any quantity; `canonical` is in the dimension's canonical unit.
std::optional<ParsedQuantity> read_quantity(Document& doc, const YamlNode& n, const QuantitySpec& spec);
std::optional<Duration> read_duration(Document& doc, const YamlNode& n, Sign sign, bool allow_ms = false);
/// "HH:MM", 00:00 to 23:59, as an offset from midnight.
std::optional<Duration> read_time_of_day(Document& doc, const YamlNode& n);

template <class Q> struct QuantityDim;
template <> struct QuantityDim<Mass> { static constexpr Dim value = Dim::mass; };
template <> struct QuantityDim<Volume> { static constexpr Dim value = Dim::volume; };
template <> struct QuantityDim<Concentration> { static constexpr Dim value = Dim::concentration; };
template <> struct QuantityDim<MassRate> { static constexpr Dim value = Dim::mass_rate; };
template <> struct QuantityDim<VolumeRate> { static constexpr Dim value = Dim::volume_rate; };

/// A strong quantity of the type asked for.
template <class Q>
std::optional<Q> read(Document& doc, const YamlNode& n, Sign sign = Sign::positive) {
  const auto q = read_quantity(doc, n, QuantitySpec{QuantityDim<Q>::value, sign, false});
  if (!q) return std::nullopt;
  return Q::canonical(q->canonical);
}

}  // namespace thecal::config
