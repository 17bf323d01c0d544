#include "data/hf_tokenizer.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "data/unicode_regex.h"
#include "src/base/check.h"
#include "src/base/json_input.h"

// The Rust tokenizers sources named below ("ref: ...") are the ones this follows; paths are relative
// to https://github.com/huggingface/tokenizers/tree/main/tokenizers/src.

namespace spin::data {
namespace {

using json = nlohmann::json;
using Ranges = std::vector<std::pair<size_t, size_t>>;  // byte ranges [begin, end)

// json_quoted(s) without the quotes, for values shown in '...'.
std::string escaped(const std::string& s) {
  const std::string q = json_quoted(s);
  return q.substr(1, q.size() - 2);
}

// ---------------------------------------------------------------------------------------------
// JSON access with errors of one line naming the file and the field, e.g.
// "tokenizer.json: pre_tokenizer.pretokenizers[1].behavior must be a string, not number".

class Field {
 public:
  Field(const std::string& file, const json* value, std::string path)
      : file_(&file), value_(value), path_(std::move(path)) {}

  bool null() const { return value_ == nullptr || value_->is_null(); }  // absent or null
  const std::string& path() const { return path_; }

  Field operator[](const std::string& key) const {
    expect(value_ && value_->is_object(), "an object");
    const auto it = value_->find(key);
    return Field(*file_, it == value_->end() ? nullptr : &*it, path_.empty() ? key : path_ + "." + key);
  }
  Field operator[](size_t i) const { return Field(*file_, &(*value_)[i], path_ + "[" + std::to_string(i) + "]"); }
  size_t size() const {  // of an array
    expect(value_ && value_->is_array(), "an array");
    return value_->size();
  }
  const json& value() const {
    expect(value_ != nullptr, "present");
    return *value_;
  }
  std::string string() const {
    expect(value_ && value_->is_string(), "a string");
    return value_->get<std::string>();
  }
  std::string string_or(const std::string& fallback) const { return null() ? fallback : string(); }
  bool boolean() const {
    expect(value_ && value_->is_boolean(), "true or false");
    return value_->get<bool>();
  }
  bool boolean_or(bool fallback) const { return null() ? fallback : boolean(); }
  int64_t integer(int64_t lo, int64_t hi) const {
    expect(value_ && (value_->is_number_integer() || value_->is_number_unsigned()), "an integer");
    const bool in_range = value_->is_number_unsigned() ? value_->get<uint64_t>() <= uint64_t(hi)
                                                        : value_->get<int64_t>() >= lo && value_->get<int64_t>() <= hi;
    if (!in_range) error(" = ", value_->dump(), " is outside [", lo, ", ", hi, "]");
    return value_->get<int64_t>();
  }
  // A single Unicode character, as Rust's `char` fields (Metaspace replacement, Strip content).
  std::string character() const {
    const std::string s = string();
    int32_t i = 0, n = int32_t(s.size());
    UChar32 c = 0;
    if (n > 0) U8_NEXT(s.data(), i, n, c);
    if (n == 0 || c < 0 || i != n) error(" ", json_quoted(s), " must be exactly one character");
    return s;
  }

  template <typename... Args>
  [[noreturn]] void error(const Args&... args) const {
    fail(*file_, ": ", path_.empty() ? "top level" : path_, args...);
  }
  // "X.type 'Whitespace' is not supported (supported: ...)"
  [[noreturn]] void unsupported_type(const std::string& type, const char* supported) const {
    fail(*file_, ": ", path_, ".type '", escaped(type), "' is not supported (supported: ", supported, ")");
  }

 private:
  void expect(bool ok, const char* what) const {
    if (ok) return;
    if (value_ == nullptr) error(" is missing");
    error(" must be ", what, ", not ", value_->type_name());
  }
  const std::string* file_;
  const json* value_;
  std::string path_;
};

// A {"String": s} or {"Regex": r} pattern (normalizer / pre-tokenizer / decoder field `pattern`).
UnicodeRegex parse_pattern(const Field& f, const std::string& file) {
  const Field s = f["String"], r = f["Regex"];
  if (s.null() == r.null()) f.error(" must have exactly one of String and Regex");
  return s.null() ? UnicodeRegex(r.string(), false, file + ": " + r.path())
                  : UnicodeRegex(s.string(), true, file + ": " + s.path());
}

// ---------------------------------------------------------------------------------------------
// Unicode helpers (ICU for every character property).

// Next code point of valid UTF-8 `s` at byte `i` (advanced).
inline UChar32 next_code_point(std::string_view s, size_t& i) {
  int32_t at = int32_t(i);
  UChar32 c;
  U8_NEXT(s.data(), at, int32_t(s.size()), c);
  i = size_t(at);
  return c;
}

inline void append_utf8(std::string& out, UChar32 c) {
  char buf[4];
  int32_t n = 0;
  U8_APPEND_UNSAFE(buf, n, c);
  out.append(buf, size_t(n));
}

// `bytes` with each ill-formed UTF-8 sequence replaced by U+FFFD, one per maximal subpart (as
// Rust's String::from_utf8_lossy and the WHATWG decoder do).
std::string to_valid_utf8(const std::string& bytes) {
  if (find_invalid_utf8(bytes) == std::string::npos) return bytes;
  std::string out;
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    size_t k = 1;
    for (; len > 1 && k < len && i + k < n; ++k) {
      const unsigned char b = s[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
    }
    if (len >= 1 && k == len) {
      out.append(bytes, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(k, 1);
    }
  }
  return out;
}

// Regex crate's Unicode \w (UTS #18): Alphabetic, Mark, Decimal_Number, Connector_Punctuation,
// Join_Control. Used for added tokens' single_word.
bool is_word_char(UChar32 c) {
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) ||
         u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL);
}

UChar32 last_code_point(std::string_view s) {
  int32_t i = int32_t(s.size());
  UChar32 c;
  U8_PREV(s.data(), 0, i, c);
  return c;
}

// GPT-2's byte <-> printable character table (ref: pre_tokenizers/byte_level.rs bytes_char):
// printable Latin-1 bytes map to themselves, the other 68 to U+0100 + n in byte order.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_utf8;
  std::unordered_map<UChar32, unsigned char> char_to_byte;
  ByteLevelTable() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const UChar32 c = printable ? b : 256 + n++;
      append_utf8(byte_to_utf8[b], c);
      char_to_byte[c] = static_cast<unsigned char>(b);
    }
  }
};
const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

