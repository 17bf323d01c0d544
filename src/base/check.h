// Error reporting shared by every library and tool.
//
// Every user-facing failure is a spin::Error whose message is one line that
// names the file (or option) and the field at fault, e.g.
//   "model.safetensors: tensor 'lm_head.weight': data range [0, 4096) exceeds data area of 1024 bytes"
// Tools catch it in main(), print "error: <message>" and exit with status 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace spin {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Concatenates the arguments with operator<< into one message.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace spin

// SPIN_CHECK(cond, parts...): throw spin::Error(cat(parts...)) when cond is false.
#define SPIN_CHECK(cond, ...)            \
  do {                                   \
    if (!(cond)) ::spin::fail(__VA_ARGS__); \
  } while (0)
