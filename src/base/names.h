// Enumerators by name: how an option's text becomes an enum and back, with one error format. A name
// table is an array of {name, enumerator} pairs, e.g.
//   const std::pair<const char*, Mode> kModes[] = {{"e2e", Mode::e2e}, {"blockwise", Mode::blockwise}};
#pragma once

#include <string>
#include <utility>

#include "src/base/check.h"

namespace spin {

// The enumerator called `text`; otherwise spin::Error "<what>: unknown <kind> '<text>' (expected a, b or c)".
template <typename Enum, size_t N>
Enum from_name(const std::pair<const char*, Enum> (&names)[N], const std::string& text, const std::string& what,
               const char* kind) {
  std::string expected;
  for (size_t i = 0; i < N; ++i) {
    if (text == names[i].first) return names[i].second;
    expected += cat(i == 0 ? "" : i + 1 == N ? " or " : ", ", names[i].first);
  }
  fail(what, ": unknown ", kind, " '", text, "' (expected ", expected, ")");
}

// The name of `value` ("?" if the table lacks it).
template <typename Enum, size_t N>
const char* name_of(const std::pair<const char*, Enum> (&names)[N], Enum value) {
  for (const auto& [name, e] : names)
    if (e == value) return name;
  return "?";
}

}  // namespace spin