// ---------------------------------------------------------------------------------------------
// Normalizers: text -> text, applied to each part of the input between added tokens.

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;
};

struct UnicodeNormalizer : Normalizer {  // NFC, NFD, NFKC, NFKD
  const icu::Normalizer2* form;
  explicit UnicodeNormalizer(const icu::Normalizer2* f) : form(f) {}
  void apply(std::string& text) const override {
    UErrorCode status = U_ZERO_ERROR;
    const icu::StringPiece piece(text.data(), int32_t(text.size()));
    if (form->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return;
    std::string out;
    icu::StringByteSink<std::string> sink(&out, int32_t(text.size()));
    status = U_ZERO_ERROR;
    form->normalizeUTF8(0, piece, sink, nullptr, status);
    SPIN_CHECK(U_SUCCESS(status), "Unicode normalization failed: ", u_errorName(status));
    text.swap(out);
  }
};

struct Prepend : Normalizer {  // ref: normalizers/prepend.rs (nothing is prepended to "")
  std::string prefix;
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix);
  }
};

struct Replace : Normalizer {  // every match replaced by `content` (no group references)
  UnicodeRegex pattern;
  std::string content;
  Replace(UnicodeRegex p, std::string c) : pattern(std::move(p)), content(std::move(c)) {}
  void apply(std::string& text) const override { text = replace_all(text); }
  std::string replace_all(const std::string& text) const {
    Ranges matches;
    pattern.find_all(text, matches);
    if (matches.empty()) return text;
    std::string out;
    size_t last = 0;
    for (const auto& [b, e] : matches) {
      out.append(text, last, b - last);
      out += content;
      last = e;
    }
    out.append(text, last, std::string::npos);
    return out;
  }
};

// Each character lowercased on its own with the full Unicode mapping ('İ' -> "i̇"), as Rust's
// char::to_lowercase in NormalizedString::lowercase: no context, so a final 'Σ' becomes 'σ'.
struct Lowercase : Normalizer {
  void apply(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (static_cast<unsigned char>(text[i]) < 0x80) {
        const char c = text[i++];
        out += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
        continue;
      }
      const size_t begin = i;
      next_code_point(text, i);
      UErrorCode status = U_ZERO_ERROR;
      icu::StringByteSink<std::string> sink(&out);
      icu::CaseMap::utf8ToLower("", 0, icu::StringPiece(text.data() + begin, int32_t(i - begin)), sink, nullptr, status);
      SPIN_CHECK(U_SUCCESS(status), "lowercasing failed: ", u_errorName(status));
    }
    text.swap(out);
  }
};

struct Strip : Normalizer {  // leading / trailing White_Space characters
  bool left = false, right = false;
  void apply(std::string& text) const override {
    size_t begin = 0, end = text.size();
    while (left && begin < end) {
      size_t next = begin;
      if (!u_isUWhiteSpace(next_code_point(text, next))) break;
      begin = next;
    }
    if (right)
      while (end > begin) {
        int32_t i = int32_t(end);
        UChar32 c;
        U8_PREV(text.data(), int32_t(begin), i, c);
        if (!u_isUWhiteSpace(c)) break;
        end = size_t(i);
      }
    text = text.substr(begin, end - begin);
  }
};

