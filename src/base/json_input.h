// Parsing untrusted JSON (config.json, model.safetensors.index.json, safetensors headers).
//
// nlohmann::json copies and prints values recursively, so a value nested a million levels deep
// (a few MB of "[[[[") parses fine but overflows the stack when copied or quoted in an error
// message. parse_untrusted_json refuses such nesting while parsing.
#pragma once

#include <string>

#include "src/base/check.h"

namespace spin {

// `s` as a JSON string literal (invalid UTF-8 replaced, control characters escaped): safe to quote
// untrusted text inside a one-line message.
inline std::string json_quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Real inputs nest at most ~5 levels deep.
constexpr int kMaxJsonDepth = 100;

// Parses [first, last); `where` (a file name, or "file: header") starts every error message.
template <typename It>
nlohmann::json parse_untrusted_json(It first, It last, const std::string& where) {
  auto limit_depth = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    SPIN_CHECK(depth <= kMaxJsonDepth, where, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
    return true;
  };
  try {
    return nlohmann::json::parse(first, last, limit_depth);
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": not valid JSON (", e.what(), ")");
  }
}

}  // namespace spin
