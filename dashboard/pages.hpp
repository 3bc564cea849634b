// What the dashboard serves, as text: the live page and its assets (live_page.cpp), the
// printable report (report.cpp) and the preview page (preview_page.cpp).  Pure functions
// of JSON read from the pump: unit-tested without a bus.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace thecal::dashboard {

const char* live_page_html();
const char* style_css();
const char* live_js();

// ---- report ------------------------------------------------------------------------------

struct Period {
  std::uint64_t from_usec = 0;
  std::uint64_t to_usec = 0;
  std::string name;  // "trial", "since the last refill", or "chosen period"
};

/// The period of `period=trial|since-refill` from the pump's events (oldest first) and its
/// properties; nullopt with `why` when there is no such period.
std::optional<Period> resolve_period(const std::string& which, const nlohmann::json& events, const nlohmann::json& pump,
                                     std::uint64_t now_usec, std::string& why);

/// The report's figures: per day (UTC) the mass of every drug and the volume; boluses
/// requested / given / refused; alarms; refills with their measured accuracy.
/// `daily`: GetDeliveryHistory with 24 h buckets aligned on UTC days covering the period;
/// `events`: GetEvents of the period; `drugs`: the Drugs property (a(sddd)) or one entry.
nlohmann::json summarize_report(const Period& p, const nlohmann::json& events, const nlohmann::json& daily,
                                const nlohmann::json& drugs);

/// The printable page: one A4 page per week of the period.
std::string render_report(const nlohmann::json& summary);

/// A page that says what went wrong, plainly.
std::string render_error_page(const std::string& title, const std::string& message);

// ---- preview -----------------------------------------------------------------------------

/// The upload form, and with a result the two previews side by side ("now" = the active
/// prescription unchanged, "new" = the uploaded one), or the error as thecald gave it.
std::string render_preview_page(const nlohmann::json* now_result, const nlohmann::json* new_result,
                                const std::string& error, const std::string& file_name);

std::string html_escape(const std::string& s);
std::string format_utc(std::uint64_t usec);

}  // namespace thecal::dashboard