void parse_normalizer(const Field& f, const std::string& file, std::vector<std::unique_ptr<Normalizer>>& out,
                      std::string& name) {
  const std::string type = f["type"].string();
  name = type;
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = nullptr;
  if (type == "Sequence") {
    const Field list = f["normalizers"];
    name += "[";
    for (size_t i = 0; i < list.size(); ++i) {
      std::string sub;
      parse_normalizer(list[i], file, out, sub);
      name += (i ? ", " : "") + sub;
    }
    name += "]";
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    form = type == "NFC"    ? icu::Normalizer2::getNFCInstance(status)
           : type == "NFD"  ? icu::Normalizer2::getNFDInstance(status)
           : type == "NFKC" ? icu::Normalizer2::getNFKCInstance(status)
                            : icu::Normalizer2::getNFKDInstance(status);
    SPIN_CHECK(U_SUCCESS(status) && form, file, ": ", f.path(), ": ICU has no ", type, " data: ", u_errorName(status));
    out.push_back(std::make_unique<UnicodeNormalizer>(form));
  } else if (type == "Prepend") {
    auto p = std::make_unique<Prepend>();
    p->prefix = f["prepend"].string();
    out.push_back(std::move(p));
  } else if (type == "Replace") {
    out.push_back(std::make_unique<Replace>(parse_pattern(f["pattern"], file), f["content"].string()));
  } else if (type == "Lowercase") {
    out.push_back(std::make_unique<Lowercase>());
  } else if (type == "Strip") {
    auto s = std::make_unique<Strip>();
    s->left = f["strip_left"].boolean();
    s->right = f["strip_right"].boolean();
    out.push_back(std::move(s));
  } else {
    f.unsupported_type(type, "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Lowercase, Strip");
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: pieces -> smaller pieces (ref: tokenizer/pre_tokenizer.rs, normalizer.rs split).

struct Piece {
  std::string text;
  bool at_start;  // begins the input text (Metaspace prepend_scheme "first")
};

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits `piece` at `matches` (sorted, non-overlapping) the way NormalizedString::split does:
// the text becomes alternating (range, is_match) parts, `invert` flips is_match, `behavior` decides
// what a match becomes; empty parts are dropped.
void split_piece(const Piece& piece, const Ranges& matches, Behavior behavior, bool invert, std::vector<Piece>& out) {
  struct Part {
    size_t begin, end;
    bool match;
  };
  const std::string& s = piece.text;
  std::vector<Part> parts;
  parts.reserve(2 * matches.size() + 1);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev != s.size() || s.empty()) parts.push_back({prev, s.size(), false});
  if (invert)
    for (Part& p : parts) p.match = !p.match;

  std::vector<Part> kept;  // match == true here means "remove"
  kept.reserve(parts.size());
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (const Part& p : parts) kept.push_back({p.begin, p.end, false});
      break;
    case Behavior::Removed:
      kept = parts;
      break;
    case Behavior::Contiguous:
      for (const Part& p : parts) {
        if (p.match == previous_match && !kept.empty()) kept.back().end = p.end;
        else kept.push_back({p.begin, p.end, false});
        previous_match = p.match;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (const Part& p : parts) {
        if (p.match && !previous_match && !kept.empty()) kept.back().end = p.end;
        else kept.push_back({p.begin, p.end, false});
        previous_match = p.match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
        if (p->match && !previous_match && !kept.empty()) kept.back().begin = p->begin;
        else kept.push_back({p->begin, p->end, false});
        previous_match = p->match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  if (out.capacity() < out.size() + kept.size()) out.reserve(std::max(out.size() + kept.size(), 2 * out.capacity()));
  for (const Part& k : kept)
    if (!k.match && k.end > k.begin) out.push_back({s.substr(k.begin, k.end - k.begin), piece.at_start && k.begin == 0});
}

// Byte ranges of each occurrence of `needle` in `s` (non-overlapping, left to right).
void find_string(const std::string& s, const std::string& needle, Ranges& out) {
  out.clear();
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size()))
    out.emplace_back(at, at + needle.size());
}

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

// ref: pre_tokenizers/byte_level.rs
struct ByteLevel : PreTokenizer {
  bool add_prefix_space = false;
  std::unique_ptr<UnicodeRegex> gpt2;  // set with use_regex
  void apply(std::vector<Piece>& pieces) const override {
    const auto& table = byte_level_table().byte_to_utf8;
    std::vector<Piece> split;
    split.reserve(pieces.size());
    Ranges matches;
    for (Piece& p : pieces) {
      if (add_prefix_space && p.text[0] != ' ') p.text.insert(0, " ");
      if (gpt2) {
        gpt2->find_all(p.text, matches);
        split_piece(p, matches, Behavior::Isolated, false, split);
      } else {
        split.push_back(std::move(p));
      }
    }
    for (Piece& p : split) {
      std::string mapped;
      mapped.reserve(p.text.size() + p.text.size() / 2);
      for (unsigned char c : p.text) mapped += table[c];
      p.text.swap(mapped);
    }
    pieces.swap(split);
  }
};

struct Split : PreTokenizer {  // ref: pre_tokenizers/split.rs
  std::unique_ptr<UnicodeRegex> pattern;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    Ranges matches;
    for (const Piece& p : pieces) {
      pattern->find_all(p.text, matches);
      split_piece(p, matches, behavior, invert, out);
    }
    pieces.swap(out);
  }
};

enum class PrependScheme { Always, First, Never };

struct Metaspace : PreTokenizer {  // ref: pre_tokenizers/metaspace.rs
  std::string replacement;
  PrependScheme scheme = PrependScheme::Always;
  bool split = true;
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    Ranges matches;
    for (Piece& p : pieces) {
      std::string text;
      for (char c : p.text) {
        if (c == ' ') text += replacement;
        else text += c;
      }
      if ((scheme == PrependScheme::Always || (scheme == PrependScheme::First && p.at_start)) &&
          text.compare(0, replacement.size(), replacement) != 0)
        text.insert(0, replacement);
      p.text.swap(text);
      if (split) {
        find_string(p.text, replacement, matches);
        split_piece(p, matches, Behavior::MergedWithNext, false, out);
      } else {
        out.push_back(std::move(p));
      }
    }
    pieces.swap(out);
  }
};

// ref: pre_tokenizers/digits.rs; "digit" is Rust's char::is_numeric, the Unicode categories N*.
struct Digits : PreTokenizer {
  UnicodeRegex numeric{"\\p{N}", false, "Digits"};
  bool individual = false;
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    Ranges matches;
    for (const Piece& p : pieces) {
      numeric.find_all(p.text, matches);
      split_piece(p, matches, individual ? Behavior::Isolated : Behavior::Contiguous, false, out);
    }
    pieces.swap(out);
  }
};

PrependScheme parse_prepend_scheme(const Field& f) {
  const Field scheme = f["prepend_scheme"];
  PrependScheme s = PrependScheme::Always;
  if (!scheme.null()) {
    const std::string v = scheme.string();
    if (v == "always") s = PrependScheme::Always;
    else if (v == "first") s = PrependScheme::First;
    else if (v == "never") s = PrependScheme::Never;
    else scheme.error(" '", escaped(v), "' is not one of always, first, never");
  }
  // Older files say add_prefix_space instead; false must come with prepend_scheme never.
  const Field legacy = f["add_prefix_space"];
  if (!legacy.null() && !legacy.boolean()) {
    if (s != PrependScheme::Never && !scheme.null()) legacy.error(" false contradicts prepend_scheme");
    s = PrependScheme::Never;
  }
  return s;
}

