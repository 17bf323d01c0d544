#include "data/tokenizer.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "data/hf_tokenizer.h"
#include "data/sentencepiece_bpe.h"
#include "src/base/check.h"
#include "src/base/json_input.h"

namespace spin::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  SPIN_CHECK(in, file.string(), ": cannot open");
  json doc = parse_untrusted_json(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), file.string());
  SPIN_CHECK(doc.is_object(), file.string(), ": must be a JSON object, not ", doc.type_name());
  return doc;
}

struct Which {
  const char* name;      // "BOS"
  const char* token;     // tokenizer_config.json key
  const char* id;        // config.json key
  int BosEos::*value;
  std::string BosEos::*source;
};
const Which kWhich[] = {{"BOS", "bos_token", "bos_token_id", &BosEos::bos_id, &BosEos::bos_source},
                        {"EOS", "eos_token", "eos_token_id", &BosEos::eos_id, &BosEos::eos_source}};

class HfJsonTokenizer : public Tokenizer {
 public:
  explicit HfJsonTokenizer(const std::string& path) : tok_(path) { path_ = path; }
  std::vector<int> encode(const std::string& text) const override { return tok_.encode(text); }
  std::string decode(const std::vector<int>& ids) const override { return tok_.decode(ids); }
  int vocab_size() const override { return tok_.vocab_size(); }
  int token_to_id(const std::string& token) const override { return tok_.token_to_id(token); }
  void set_bos_eos(const BosEos& b) { bos_eos_ = b; }

 protected:
  std::string summary() const override { return "Hugging Face tokenizer.json, " + tok_.summary(); }

 private:
  HfTokenizer tok_;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : sp_(path) { path_ = path; }
  std::vector<int> encode(const std::string& text) const override { return sp_.encode(text); }
  std::string decode(const std::vector<int>& ids) const override { return sp_.decode(ids); }
  int vocab_size() const override { return sp_.vocab_size(); }
  int token_to_id(const std::string& token) const override { return sp_.piece_to_id(token); }
  void set_bos_eos(const BosEos& b) { bos_eos_ = b; }
  const SentencePieceBpe& model() const { return sp_; }

 protected:
  std::string summary() const override { return cat("SentencePiece BPE tokenizer.model, ", sp_.vocab_size(), " pieces"); }

 private:
  SentencePieceBpe sp_;
};

}  // namespace

std::string BosEos::source() const {
  return cat("BOS ", bos_source, "; EOS ", eos_source,
             add_bos ? (*add_bos ? "; add_bos_token true" : "; add_bos_token false") : "");
}

BosEos find_bos_eos(const fs::path& dir, const std::function<int(const std::string&)>& token_to_id, int vocab_size,
                    const BosEos& fallback) {
  BosEos r = fallback;
  for (const Which& w : kWhich)
    if ((r.*w.source).empty()) r.*w.source = "none named (no tokenizer_config.json or config.json entry)";
  bool named[2] = {false, false};  // by tokenizer_config.json

  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::is_regular_file(tc)) {
    const json doc = read_json(tc);
    for (int k = 0; k < 2; ++k) {
      const Which& w = kWhich[k];
      const auto it = doc.find(w.token);
      if (it == doc.end()) continue;
      named[k] = true;
      if (it->is_null()) {
        r.*w.value = -1;
        r.*w.source = cat("none: tokenizer_config.json ", w.token, " is null");
        continue;
      }
      const json* content = &*it;
      if (it->is_object()) {
        const auto c = it->find("content");
        SPIN_CHECK(c != it->end(), tc.string(), ": ", w.token, " is an object without \"content\"");
        content = &*c;
      }
      SPIN_CHECK(content->is_string(), tc.string(), ": ", w.token, " must be a token string or {\"content\": ...}, not ",
                 content->type_name());
      const std::string name = content->get<std::string>();
      const int id = token_to_id(name);
      SPIN_CHECK(id >= 0, tc.string(), ": ", w.token, " ", json_quoted(name), " is not a token of the tokenizer");
      r.*w.value = id;
      r.*w.source = cat(name, " = ", id, " from tokenizer_config.json ", w.token);
    }
    const auto add = doc.find("add_bos_token");
    if (add != doc.end() && !add->is_null()) {
      SPIN_CHECK(add->is_boolean(), tc.string(), ": add_bos_token must be true or false, not ", add->type_name());
      r.add_bos = add->get<bool>();
    }
  }

  const fs::path cfg = dir / "config.json";
  if (fs::is_regular_file(cfg)) {
    const json doc = read_json(cfg);
    for (int k = 0; k < 2; ++k) {
      const Which& w = kWhich[k];
      const auto it = doc.find(w.id);
      if (it == doc.end() || it->is_null()) continue;
      const bool list = it->is_array();
      SPIN_CHECK(!list || !it->empty(), cfg.string(), ": ", w.id, " is an empty list");
      const json& first = list ? it->front() : *it;
      SPIN_CHECK(first.is_number_integer() && first.get<int64_t>() >= 0 && first.get<int64_t>() < vocab_size,
                 cfg.string(), ": ", w.id, " ", first.dump(), " is not a token id in [0, ", vocab_size, ")");
      const int id = first.get<int>();
      const std::string which = list ? cat(" (the first of ", it->dump(), ")") : "";
      if (named[k]) {
        if (id != r.*w.value) r.*w.source += cat(" (config.json ", w.id, ": ", it->dump(), ")");
      } else {
        r.*w.value = id;
        r.*w.source = cat(id, " from config.json ", w.id, which);
      }
    }
  }
  return r;
}

