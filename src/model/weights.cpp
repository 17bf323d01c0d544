#include "src/model/weights.h"

#include "src/base/check.h"

namespace spin {
namespace {

struct LayerSlot {
  const char* suffix;
  torch::Tensor LayerWeights::*member;
  enum Need { Always, Bias, QkNorm } need;
};

const std::vector<LayerSlot>& layer_slots() {
  static const std::vector<LayerSlot> slots = {
      {"input_layernorm.weight", &LayerWeights::input_layernorm, LayerSlot::Always},
      {"self_attn.q_proj.weight", &LayerWeights::q_proj, LayerSlot::Always},
      {"self_attn.q_proj.bias", &LayerWeights::q_bias, LayerSlot::Bias},
      {"self_attn.k_proj.weight", &LayerWeights::k_proj, LayerSlot::Always},
      {"self_attn.k_proj.bias", &LayerWeights::k_bias, LayerSlot::Bias},
      {"self_attn.v_proj.weight", &LayerWeights::v_proj, LayerSlot::Always},
      {"self_attn.v_proj.bias", &LayerWeights::v_bias, LayerSlot::Bias},
      {"self_attn.q_norm.weight", &LayerWeights::q_norm, LayerSlot::QkNorm},
      {"self_attn.k_norm.weight", &LayerWeights::k_norm, LayerSlot::QkNorm},
      {"self_attn.o_proj.weight", &LayerWeights::o_proj, LayerSlot::Always},
      {"post_attention_layernorm.weight", &LayerWeights::post_attention_layernorm, LayerSlot::Always},
      {"mlp.gate_proj.weight", &LayerWeights::gate_proj, LayerSlot::Always},
      {"mlp.up_proj.weight", &LayerWeights::up_proj, LayerSlot::Always},
      {"mlp.down_proj.weight", &LayerWeights::down_proj, LayerSlot::Always},
  };
  return slots;
}

bool wanted(const ModelConfig& c, LayerSlot::Need need) {
  return need == LayerSlot::Always || (need == LayerSlot::Bias && c.attention_bias) ||
         (need == LayerSlot::QkNorm && c.qk_norm);
}

}  // namespace

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
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  auto ends = [&](const char* s) {
    const std::string suffix(s);
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {c.vocab_size, H};
  if (ends("layernorm.weight") || name == "model.norm.weight") return {H};
  if (ends("q_proj.weight")) return {c.q_size(), H};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {c.kv_size(), H};
  if (ends("q_proj.bias")) return {c.q_size()};
  if (ends("k_proj.bias") || ends("v_proj.bias")) return {c.kv_size()};
  if (ends("q_norm.weight") || ends("k_norm.weight")) return {c.head_dim};
  if (ends("o_proj.weight")) return {H, c.q_size()};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {I, H};
  if (ends("down_proj.weight")) return {H, I};
  fail("no expected shape for tensor '", name, "'");
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