void parse_pre_tokenizer(const Field& f, const std::string& file, std::vector<std::unique_ptr<PreTokenizer>>& out,
                         std::string& name) {
  const std::string type = f["type"].string();
  name = type;
  if (type == "Sequence") {
    const Field list = f["pretokenizers"];
    name += "[";
    for (size_t i = 0; i < list.size(); ++i) {
      std::string sub;
      parse_pre_tokenizer(list[i], file, out, sub);
      name += (i ? ", " : "") + sub;
    }
    name += "]";
  } else if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevel>();
    b->add_prefix_space = f["add_prefix_space"].boolean();
    if (f["use_regex"].boolean_or(true))
      b->gpt2 = std::make_unique<UnicodeRegex>(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", false,
          "ByteLevel GPT-2 pattern");
    out.push_back(std::move(b));
  } else if (type == "Split") {
    auto s = std::make_unique<Split>();
    s->pattern = std::make_unique<UnicodeRegex>(parse_pattern(f["pattern"], file));
    const Field behavior = f["behavior"];
    const std::string b = behavior.string();
    if (b == "Removed") s->behavior = Behavior::Removed;
    else if (b == "Isolated") s->behavior = Behavior::Isolated;
    else if (b == "MergedWithPrevious") s->behavior = Behavior::MergedWithPrevious;
    else if (b == "MergedWithNext") s->behavior = Behavior::MergedWithNext;
    else if (b == "Contiguous") s->behavior = Behavior::Contiguous;
    else behavior.error(" '", escaped(b), "' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
    s->invert = f["invert"].boolean();
    out.push_back(std::move(s));
  } else if (type == "Metaspace") {
    auto m = std::make_unique<Metaspace>();
    m->replacement = f["replacement"].character();
    m->scheme = parse_prepend_scheme(f);
    m->split = f["split"].boolean_or(true);
    out.push_back(std::move(m));
  } else if (type == "Digits") {
    auto d = std::make_unique<Digits>();
    d->individual = f["individual_digits"].boolean();
    out.push_back(std::move(d));
  } else {
    f.unsupported_type(type, "Sequence, ByteLevel, Split, Metaspace, Digits");
  }
}

// ---------------------------------------------------------------------------------------------
// Decoders: token strings -> strings, joined at the end (ref: decoders/*.rs).

using Tokens = std::vector<std::string>;

struct Decoder {
  virtual ~Decoder() = default;
  virtual void apply(Tokens& tokens) const = 0;
};

// Every token's characters back to bytes (a token with a character outside the table keeps its
// UTF-8 bytes), all tokens fused into one string, ill-formed UTF-8 replaced.
struct ByteLevelDecoder : Decoder {
  void apply(Tokens& tokens) const override {
    const auto& table = byte_level_table().char_to_byte;
    std::string bytes, token_bytes;
    for (const std::string& t : tokens) {
      token_bytes.clear();
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        const auto it = table.find(next_code_point(t, i));
        if (it == table.end()) all = false;
        else token_bytes += static_cast<char>(it->second);
      }
      bytes += all ? token_bytes : t;
    }
    tokens.assign(1, to_valid_utf8(bytes));
  }
};

// The replacement character becomes a space; in the first token it is dropped unless
// prepend_scheme is never.
struct MetaspaceDecoder : Decoder {
  std::string replacement;
  PrependScheme scheme = PrependScheme::Always;
  void apply(Tokens& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool drop = i == 0 && scheme != PrependScheme::Never;
      std::string out;
      const std::string& t = tokens[i];
      for (size_t at = 0; at < t.size();) {
        if (t.compare(at, replacement.size(), replacement) == 0) {
          if (!drop) out += ' ';
          at += replacement.size();
        } else {
          out += t[at++];
        }
      }
      tokens[i].swap(out);
    }
  }
};

struct ReplaceDecoder : Decoder {
  Replace replace;
  explicit ReplaceDecoder(Replace r) : replace(std::move(r)) {}
  void apply(Tokens& tokens) const override {
    for (std::string& t : tokens) t = replace.replace_all(t);
  }
};

