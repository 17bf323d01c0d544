// A SentencePiece BPE tokenizer (tokenizer.model, e.g. LLaMA-2's) implemented here, without
// libsentencepiece: Debian's libsentencepiece bundles protobuf 3.14 and exports its symbols, which
// clash with the protobuf 3.21 that libtorch loads, so the two cannot live in one process.
//
// Supported: model_type BPE, identity normalization (no precompiled_charsmap), add_dummy_prefix,
// remove_extra_whitespaces, byte_fallback. Encoding follows sentencepiece's bpe_model.cc: the
// normalized text is split into UTF-8 characters and the adjacent pair whose concatenation is a
// vocabulary piece with the highest score (leftmost on ties) is merged until none is left; symbols
// outside the vocabulary become <0xXX> byte pieces (or unk without byte_fallback).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace spin::data {

class SentencePieceBpe {
 public:
  // Parses `path` (a serialized sentencepiece ModelProto); errors name the file and the field.
  explicit SentencePieceBpe(const std::string& path);

  std::vector<int> encode(const std::string& text) const;
  // Control pieces (BOS, EOS) decode to nothing; the dummy-prefix space is removed.
  std::string decode(const std::vector<int>& ids) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  int bos_id() const { return bos_id_; }  // -1: none
  int eos_id() const { return eos_id_; }  // -1: none
  // Id of the piece spelled `piece` (of any type, e.g. "<s>"), or -1.
  int piece_to_id(const std::string& piece) const;

 private:
  enum Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    int type = kNormal;
  };
  std::vector<Piece> pieces_;                      // by id
  std::unordered_map<std::string, int> mergeable_;  // normal and user-defined pieces -> id
  int byte_ids_[256];                              // <0xXX> -> id, -1 when absent
  int unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
  bool byte_fallback_ = false, add_dummy_prefix_ = true, remove_extra_whitespaces_ = true;
};

}  // namespace spin::data
