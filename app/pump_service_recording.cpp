// GetRecording (SPEC section 4, S15): the flight recording of a wall-time window.
#include <string>
#include <limits>

#include "app/pump_service.hpp"

namespace thecal::app {

Outcome<std::string> PumpService::recording(std::uint64_t from_us, std::uint64_t to_us) const {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (from_us > kMax || to_us > kMax) return Outcome<std::string>::fail(ErrorCode::out_of_range, "time out of range");
  if (from_us > to_us) {
    return Outcome<std::string>::fail(ErrorCode::out_of_range, "from_usec is after to_usec");
  }
  if (to_us - from_us > static_cast<std::uint64_t>(kMaxRecordingWindowUs)) {
    return Outcome<std::string>::fail(ErrorCode::out_of_range, "a recording covers at most 31 days");
  }
  if (recorder_ == nullptr) {
    return Outcome<std::string>::fail(ErrorCode::invalid_state, "this pump has no flight recorder");
  }
  return {std::nullopt, recorder_->window(wall_us(static_cast<std::int64_t>(from_us)),
                                          wall_us(static_cast<std::int64_t>(to_us)))};
}

}  // namespace thecal::app
