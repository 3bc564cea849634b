// Plain logging to stderr, the systemd way: under systemd (JOURNAL_STREAM set) each line
// carries its syslog priority as a "<N>" prefix, which journald turns into PRIORITY=.
// Structured records (MESSAGE_ID, THECAL_* fields) go through sd_journal_send in the event
// log (app/event_log.cpp).  Not for the dosing thread's cycle.
#pragma once

#include <syslog.h>

namespace thecal::io {

void log_at(int priority, const char* format, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) ::thecal::io::log_at(LOG_ERR, __VA_ARGS__)
#define log_warning(...) ::thecal::io::log_at(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) ::thecal::io::log_at(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) ::thecal::io::log_at(LOG_INFO, __VA_ARGS__)

}  // namespace thecal::io
