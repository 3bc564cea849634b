#include "app/base64.hpp"

#include <algorithm>

#include <boost/archive/iterators/base64_from_binary.hpp>
#include <boost/archive/iterators/binary_from_base64.hpp>
#include <boost/archive/iterators/transform_width.hpp>

namespace thecal::app {

namespace {

// Base64 (RFC 4648) by Boost.Archive's dataflow iterators (header-only): the encoder writes
// 64-column lines, each ended by a newline (the layout OpenSSL's EVP_Encode wrote before, so
// documents are byte-identical); the decoder skips line breaks and blanks, and refuses any
// other character, a length that is not whole quanta, and '=' anywhere but the last one or two
// places.
using Base64Encoder = boost::archive::iterators::base64_from_binary<
    boost::archive::iterators::transform_width<std::string_view::const_iterator, 6, 8>>;
using Base64Decoder = boost::archive::iterators::transform_width<
    boost::archive::iterators::binary_from_base64<std::string::const_iterator>, 8, 6>;

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string flat(Base64Encoder(in.begin()), Base64Encoder(in.end()));
  flat.append((4 - flat.size() % 4) % 4, '=');
  constexpr std::size_t kColumns = 64;
  std::string out;
  out.reserve(flat.size() + flat.size() / kColumns + 1);
  for (std::size_t at = 0; at < flat.size(); at += kColumns) {
    out.append(flat, at, kColumns);
    out.push_back('\n');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string flat;
  flat.reserve(in.size());
  for (const char c : in) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    flat.push_back(c);
  }
  if (flat.size() % 4 != 0) return std::nullopt;
  const std::size_t pad = flat.ends_with("==") ? 2 : flat.ends_with('=') ? 1 : 0;
  if (flat.find_first_not_of(kAlphabet) < flat.size() - pad) return std::nullopt;
  if (flat.empty()) return std::string();
  std::replace(flat.end() - static_cast<std::ptrdiff_t>(pad), flat.end(), '=', 'A');  // zero bits
  std::string out(Base64Decoder(flat.cbegin()), Base64Decoder(flat.cend()));
  out.resize(out.size() - pad);
  return out;
}

}  // namespace thecal::app
