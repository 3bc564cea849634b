// A fixed-capacity, NUL-terminated string that never allocates: for names carried
// into the dosing thread (drug names, messages).  Longer input is truncated.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace thecal {

template <std::size_t N>
class FixedString {
 public:
  constexpr FixedString() = default;
  constexpr FixedString(std::string_view s) { assign(s); }  // NOLINT(google-explicit-constructor)
  constexpr FixedString& operator=(std::string_view s) {
    assign(s);
    return *this;
  }
  constexpr void assign(std::string_view s) {
    len_ = std::min(s.size(), N);
    std::copy_n(s.begin(), len_, buf_.begin());
    buf_[len_] = '\0';
  }
  /// Appends what fits; the rest is cut.
  constexpr FixedString& append(std::string_view s) {
    const std::size_t n = std::min(s.size(), N - len_);
    std::copy_n(s.begin(), n, buf_.begin() + static_cast<std::ptrdiff_t>(len_));
    len_ += n;
    buf_[len_] = '\0';
    return *this;
  }
  /// Appends a decimal integer.
  constexpr FixedString& append(std::int64_t v) {
    std::array<char, 24> tmp{};
    std::size_t n = 0;
    const bool neg = v < 0;
    std::uint64_t u = neg ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    do {
      tmp[n++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u != 0 && n < tmp.size());
    if (neg) append(std::string_view{"-"});
    while (n > 0) {
      const char c = tmp[--n];
      append(std::string_view{&c, 1});
    }
    return *this;
  }
  [[nodiscard]] constexpr std::string_view view() const { return {buf_.data(), len_}; }
  [[nodiscard]] constexpr const char* c_str() const { return buf_.data(); }
  [[nodiscard]] constexpr bool empty() const { return len_ == 0; }
  constexpr bool operator==(const FixedString& o) const { return view() == o.view(); }

 private:
  std::array<char, N + 1> buf_{};
  std::size_t len_ = 0;
};

}  // namespace thecal
