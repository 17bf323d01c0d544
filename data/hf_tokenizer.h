// A Hugging Face tokenizers BPE tokenizer read from tokenizer.json (Llama-3, Qwen2/2.5/3, Mistral,
// GPT-2 style and SentencePiece-converted files), implemented here after the Rust `tokenizers`
// library, with its pipeline exactly as the file declares it:
//
//   added_tokens  split the text on them first (leftmost-longest; lstrip / rstrip / single_word;
//                 `normalized: false` ones in the raw text, the others in the normalized text);
//                 each maps to its id directly
//   normalizer    NFC, NFD, NFKC, NFKD (ICU), Prepend, Replace (String or Regex), Lowercase,
//                 Strip, Sequence, null
//   pre_tokenizer ByteLevel (add_prefix_space, use_regex with GPT-2's pattern), Split (String or
//                 Regex; Isolated / Removed / MergedWithPrevious / MergedWithNext / Contiguous;
//                 invert), Metaspace (replacement, prepend_scheme, split), Digits, Sequence, null
//   model         BPE: vocab, merges ("a b" strings or ["a", "b"] pairs), byte_fallback, unk_token,
//                 fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix;
//                 dropout must be null (or 0)
//   decoder       ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence,
//                 null (tokens joined by spaces)
//
// Not applied: post_processor (encode() never adds BOS/EOS; see data/tokenizer.h for where they
// come from), truncation and padding (encode() returns every token). Regex patterns run on PCRE2
// (data/unicode_regex.h). Anything else in the file -- another model type (WordPiece, Unigram,
// WordLevel), an unknown normalizer / pre-tokenizer / decoder type -- is a spin::Error of one line
// naming the file and the JSON field, as are corrupt JSON, wrong types, merges naming tokens that
// are not in the vocabulary, and duplicate ids.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace spin::data {

class HfTokenizer {
 public:
  // Reads and checks `path` (a tokenizer.json); errors name the file and the field.
  explicit HfTokenizer(const std::string& path);
  ~HfTokenizer();
  HfTokenizer(HfTokenizer&&) noexcept;
  HfTokenizer& operator=(HfTokenizer&&) noexcept;

  // Token ids of `text` (UTF-8; invalid UTF-8 is an error naming the byte offset), without BOS/EOS.
  // Thread-safe; BPE results are cached per pre-token across calls.
  std::vector<int> encode(const std::string& text) const;
  // The pre-tokens of `text` the model sees (after added-token splitting, normalizer and
  // pre-tokenizer; ByteLevel ones in their byte-level spelling), added tokens as their content.
  // For tests and debugging.
  std::vector<std::string> pre_tokenize(const std::string& text) const;
  // The text of `ids` through the file's decoder. Special added tokens are skipped (as Hugging
  // Face's decode(ids, skip_special_tokens=True)); ids outside [0, vocab_size) or without a token
  // are an error.
  std::string decode(const std::vector<int>& ids, bool skip_special_tokens = true) const;

  // Max id + 1 over the vocabulary and the added tokens.
  int vocab_size() const;
  // Id of the token spelled `token` (an added token or a vocabulary entry), or -1.
  int token_to_id(const std::string& token) const;
  // Spelling of token `id` ("" when no token has that id).
  const std::string& id_to_token(int id) const;
  // Whether `id` is an added token marked special (e.g. <|begin_of_text|>).
  bool is_special(int id) const;

  const std::string& path() const;
  // One line for logs: "BPE, 128256 ids (256 added), normalizer -, pre_tokenizer Sequence[Split,
  // ByteLevel], decoder ByteLevel".
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spin::data
