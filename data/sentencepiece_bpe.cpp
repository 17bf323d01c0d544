#include "data/sentencepiece_bpe.h"

#include <cstring>
#include <fstream>
#include <queue>
#include <sstream>

#include "src/base/check.h"

namespace spin::data {
namespace {

const std::string kSpace = "\xe2\x96\x81";  // U+2581, sentencepiece's escaped space

// Minimal protobuf wire-format reader over [p, end); errors name the file and the message.
struct ProtoReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& path;
  const char* message;

  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      SPIN_CHECK(p < end, path, ": ", message, ": truncated varint");
      const uint8_t b = *p++;
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(path, ": ", message, ": malformed varint");
  }
  ProtoReader sub(const char* name) {
    const uint64_t n = varint();
    SPIN_CHECK(n <= uint64_t(end - p), path, ": ", name, ": length ", n, " runs past the end of the data");
    ProtoReader r{p, p + n, path, name};
    p += n;
    return r;
  }
  std::string bytes(const char* name) {
    ProtoReader r = sub(name);
    return std::string(reinterpret_cast<const char*>(r.p), r.end - r.p);
  }
  float fixed32() {
    SPIN_CHECK(end - p >= 4, path, ": ", message, ": truncated float");
    float f;
    std::memcpy(&f, p, 4);
    p += 4;
    return f;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); return;
      case 1: SPIN_CHECK(end - p >= 8, path, ": ", message, ": truncated field"); p += 8; return;
      case 2: sub(message); return;
      case 5: fixed32(); return;
      default: fail(path, ": ", message, ": unknown protobuf wire type ", wire, " (not a tokenizer.model?)");
    }
  }
};

size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // stray continuation byte: its own symbol, byte fallback handles it
}

}  // namespace

SentencePieceBpe::SentencePieceBpe(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SPIN_CHECK(in, path, ": cannot open tokenizer model");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  SPIN_CHECK(!data.empty(), path, ": empty tokenizer model");
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  int model_type = 1;  // UNIGRAM unless told otherwise
  std::string normalizer = "nmt_nfkc", charsmap;
  const auto* base = reinterpret_cast<const uint8_t*>(data.data());
  ProtoReader model{base, base + data.size(), path, "ModelProto"};
  while (!model.done()) {
    const uint64_t key = model.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) {  // SentencePiece
      ProtoReader r = model.sub("pieces");
      Piece piece;
      while (!r.done()) {
        const uint64_t k = r.varint();
        if (k == (1 << 3 | 2)) piece.text = r.bytes("pieces.piece");
        else if (k == (2 << 3 | 5)) piece.score = r.fixed32();
        else if (k == (3 << 3 | 0)) piece.type = int(r.varint());
        else r.skip(int(k & 7));
      }
      pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      ProtoReader r = model.sub("trainer_spec");
      while (!r.done()) {
        const uint64_t k = r.varint();
        const int f = int(k >> 3);
        if ((k & 7) != 0) { r.skip(int(k & 7)); continue; }
        const auto v = static_cast<int64_t>(r.varint());
        if (f == 3) model_type = int(v);
        else if (f == 35) byte_fallback_ = v != 0;
        else if (f == 40) unk_id_ = int(v);
        else if (f == 41) bos_id_ = int(v);
        else if (f == 42) eos_id_ = int(v);
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      ProtoReader r = model.sub("normalizer_spec");
      while (!r.done()) {
        const uint64_t k = r.varint();
        if (k == (1 << 3 | 2)) normalizer = r.bytes("normalizer_spec.name");
        else if (k == (2 << 3 | 2)) charsmap = r.bytes("normalizer_spec.precompiled_charsmap");
        else if (k == (3 << 3 | 0)) add_dummy_prefix_ = r.varint() != 0;
        else if (k == (4 << 3 | 0)) remove_extra_whitespaces_ = r.varint() != 0;
        else r.skip(int(k & 7));
      }
    } else {
      model.skip(wire);
    }
  }
  SPIN_CHECK(!pieces_.empty(), path, ": ModelProto: no pieces (not a SentencePiece tokenizer.model?)");
  SPIN_CHECK(model_type == 2, path, ": trainer_spec.model_type ", model_type,
             " is not BPE (2); only BPE tokenizers (LLaMA, Mistral) are supported");
  SPIN_CHECK(charsmap.empty(), path, ": normalizer_spec '", normalizer,
             "' has a precompiled_charsmap; only identity normalization is supported");
  const int n = vocab_size();
  for (int* id : {&unk_id_, &bos_id_, &eos_id_})
    SPIN_CHECK(*id >= -1 && *id < n, path, ": trainer_spec: special id ", *id, " outside [-1, ", n, ")");
  for (int id = 0; id < n; ++id) {
    const Piece& piece = pieces_[id];
    if (piece.type == kNormal || piece.type == kUserDefined) mergeable_.emplace(piece.text, id);
    unsigned byte = 0;
    if (piece.type == kByte && std::sscanf(piece.text.c_str(), "<0x%2X>", &byte) == 1 && byte < 256)
      byte_ids_[byte] = id;
  }
}

