// Crash-safe file replacement: write a temporary beside the target, fsync it, rename it over
// the target, fsync the directory.  A reader sees the old file or the new one, never a mix.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace thecal::io {

/// Writes `text` to `path + ".tmp"` and fsyncs it; returns an error text on failure.
std::optional<std::string> write_temp(const std::string& path, std::string_view text);
/// Renames `path + ".tmp"` over `path` and fsyncs the directory.
std::optional<std::string> commit_temp(const std::string& path);
/// Removes a temporary left by write_temp.
void discard_temp(const std::string& path);
/// write_temp + commit_temp.
std::optional<std::string> write_atomic(const std::string& path, std::string_view text);
/// Reads a whole file; nullopt if it does not exist or cannot be read (error text in `err`).
std::optional<std::string> read_file(const std::string& path, std::string* err = nullptr);

}  // namespace thecal::io
