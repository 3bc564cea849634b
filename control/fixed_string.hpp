// A fixed-capacity, NUL-terminated string that never allocates: for names carried
// into the dosing thread (drug names, messages).  Longer input is truncated.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
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
  [[nodiscard]] constexpr std::string_view view() const { return {buf_.data(), len_}; }
  [[nodiscard]] constexpr const char* c_str() const { return buf_.data(); }
  [[nodiscard]] constexpr bool empty() const { return len_ == 0; }
  constexpr bool operator==(const FixedString& o) const { return view() == o.view(); }

 private:
  std::array<char, N + 1> buf_{};
  std::size_t len_ = 0;
};

}  // namespace thecal