std::vector<int> SentencePieceBpe::encode(const std::string& text) const {
  // ---- normalize: optional whitespace cleanup, dummy prefix, ' ' -> U+2581
  std::string norm;
  bool pending_space = add_dummy_prefix_;
  size_t i = 0;
  if (remove_extra_whitespaces_)
    while (i < text.size() && text[i] == ' ') ++i;
  if (i == text.size()) return {};
  for (; i < text.size(); ++i) {
    if (text[i] == ' ') {
      if (remove_extra_whitespaces_) {
        pending_space = true;
        continue;
      }
      norm += kSpace;
      continue;
    }
    if (pending_space) norm += kSpace;
    pending_space = false;
    norm += text[i];
  }

  // ---- BPE merges over UTF-8 characters; ref: sentencepiece src/bpe_model.cc Model::Encode
  struct Symbol {
    int prev, next;
    size_t begin, len;  // bytes of norm
  };
  std::vector<Symbol> sym;
  for (size_t b = 0; b < norm.size();) {
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(norm[b])), norm.size() - b);
    sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, b, len});
    b += len;
  }
  sym.back().next = -1;
  struct Pair {
    float score;
    int left, right;
    size_t len;
    bool operator<(const Pair& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::priority_queue<Pair> agenda;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const size_t len = sym[l].len + sym[r].len;
    auto it = mergeable_.find(norm.substr(sym[l].begin, len));
    if (it != mergeable_.end()) agenda.push({pieces_[it->second].score, l, r, len});
  };
  for (size_t s = 1; s < sym.size(); ++s) try_add(int(s) - 1, int(s));
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol &l = sym[top.left], &r = sym[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.len) continue;  // stale
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = top.left;
    r.len = 0;
    try_add(l.prev, top.left);
    try_add(top.left, l.next);
  }

  std::vector<int> ids;
  for (int s = 0; s >= 0; s = sym[s].next) {
    const std::string piece = norm.substr(sym[s].begin, sym[s].len);
    auto it = mergeable_.find(piece);
    if (it != mergeable_.end()) {
      ids.push_back(it->second);
    } else if (byte_fallback_) {
      for (unsigned char c : piece) ids.push_back(byte_ids_[c] >= 0 ? byte_ids_[c] : unk_id_);
    } else {
      ids.push_back(unk_id_);
    }
  }
  return ids;
}

int SentencePieceBpe::piece_to_id(const std::string& piece) const {
  for (size_t id = 0; id < pieces_.size(); ++id)
    if (pieces_[id].text == piece) return static_cast<int>(id);
  return -1;
}

std::string SentencePieceBpe::decode(const std::vector<int>& ids) const {
  std::string out;
  bool first = true;
  for (int id : ids) {
    SPIN_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " outside the tokenizer's [0, ", vocab_size(), ")");
    const Piece& piece = pieces_[id];
    if (piece.type == kControl) continue;
    if (piece.type == kUnknown) {
      out += " \xe2\x81\x87 ";
    } else if (piece.type == kByte) {
      unsigned byte = 0;
      std::sscanf(piece.text.c_str(), "<0x%2X>", &byte);
      out += static_cast<char>(byte);
    } else {
      std::string text = piece.text;
      if (first && add_dummy_prefix_ && text.rfind(kSpace, 0) == 0) text.erase(0, kSpace.size());
      for (size_t at; (at = text.find(kSpace)) != std::string::npos;) text.replace(at, kSpace.size(), " ");
      out += text;
    }
    first = false;
  }
  return out;
}

}  // namespace spin::data