std::string Tokenizer::describe() const { return cat(path_, ": ", summary(), "; ", bos_eos_.source()); }

bool Tokenizer::use_bos(std::optional<bool> asked) const {
  if (asked) {
    SPIN_CHECK(!*asked || bos_id() >= 0, path_, ": the tokenizer has no BOS (", bos_eos_.bos_source, "); use --no-bos");
    return *asked;
  }
  if (!bos_eos_.add_bos) return bos_id() >= 0;
  SPIN_CHECK(!*bos_eos_.add_bos || bos_id() >= 0, path_, ": tokenizer_config.json add_bos_token is true, but there is no BOS (",
             bos_eos_.bos_source, "); use --no-bos");
  return *bos_eos_.add_bos;
}

fs::path find_tokenizer_file(const fs::path& dir) {
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (fs::is_regular_file(dir / name)) return dir / name;
  return {};
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& path) {
  fs::path file = path;
  SPIN_CHECK(fs::exists(file), path, ": no such tokenizer file or model directory");
  if (fs::is_directory(file)) {
    file = find_tokenizer_file(file);
    SPIN_CHECK(!file.empty(), path, ": the directory has neither tokenizer.json nor tokenizer.model");
  }
  // A tokenizer.json is a JSON object (after blanks or a UTF-8 byte order mark); a tokenizer.model
  // is a protobuf, whose first byte is a field tag, never '{'.
  char first = 0;
  {
    std::ifstream in(file, std::ios::binary);
    SPIN_CHECK(in, file.string(), ": cannot open tokenizer");
    while (in.get(first) && first != '\0' && std::strchr(" \t\n\r\xEF\xBB\xBF", first) != nullptr) {
    }
  }
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (first == '{') {
    auto tok = std::make_unique<HfJsonTokenizer>(file.string());
    const auto* t = tok.get();
    tok->set_bos_eos(find_bos_eos(dir, [t](const std::string& s) { return t->token_to_id(s); }, tok->vocab_size()));
    return tok;
  }
  auto tok = std::make_unique<SentencePieceTokenizer>(file.string());
  const SentencePieceBpe& sp = tok->model();
  BosEos fallback;
  fallback.bos_id = sp.bos_id();
  fallback.eos_id = sp.eos_id();
  fallback.bos_source = sp.bos_id() >= 0 ? cat(sp.bos_id(), " from tokenizer.model trainer_spec bos_id")
                                         : "none: tokenizer.model trainer_spec bos_id is -1";
  fallback.eos_source = sp.eos_id() >= 0 ? cat(sp.eos_id(), " from tokenizer.model trainer_spec eos_id")
                                         : "none: tokenizer.model trainer_spec eos_id is -1";
  const auto* t = tok.get();
  tok->set_bos_eos(
      find_bos_eos(dir, [t](const std::string& s) { return t->token_to_id(s); }, tok->vocab_size(), fallback));
  return tok;
}

}  // namespace spin::data
