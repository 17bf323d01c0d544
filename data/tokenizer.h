// One interface over the tokenizers spin-calib reads, and where BOS/EOS come from.
//
//   auto tok = data::open_tokenizer(path);  // tokenizer.json, tokenizer.model or a model directory
//   std::vector<int> ids = tok->encode(text);          // no BOS/EOS
//   if (tok->bos_id() >= 0) ids.insert(ids.begin(), tok->bos_id());
//   std::cerr << tok->describe() << "\n";               // file, kind, vocab size, BOS/EOS and their source
//
// A directory gives its tokenizer.json (data/hf_tokenizer.h) if it has one, else its
// tokenizer.model (data/sentencepiece_bpe.h). A file is a tokenizer.json if its first non-blank
// byte is '{', else a SentencePiece model.
//
// BOS/EOS (find_bos_eos) come from the files next to the tokenizer, in this order:
//   1. tokenizer_config.json: bos_token / eos_token, a token string or {"content": "..."},
//      looked up in the tokenizer; null means "none" and ends the search for that token;
//      add_bos_token, when present, says whether Hugging Face puts BOS in front of a text;
//   2. config.json: bos_token_id / eos_token_id, an integer or a list (the first is taken);
//   3. the tokenizer itself: a SentencePiece model's trainer_spec bos_id / eos_id (a tokenizer.json
//      names none).
// source() says which, e.g. "BOS <|begin_of_text|> = 128000 from tokenizer_config.json bos_token;
// EOS <|eot_id|> = 128009 from tokenizer_config.json eos_token (config.json eos_token_id: 128001)".
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace spin::data {

struct BosEos {
  int bos_id = -1;              // -1: none
  int eos_id = -1;              // -1: none
  std::optional<bool> add_bos;  // tokenizer_config.json add_bos_token, when the file says
  std::string bos_source, eos_source;  // e.g. "<s> = 1 from tokenizer_config.json bos_token"
  // One line: "BOS <bos_source>; EOS <eos_source>[; add_bos_token false]".
  std::string source() const;
};

// BOS/EOS of the tokenizer in directory `dir` from tokenizer_config.json and config.json there, as
// described above; `fallback` (with its sources filled in) stands for step 3. `token_to_id` maps a
// token string to its id (-1: unknown); a named token that is unknown, or an id outside
// [0, vocab_size), is an error naming the file and the field.
BosEos find_bos_eos(const std::filesystem::path& dir, const std::function<int(const std::string&)>& token_to_id,
                    int vocab_size, const BosEos& fallback = {});

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, without BOS/EOS.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  // Text of `ids`; special / control tokens (BOS, EOS, ...) decode to nothing.
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual int vocab_size() const = 0;
  // Id of the token spelled `token`, or -1.
  virtual int token_to_id(const std::string& token) const = 0;

  int bos_id() const { return bos_eos_.bos_id; }  // -1: none
  int eos_id() const { return bos_eos_.eos_id; }  // -1: none
  const BosEos& bos_eos() const { return bos_eos_; }
  // The tokenizer file read (inside the directory when a directory was given).
  const std::string& path() const { return path_; }
  // One line: "<path>: <kind and summary>; BOS ...; EOS ...".
  std::string describe() const;
  // Whether a document gets BOS in front: `asked` (a tool's --bos / --no-bos) when given, else
  // bos_eos().add_bos when tokenizer_config.json says, else whether there is a BOS. BOS asked for
  // (by the flag or by add_bos_token) when there is none is a spin::Error naming path().
  bool use_bos(std::optional<bool> asked) const;

 protected:
  virtual std::string summary() const = 0;
  std::string path_;
  BosEos bos_eos_;
};

// The tokenizer file of model directory `dir`: its tokenizer.json, else its tokenizer.model, else "".
std::filesystem::path find_tokenizer_file(const std::filesystem::path& dir);

// Opens a tokenizer.json, a tokenizer.model or a model directory (see above). Errors name the file.
std::unique_ptr<Tokenizer> open_tokenizer(const std::string& path);

}  // namespace spin::data