// Runs of <0xXX> tokens become the text of those bytes; a run that is not valid UTF-8 becomes one
// U+FFFD per byte.
struct ByteFallbackDecoder : Decoder {
  void apply(Tokens& tokens) const override {
    Tokens out;
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (find_invalid_utf8(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        const unsigned byte = unsigned(std::strtoul(t.substr(3, 2).c_str(), nullptr, 16));
        run += static_cast<char>(byte);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

struct FuseDecoder : Decoder {
  void apply(Tokens& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

// Up to `start` leading and `stop` trailing `content` characters removed from every token.
struct StripDecoder : Decoder {
  std::string content;
  size_t start = 0, stop = 0;
  void apply(Tokens& tokens) const override {
    for (std::string& t : tokens) {
      size_t begin = 0, end = t.size();
      for (size_t i = 0; i < start && begin < end && t.compare(begin, content.size(), content) == 0; ++i)
        begin += content.size();
      for (size_t i = 0; i < stop && end >= begin + content.size() &&
                         t.compare(end - content.size(), content.size(), content) == 0;
           ++i)
        end -= content.size();
      t = t.substr(begin, end - begin);
    }
  }
};

// end_of_word_suffix -> a space (nothing after the last token).
struct BpeDecoder : Decoder {
  std::string suffix;
  void apply(Tokens& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t at = 0; at < t.size();) {
        if (!suffix.empty() && t.compare(at, suffix.size(), suffix) == 0) {
          out += i + 1 == tokens.size() ? "" : " ";
          at += suffix.size();
        } else {
          out += t[at++];
        }
      }
      tokens[i].swap(out);
    }
  }
};

void parse_decoder(const Field& f, const std::string& file, std::vector<std::unique_ptr<Decoder>>& out,
                   std::string& name) {
  const std::string type = f["type"].string();
  name = type;
  if (type == "Sequence") {
    const Field list = f["decoders"];
    name += "[";
    for (size_t i = 0; i < list.size(); ++i) {
      std::string sub;
      parse_decoder(list[i], file, out, sub);
      name += (i ? ", " : "") + sub;
    }
    name += "]";
  } else if (type == "ByteLevel") {
    out.push_back(std::make_unique<ByteLevelDecoder>());
  } else if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = f["replacement"].character();
    m->scheme = parse_prepend_scheme(f);
    out.push_back(std::move(m));
  } else if (type == "Replace") {
    out.push_back(std::make_unique<ReplaceDecoder>(Replace(parse_pattern(f["pattern"], file), f["content"].string())));
  } else if (type == "ByteFallback") {
    out.push_back(std::make_unique<ByteFallbackDecoder>());
  } else if (type == "Fuse") {
    out.push_back(std::make_unique<FuseDecoder>());
  } else if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = f["content"].character();
    s->start = size_t(f["start"].integer(0, 1 << 30));
    s->stop = size_t(f["stop"].integer(0, 1 << 30));
    out.push_back(std::move(s));
  } else if (type == "BPEDecoder") {
    auto b = std::make_unique<BpeDecoder>();
    b->suffix = f["suffix"].string_or("</w>");
    out.push_back(std::move(b));
  } else {
    f.unsupported_type(type, "Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder");
  }
}

// ---------------------------------------------------------------------------------------------
// Added tokens (ref: tokenizer/added_vocabulary.rs).

struct AddedToken {
  std::string content;
  int id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
};

struct Segment {
  size_t begin, end;
  int token;  // index into the added tokens, -1: ordinary text
};

// Leftmost-longest matching of a set of strings (a byte trie), then AddedVocabulary::find_matches'
// single_word / lstrip / rstrip rules.
class AddedTokenSplitter {
 public:
  void add(const std::string& pattern, int token) {
    if (pattern.empty()) return;
    int node = 0;
    for (unsigned char c : pattern) {
      auto& next = nodes_[node].next;
      auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == c; });
      if (it == next.end()) {
        next.emplace_back(c, int(nodes_.size()));
        node = int(nodes_.size());
        nodes_.emplace_back();
      } else {
        node = it->second;
      }
    }
    nodes_[node].token = token;
    first_[static_cast<unsigned char>(pattern[0])] = true;
    empty_ = false;
  }

  void split(std::string_view text, const std::vector<AddedToken>& tokens, std::vector<Segment>& out) const {
    out.clear();
    if (empty_ || text.empty()) {
      out.push_back({0, text.size(), -1});
      return;
    }
    size_t offset = 0;  // end of the last segment
    for (size_t i = 0; i < text.size();) {
      const auto [length, token] = longest_match(text, i);
      if (token < 0) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + length;
      i = stop;
      const AddedToken& t = tokens[size_t(token)];
      if (t.single_word && ((start > 0 && is_word_char(last_code_point(text.substr(0, start)))) ||
                            (stop < text.size() && is_word_char(first_code_point(text.substr(stop))))))
        continue;
      if (t.lstrip) {
        size_t s = start;
        while (s > 0) {
          int32_t at = int32_t(s);
          UChar32 c;
          U8_PREV(text.data(), 0, at, c);
          if (!u_isUWhiteSpace(c)) break;
          s = size_t(at);
        }
        start = std::max(s, offset);
      }
      if (t.rstrip)
        for (size_t at = stop; at < text.size(); stop = at)
          if (!u_isUWhiteSpace(next_code_point(text, at))) break;
      if (offset < start) out.push_back({offset, start, -1});
      out.push_back({start, stop, token});
      offset = stop;
    }
    if (offset != text.size()) out.push_back({offset, text.size(), -1});
  }

 private:
  static UChar32 first_code_point(std::string_view s) {
    size_t i = 0;
    return next_code_point(s, i);
  }
  std::pair<size_t, int> longest_match(std::string_view text, size_t at) const {
    if (!first_[static_cast<unsigned char>(text[at])]) return {0, -1};
    std::pair<size_t, int> best{0, -1};
    int node = 0;
    for (size_t k = at; k < text.size(); ++k) {
      const auto& next = nodes_[node].next;
      auto it = std::find_if(next.begin(), next.end(),
                             [&](const auto& e) { return e.first == static_cast<unsigned char>(text[k]); });
      if (it == next.end()) break;
      node = it->second;
      if (nodes_[node].token >= 0) best = {k + 1 - at, nodes_[node].token};
    }
    return best;
  }

  struct Node {
    std::vector<std::pair<unsigned char, int>> next;
    int token = -1;
  };
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_{};
  bool empty_ = true;
};

// ---------------------------------------------------------------------------------------------
// The BPE model (ref: models/bpe/model.rs merge_word, models/bpe/word.rs merge_all).

