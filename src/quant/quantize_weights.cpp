#include "src/quant/quantize_weights.h"

#include "src/base/check.h"

namespace spin {

std::array<torch::Tensor*, 7> layer_linears(LayerWeights& L) {
  return {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj};
}

std::vector<LayerClip> init_clip(const ModelConfig& c, double initial, torch::Device device) {
  const std::array<int64_t, 7> rows = {c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim,
                                       c.num_key_value_heads * c.head_dim, c.hidden_size, c.intermediate_size,
                                       c.intermediate_size, c.hidden_size};
  std::vector<LayerClip> clip(c.num_hidden_layers);
  for (LayerClip& l : clip)
    for (size_t j = 0; j < rows.size(); ++j)
      l.ratio[j] = torch::full({rows[j]}, initial, torch::TensorOptions().dtype(torch::kFloat32).device(device))
                       .requires_grad_(true);
  return clip;
}

void clamp_clip(std::vector<LayerClip>& clip) {
  torch::NoGradGuard g;
  for (LayerClip& l : clip)
    for (torch::Tensor& r : l.ratio) r.clamp_(kMinClip, 1.0);
}

LayerWeights fake_quant_layer(const LayerWeights& layer, const QuantSpec& spec, const LayerClip* clip) {
  LayerWeights L = layer;
  if (!spec.enabled()) return L;
  const auto linears = layer_linears(L);
  for (size_t j = 0; j < linears.size(); ++j)
    *linears[j] = clip ? fake_quant(*linears[j], spec, clip->ratio[j]) : fake_quant(*linears[j], spec);
  return L;
}

ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec, const std::vector<LayerClip>& clip) {
  if (!spec.enabled()) return weights;
  SPIN_CHECK(clip.empty() || clip.size() == weights.layers.size(), "weight clip: ", clip.size(),
             " layers of ratios for ", weights.layers.size(), " layers");
  ModelWeights w = weights;
  for (size_t i = 0; i < w.layers.size(); ++i)
    w.layers[i] = fake_quant_layer(weights.layers[i], spec, clip.empty() ? nullptr : &clip[i]);
  return w;
}

}  // namespace spin
