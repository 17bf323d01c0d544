#include "data/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdio>

#include "src/base/check.h"

namespace spin::data {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

// `s` with control characters written as \xNN, so that error messages stay one line.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7F) {
      out += char(c);
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", c);
    out += buf;
  }
  return out;
}

// Rewrites the escapes whose meaning differs between Oniguruma and PCRE2 (see the header); refuses
// the ones that cannot be rewritten simply. Text between \Q and \E is literal and copied as is.
std::string adapt_oniguruma_pattern(const std::string& pattern, const std::string& where) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char c = pattern[++i];
    switch (c) {
      case 's': out += "\\p{White_Space}"; break;
      case 'S': out += "\\P{White_Space}"; break;
      case 'h': case 'H': case 'w': case 'W': case 'b': case 'B': case 'G':
        fail(where, ": the escape \\", c, " in '", printable(pattern), "' means different things in Oniguruma (Hugging Face "
             "tokenizers) and PCRE2; not supported");
      case 'Q': {
        const size_t end = pattern.find("\\E", i + 1);
        out += pattern.substr(i - 1, end == std::string::npos ? std::string::npos : end + 2 - (i - 1));
        i = end == std::string::npos ? pattern.size() : end + 1;
        break;
      }
      default: out += '\\'; out += c;
    }
  }
  return out;
}

}  // namespace

struct UnicodeRegex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

UnicodeRegex::UnicodeRegex(const std::string& pattern, bool literal, const std::string& where)
    : re_(std::make_unique<Compiled>()), where_(where) {
  SPIN_CHECK(find_invalid_utf8(pattern) == std::string::npos, where, ": the pattern is not valid UTF-8");
  const std::string source = literal ? pattern : adapt_oniguruma_pattern(pattern, where);
  // PCRE2_LITERAL admits PCRE2_UTF but not PCRE2_UCP / PCRE2_MULTILINE, which a literal needs not.
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE);
  int error = 0;
  PCRE2_SIZE offset = 0;
  re_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &error, &offset,
                            nullptr);
  SPIN_CHECK(re_->code, where, ": cannot compile the pattern '", printable(pattern), "': ", pcre2_message(error), " at offset ",
             offset);
  uint32_t have_jit = 0;
  pcre2_config(PCRE2_CONFIG_JIT, &have_jit);
  if (have_jit) pcre2_jit_compile(re_->code, PCRE2_JIT_COMPLETE);  // on failure pcre2_match interprets
}

UnicodeRegex::~UnicodeRegex() = default;
UnicodeRegex::UnicodeRegex(UnicodeRegex&&) noexcept = default;
UnicodeRegex& UnicodeRegex::operator=(UnicodeRegex&&) noexcept = default;

namespace {

// Per-thread matching resources shared by every pattern, so that concurrent calls share nothing
// and a call costs no allocation: match data for the whole-match offsets, and a JIT stack big
// enough for backtracking over long runs (the default 32 KiB is not).
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
  MatchScratch() {
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

}  // namespace

void UnicodeRegex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const {
  matches.clear();
  thread_local MatchScratch scratch;
  SPIN_CHECK(scratch.data && scratch.context && scratch.stack, where_, ": out of memory for regex matching");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t start = 0;
  bool matched_before = false;
  size_t last_end = 0;
  while (start <= n) {
    const int rc = pcre2_match(re_->code, subject, n, start, PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    SPIN_CHECK(rc >= 0, where_, ": regex matching failed: ", pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    const size_t begin = ovector[0], end = ovector[1];
    if (begin == end && matched_before && end == last_end) {
      // An empty match where the previous match ended: step over one character and search again.
      if (start == n) break;
      ++start;
      while (start < n && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      continue;
    }
    matches.emplace_back(begin, end);
    matched_before = true;
    last_end = end;
    start = end;
  }
}

size_t find_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return i;
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

}  // namespace spin::data
