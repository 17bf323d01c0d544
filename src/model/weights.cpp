#include "src/model/weights.h"

#include "src/base/check.h"

namespace spin {
namespace {

struct LayerSlot {
  std::string suffix;
  torch::Tensor LayerWeights::*member;
  enum Need { always, bias, qk_norm } need;
};

// A layer's tensors in HF order: the linears of layer_linears() with their biases, each norm before
// the first linear that reads it, Qwen3's q/k norms between q/k/v and o_proj.
const std::vector<LayerSlot>& layer_slots() {
  static const std::vector<LayerSlot> slots = [] {
    std::vector<LayerSlot> s;
    for (const Linear& l : layer_linears()) {
      if (l.weight == &LayerWeights::q_proj) s.push_back({"input_layernorm.weight", &LayerWeights::input_layernorm, LayerSlot::always});
      if (l.weight == &LayerWeights::o_proj) {
        s.push_back({"self_attn.q_norm.weight", &LayerWeights::q_norm, LayerSlot::qk_norm});
        s.push_back({"self_attn.k_norm.weight", &LayerWeights::k_norm, LayerSlot::qk_norm});
      }
      if (l.weight == &LayerWeights::gate_proj)
        s.push_back({"post_attention_layernorm.weight", &LayerWeights::post_attention_layernorm, LayerSlot::always});
      s.push_back({cat(l.path, ".weight"), l.weight, LayerSlot::always});
      if (l.bias) s.push_back({cat(l.path, ".bias"), l.bias, LayerSlot::bias});
    }
    return s;
  }();
  return slots;
}

bool wanted(const ModelConfig& c, LayerSlot::Need need) {
  return need == LayerSlot::always || (need == LayerSlot::bias && c.attention_bias) ||
         (need == LayerSlot::qk_norm && c.qk_norm);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int64_t size_of(const ModelConfig& c, Dim dim) {
  switch (dim) {
    case Dim::hidden: return c.hidden_size;
    case Dim::q_size: return c.q_size();
    case Dim::kv_size: return c.kv_size();
    case Dim::intermediate: return c.intermediate_size;
  }
  fail("size_of: unknown dimension");
}

std::string Linear::hf_name(int64_t layer) const { return cat("model.layers.", layer, ".", path, ".weight"); }

const std::array<Linear, 7>& layer_linears() {
  using L = LayerWeights;
  static const std::array<Linear, 7> linears = {{
      {"q_proj", "self_attn.q_proj", &L::q_proj, &L::q_bias, LinearInput::attn_in, Dim::q_size, Dim::hidden},
      {"k_proj", "self_attn.k_proj", &L::k_proj, &L::k_bias, LinearInput::attn_in, Dim::kv_size, Dim::hidden},
      {"v_proj", "self_attn.v_proj", &L::v_proj, &L::v_bias, LinearInput::attn_in, Dim::kv_size, Dim::hidden},
      {"o_proj", "self_attn.o_proj", &L::o_proj, nullptr, LinearInput::attn_heads, Dim::hidden, Dim::q_size},
      {"gate_proj", "mlp.gate_proj", &L::gate_proj, nullptr, LinearInput::mlp_in, Dim::intermediate, Dim::hidden},
      {"up_proj", "mlp.up_proj", &L::up_proj, nullptr, LinearInput::mlp_in, Dim::intermediate, Dim::hidden},
      {"down_proj", "mlp.down_proj", &L::down_proj, nullptr, LinearInput::mlp_hidden, Dim::hidden, Dim::intermediate},
  }};
  return linears;
}

const Linear* find_linear(const std::string& name) {
  if (name.rfind("model.layers.", 0) != 0) return nullptr;
  for (const Linear& l : layer_linears())
    if (ends_with(name, cat(".", l.path, ".weight"))) return &l;
  return nullptr;
}

void for_each_slot(const ModelConfig& config, ModelWeights& w,
                   const std::function<void(const std::string&, torch::Tensor&)>& fn) {
  fn("model.embed_tokens.weight", w.embed_tokens);
  w.layers.resize(config.num_hidden_layers);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    for (const auto& s : layer_slots())
      if (wanted(config, s.need)) fn(cat("model.layers.", i, ".", s.suffix), w.layers[i].*s.member);
  fn("model.norm.weight", w.norm);
  fn("lm_head.weight", w.lm_head);
}

std::vector<int64_t> expected_shape(const ModelConfig& c, const std::string& name) {
  const int64_t H = c.hidden_size;
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {c.vocab_size, H};
  if (ends_with(name, "layernorm.weight") || name == "model.norm.weight") return {H};
  if (ends_with(name, "q_norm.weight") || ends_with(name, "k_norm.weight")) return {c.head_dim};
  for (const Linear& l : layer_linears()) {
    if (ends_with(name, cat(l.path, ".weight"))) return l.shape(c);
    if (l.bias && ends_with(name, cat(l.path, ".bias"))) return {size_of(c, l.out)};
  }
  fail("no expected shape for tensor '", name, "'");
}

bool is_tied_half(const ModelConfig& c, const std::string& name) {
  return c.tie_word_embeddings && (name == "model.embed_tokens.weight" || name == "lm_head.weight");
}

void tie_embeddings(ModelWeights& w, const std::string& where) {
  SPIN_CHECK(w.embed_tokens.defined() || w.lm_head.defined(), where,
             ": tie_word_embeddings is true but neither 'model.embed_tokens.weight' nor 'lm_head.weight' is stored");
  if (!w.embed_tokens.defined()) w.embed_tokens = w.lm_head;
  if (w.lm_head.defined() && !w.lm_head.is_same(w.embed_tokens))
    SPIN_CHECK(torch::equal(w.lm_head, w.embed_tokens), where,
               ": tie_word_embeddings is true but the stored 'lm_head.weight' and 'model.embed_tokens.weight' differ");
  w.lm_head = w.embed_tokens;
}

ModelWeights map_weights(const ModelConfig& config, const ModelWeights& weights,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  ModelWeights in = weights, out;
  out.layers.resize(config.num_hidden_layers);
  std::vector<torch::Tensor*> dst;
  for_each_slot(config, out, [&](const std::string&, torch::Tensor& t) { dst.push_back(&t); });
  size_t k = 0;
  for_each_slot(config, in, [&](const std::string&, torch::Tensor& t) {
    if (t.defined()) *dst[k] = fn(t);
    ++k;
  });
  if (weights.lm_head.defined() && weights.lm_head.is_same(weights.embed_tokens)) out.lm_head = out.embed_tokens;
  if (weights.r1_online.defined()) out.r1_online = fn(weights.r1_online);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> named_tensors(const ModelConfig& config,
                                                                 const ModelWeights& weights) {
  ModelWeights w = weights;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for_each_slot(config, w, [&](const std::string& name, torch::Tensor& t) {
    if (!t.defined()) return;
    if (name == "lm_head.weight" && t.is_same(w.embed_tokens)) return;
    out.emplace_back(name, t);
  });
  return out;
}

}  // namespace spin