struct Bpe {
  std::unordered_map<std::string, int> vocab;
  struct Merge {
    uint32_t rank;
    int new_id;
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> rank, merged id
  std::vector<int> bmp_char_id;                // code point < 0x10000 -> id of that one-character token
  std::string unk_token;                       // "" if none
  std::string prefix, suffix;                  // continuing_subword_prefix, end_of_word_suffix
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::array<int, 256> byte_id;  // id of <0xXX>, -1 if absent
  std::string file;

  static uint64_t pair_key(int a, int b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

  int unk_id() const {
    const auto it = vocab.find(unk_token);
    SPIN_CHECK(it != vocab.end(), file, ": model.unk_token ", json_quoted(unk_token),
               " is needed for a character outside the vocabulary but is not in model.vocab");
    return it->second;
  }

  // Appends the ids of one pre-token.
  void tokenize(const std::string& word, std::vector<int>& out) const {
    struct Symbol {
      int id, prev, next;
      bool alive;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    auto add = [&](int id) {
      const int n = int(symbols.size());
      if (n > 0) symbols[size_t(n - 1)].next = n;
      symbols.push_back({id, n - 1, -1, true});
    };
    int pending_unk = -1;  // an unknown character's id waiting to be emitted (fused when fuse_unk)
    std::string piece;
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      const UChar32 c = next_code_point(word, i);
      const bool first = begin == 0, last = i == word.size();
      // The spelling looked up: the character, with continuing_subword_prefix unless it starts
      // the word and end_of_word_suffix if it ends it.
      const bool plain = (first || prefix.empty()) && (!last || suffix.empty());
      auto spell = [&] {
        piece.assign(first ? "" : prefix);
        piece.append(word, begin, i - begin);
        if (last) piece += suffix;
      };
      int id = -1;
      if (plain && c < 0x10000) {
        id = bmp_char_id[size_t(c)];
      } else {
        spell();
        const auto it = vocab.find(piece);
        if (it != vocab.end()) id = it->second;
      }
      if (id >= 0) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        add(id);
        continue;
      }
      if (byte_fallback) {
        spell();
        bool all = true;
        for (unsigned char b : piece) all = all && byte_id[b] >= 0;
        if (all) {
          // As in the Rust model, a pending unknown is emitted only at the next known character.
          for (unsigned char b : piece) add(byte_id[b]);
          continue;
        }
      }
      if (!unk_token.empty()) {
        if (pending_unk >= 0 && !fuse_unk) add(pending_unk);
        pending_unk = unk_id();
      }
      // Without unk_token the character is dropped, as in the Rust model.
    }
    if (pending_unk >= 0) add(pending_unk);

    // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is left; queue entries
    // that no longer describe the current pair are skipped when popped.
    struct Candidate {
      uint32_t rank, pos;
      int new_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    auto push = [&](int left) {
      const Symbol& l = symbols[size_t(left)];
      if (l.next < 0) return;
      const auto it = merges.find(pair_key(l.id, symbols[size_t(l.next)].id));
      if (it != merges.end()) queue.push({it->second.rank, uint32_t(left), it->second.new_id});
    };
    for (int s = 0; s + 1 < int(symbols.size()); ++s) push(s);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& l = symbols[top.pos];
      if (!l.alive || l.next < 0) continue;
      Symbol& r = symbols[size_t(l.next)];
      const auto it = merges.find(pair_key(l.id, r.id));
      if (it == merges.end() || it->second.new_id != top.new_id) continue;
      l.id = top.new_id;
      l.next = r.next;
      r.alive = false;
      if (r.next >= 0) symbols[size_t(r.next)].prev = int(top.pos);
      if (l.prev >= 0) push(l.prev);
      push(int(top.pos));
    }
    for (const Symbol& s : symbols)
      if (s.alive) out.push_back(s.id);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct HfTokenizer::Impl {
  std::string path;
  Bpe bpe;
  std::vector<AddedToken> added;
  AddedTokenSplitter raw_splitter, normalized_splitter;  // normalized: false / true tokens
  std::unordered_map<std::string, int> added_ids;        // content -> id
  std::vector<std::unique_ptr<Normalizer>> normalizers;   // applied in order (Sequences flattened)
  std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers;
  std::vector<std::unique_ptr<Decoder>> decoders;
  std::string normalizer_name = "-", pre_tokenizer_name = "-", decoder_name = "-";
  std::vector<std::string> id_to_token;  // by id; "" where no token
  std::vector<char> has_token, special;   // by id
  // Word cache: pre-token -> its ids, for pre-tokens shorter than kMaxCachedBytes, until
  // kMaxCachedWords are stored.
  static constexpr size_t kMaxCachedBytes = 256, kMaxCachedWords = size_t(1) << 18;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;  // -> [offset, count)
  mutable std::vector<int> cache_ids;

  // The pipeline up to the model: added tokens, normalizer, pre-tokenizer. Calls on_token(index)
  // for each added token (an index into `added`) and on_word(text) for each pre-token, in order.
  template <typename OnToken, typename OnWord>
  void walk(const std::string& text, OnToken on_token, OnWord on_word) const {
    const size_t bad = find_invalid_utf8(text);
    SPIN_CHECK(bad == std::string::npos, "text to tokenize is not valid UTF-8 at byte offset ", bad);
    std::vector<Segment> raw, normalized;
    std::vector<Piece> pieces;
    raw_splitter.split(text, added, raw);
    for (const Segment& r : raw) {
      if (r.token >= 0) {
        on_token(size_t(r.token));
        continue;
      }
      std::string part = text.substr(r.begin, r.end - r.begin);
      if (part.empty()) continue;
      normalize(part);
      normalized_splitter.split(part, added, normalized);
      for (const Segment& n : normalized) {
        if (n.token >= 0) {
          on_token(size_t(n.token));
          continue;
        }
        if (n.end == n.begin) continue;
        pieces.clear();
        pieces.push_back({part.substr(n.begin, n.end - n.begin), r.begin == 0 && n.begin == 0});
        for (const auto& p : pre_tokenizers) p->apply(pieces);
        for (const Piece& p : pieces) on_word(p.text);
      }
    }
  }

  void normalize(std::string& text) const {
    for (const auto& n : normalizers) n->apply(text);
  }

  // Appends the ids of one pre-token: the cached result, else the whole pre-token when
  // ignore_merges and it is in the vocabulary, else BPE.
  void model(const std::string& word, std::vector<int>& out) const {
    const bool cacheable = word.size() < kMaxCachedBytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      const auto it = cache.find(word);
      if (it != cache.end()) {
        out.insert(out.end(), cache_ids.begin() + it->second.first,
                   cache_ids.begin() + it->second.first + it->second.second);
        return;
      }
    }
    const size_t before = out.size();
    const auto whole = bpe.ignore_merges ? bpe.vocab.find(word) : bpe.vocab.end();
    if (whole != bpe.vocab.end()) out.push_back(whole->second);
    else bpe.tokenize(word, out);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() < kMaxCachedWords && !cache.count(word)) {
        cache.emplace(word, std::make_pair(uint32_t(cache_ids.size()), uint32_t(out.size() - before)));
        cache_ids.insert(cache_ids.end(), out.begin() + std::ptrdiff_t(before), out.end());
      }
    }
  }
};

