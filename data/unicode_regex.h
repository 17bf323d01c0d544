// A Unicode regular expression over UTF-8 text (PCRE2 with PCRE2_UTF | PCRE2_UCP, JIT-compiled when
// the library has a JIT), for the patterns of a Hugging Face tokenizer.json.
//
// The Hugging Face tokenizers library compiles those patterns with Oniguruma (Ruby syntax). PCRE2
// reads the same Perl-style syntax with the same backtracking, leftmost-first semantics; where the
// two engines define a construct differently the pattern is adapted or refused:
//   - \s, \S: Oniguruma means the Unicode White_Space property; PCRE2's \s also takes U+180E, so
//     they are rewritten to \p{White_Space}, \P{White_Space}.
//   - ^, $: line anchors in Ruby syntax, so the pattern is compiled with PCRE2_MULTILINE.
//   - \h, \H (hex digit in Oniguruma, horizontal space in PCRE2), \w, \W, \b, \B (different word
//     sets) and \G are refused with an error naming the pattern.
// find_all() iterates like the Rust onig crate's find_iter, which tokenizers uses: matches left to
// right, an empty match is accepted except right where the previous match ended.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spin::data {

class UnicodeRegex {
 public:
  // `pattern` is a tokenizer.json Regex pattern, or with `literal` a String pattern matched as-is.
  // `where` (e.g. "tokenizer.json: pre_tokenizer.pattern.Regex") starts every error message.
  UnicodeRegex(const std::string& pattern, bool literal, const std::string& where);
  ~UnicodeRegex();
  UnicodeRegex(UnicodeRegex&&) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&&) noexcept;

  // Byte ranges [begin, end) of the matches in `text`, which must be valid UTF-8 (not re-checked).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> re_;
  std::string where_;
};

// Byte offset of the first invalid UTF-8 sequence in `text` (overlong forms, surrogates and code
// points above U+10FFFF are invalid), or std::string::npos when the whole text is valid.
size_t find_invalid_utf8(std::string_view text);

}  // namespace spin::data