HfTokenizer::HfTokenizer(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  std::ifstream in(path, std::ios::binary);
  SPIN_CHECK(in, path, ": cannot open tokenizer.json");
  const json doc = parse_untrusted_json(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), path);
  const Field root(path, &doc, "");
  root["model"];  // the top level must be an object

  // ---- model
  const Field model = root["model"];
  const std::string type = model["type"].string();
  if (type != "BPE") fail(path, ": model.type '", escaped(type), "' is not supported (supported: BPE)");
  const Field dropout = model["dropout"];
  if (!dropout.null() && !(dropout.value().is_number() && dropout.value().get<double>() == 0))
    dropout.error(" = ", dropout.value().dump(), ": BPE dropout makes encoding random; only null (or 0) is supported");
  Bpe& bpe = m.bpe;
  bpe.file = path;
  bpe.byte_fallback = model["byte_fallback"].boolean_or(false);
  bpe.fuse_unk = model["fuse_unk"].boolean_or(false);
  bpe.ignore_merges = model["ignore_merges"].boolean_or(false);
  bpe.unk_token = model["unk_token"].string_or("");
  bpe.prefix = model["continuing_subword_prefix"].string_or("");
  bpe.suffix = model["end_of_word_suffix"].string_or("");

  constexpr int64_t kMaxId = (int64_t(1) << 21) - 1;  // ids are dense; the largest vocabularies have ~260k
  const Field vocab = model["vocab"];
  if (!vocab.value().is_object()) vocab.error(" must be an object of token -> id, not ", vocab.value().type_name());
  bpe.vocab.reserve(vocab.value().size());
  for (auto it = vocab.value().begin(); it != vocab.value().end(); ++it) {
    const std::string& token = it.key();
    const int id = int(Field(path, &it.value(), "model.vocab[" + json_quoted(token) + "]").integer(0, kMaxId));
    if (size_t(id) >= m.id_to_token.size()) m.id_to_token.resize(size_t(id) + 1), m.has_token.resize(size_t(id) + 1);
    if (m.has_token[size_t(id)])
      fail(path, ": model.vocab: id ", id, " is used by both ", json_quoted(m.id_to_token[size_t(id)]), " and ", json_quoted(token));
    m.id_to_token[size_t(id)] = token;
    m.has_token[size_t(id)] = 1;
    bpe.vocab.emplace(token, id);
  }
  bpe.bmp_char_id.assign(0x10000, -1);
  bpe.byte_id.fill(-1);
  for (const auto& [token, id] : bpe.vocab) {
    size_t i = 0;
    const UChar32 c = next_code_point(token, i);
    if (i == token.size() && c >= 0 && c < 0x10000) bpe.bmp_char_id[size_t(c)] = id;
    if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') {
      const unsigned byte = unsigned(std::strtoul(token.substr(3, 2).c_str(), nullptr, 16));
      char canonical[8];
      std::snprintf(canonical, sizeof canonical, "<0x%02X>", byte & 0xFF);
      if (token == canonical) bpe.byte_id[byte] = id;  // the spelling byte_fallback looks up
    }
  }

  const Field merges = model["merges"];
  const size_t n_merges = merges.size();
  bpe.merges.reserve(n_merges);
  for (size_t i = 0; i < n_merges; ++i) {
    const Field merge = merges[i];
    std::string a, b;
    if (merge.value().is_string()) {  // "a b"
      const std::string s = merge.string();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        merge.error(" ", json_quoted(s), " is not two tokens separated by one space");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (merge.value().is_array() && merge.size() == 2) {  // ["a", "b"]
      a = merge[0].string();
      b = merge[1].string();
    } else {
      merge.error(" must be a string \"a b\" or a pair [\"a\", \"b\"], not ", merge.value().dump().substr(0, 40));
    }
    const auto ia = bpe.vocab.find(a), ib = bpe.vocab.find(b);
    if (ia == bpe.vocab.end()) merge.error(": token ", json_quoted(a), " is not in model.vocab");
    if (ib == bpe.vocab.end()) merge.error(": token ", json_quoted(b), " is not in model.vocab");
    if (b.size() < bpe.prefix.size()) merge.error(": token ", json_quoted(b), " is shorter than continuing_subword_prefix");
    const std::string merged = a + b.substr(bpe.prefix.size());
    const auto im = bpe.vocab.find(merged);
    if (im == bpe.vocab.end()) merge.error(": the merged token ", json_quoted(merged), " is not in model.vocab");
    // A later duplicate replaces an earlier one, as when the Rust model collects its merge map.
    bpe.merges[Bpe::pair_key(ia->second, ib->second)] = {uint32_t(i), im->second};
  }

  // ---- normalizer, pre-tokenizer, decoder (before the added tokens: normalized ones need it)
  const Field normalizer = root["normalizer"], pre_tokenizer = root["pre_tokenizer"], decoder = root["decoder"];
  if (!normalizer.null()) parse_normalizer(normalizer, path, m.normalizers, m.normalizer_name);
  if (!pre_tokenizer.null()) parse_pre_tokenizer(pre_tokenizer, path, m.pre_tokenizers, m.pre_tokenizer_name);
  if (!decoder.null()) parse_decoder(decoder, path, m.decoders, m.decoder_name);

  // ---- added tokens
  const Field added = root["added_tokens"];
  const size_t n_added = added.null() ? 0 : added.size();
  for (size_t i = 0; i < n_added; ++i) {
    const Field t = added[i];
    AddedToken token;
    token.content = t["content"].string();
    token.id = int(t["id"].integer(0, kMaxId));
    token.special = t["special"].boolean_or(false);
    token.lstrip = t["lstrip"].boolean_or(false);
    token.rstrip = t["rstrip"].boolean_or(false);
    token.single_word = t["single_word"].boolean_or(false);
    token.normalized = t["normalized"].boolean_or(!token.special);
    if (token.content.empty()) t["content"].error(" is empty");
    const auto in_vocab = bpe.vocab.find(token.content);
    if (in_vocab != bpe.vocab.end() && in_vocab->second != token.id)
      t.error(": ", json_quoted(token.content), " has id ", token.id, " but model.vocab gives it ", in_vocab->second);
    const size_t id = size_t(token.id);
    if (id >= m.id_to_token.size()) m.id_to_token.resize(id + 1), m.has_token.resize(id + 1);
    m.id_to_token[id] = token.content;  // an added token's spelling wins for decoding
    m.has_token[id] = 1;
    m.added_ids[token.content] = token.id;
    const int index = int(m.added.size());
    if (token.normalized) {
      std::string pattern = token.content;
      m.normalize(pattern);
      m.normalized_splitter.add(pattern, index);
    } else {
      m.raw_splitter.add(token.content, index);
    }
    m.added.push_back(std::move(token));
  }
  m.special.assign(m.id_to_token.size(), 0);
  for (const AddedToken& t : m.added)
    if (t.special) m.special[size_t(t.id)] = 1;
}

HfTokenizer::~HfTokenizer() = default;
HfTokenizer::HfTokenizer(HfTokenizer&&) noexcept = default;
HfTokenizer& HfTokenizer::operator=(HfTokenizer&&) noexcept = default;

std::vector<int> HfTokenizer::encode(const std::string& text) const {
  const Impl& m = *impl_;
  std::vector<int> ids;
  ids.reserve(text.size() / 3);
  m.walk(
      text, [&](size_t token) { ids.push_back(m.added[token].id); }, [&](const std::string& word) { m.model(word, ids); });
  return ids;
}

std::vector<std::string> HfTokenizer::pre_tokenize(const std::string& text) const {
  const Impl& m = *impl_;
  std::vector<std::string> words;
  m.walk(
      text, [&](size_t token) { words.push_back(m.added[token].content); },
      [&](const std::string& word) { words.push_back(word); });
  return words;
}

std::string HfTokenizer::decode(const std::vector<int>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  Tokens tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    SPIN_CHECK(id >= 0 && id < vocab_size() && m.has_token[size_t(id)], m.path, ": token id ", id,
               id >= 0 && id < vocab_size() ? " has no token" : cat(" is outside [0, ", vocab_size(), ")"));
    if (skip_special_tokens && m.special[size_t(id)]) continue;
    tokens.push_back(m.id_to_token[size_t(id)]);
  }
  if (m.decoders.empty()) {  // the Rust tokenizer joins tokens with spaces when there is no decoder
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (const auto& d : m.decoders) d->apply(tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

int HfTokenizer::vocab_size() const { return int(impl_->id_to_token.size()); }

int HfTokenizer::token_to_id(const std::string& token) const {
  const auto a = impl_->added_ids.find(token);
  if (a != impl_->added_ids.end()) return a->second;
  const auto v = impl_->bpe.vocab.find(token);
  return v == impl_->bpe.vocab.end() ? -1 : v->second;
}

const std::string& HfTokenizer::id_to_token(int id) const {
  static const std::string none;
  return id >= 0 && id < vocab_size() ? impl_->id_to_token[size_t(id)] : none;
}

bool HfTokenizer::is_special(int id) const { return id >= 0 && id < vocab_size() && impl_->special[size_t(id)]; }

const std::string& HfTokenizer::path() const { return impl_->path; }

std::string HfTokenizer::summary() const {
  const Impl& m = *impl_;
  return cat("BPE, ", vocab_size(), " ids (", m.added.size(), " added), normalizer ", m.normalizer_name,
             ", pre_tokenizer ", m.pre_tokenizer_name, ", decoder ", m.decoder_name,
             m.bpe.byte_fallback ? ", byte_fallback" : "", m.bpe.ignore_merges ? ", ignore_merges" : "");
}

}  // namespace spin::data
