#include "src/rotation/smoothing.h"

#include "src/base/check.h"

namespace spin {

std::vector<torch::Tensor> LayerSmoothing::parameters() const {
  std::vector<torch::Tensor> p;
  for (const torch::Tensor* t : {&attn_in, &mlp_in, &v_out, &up_out})
    if (t->defined()) p.push_back(*t);
  return p;
}

std::vector<LayerSmoothing> init_smoothing(const ModelConfig& c, bool r4, torch::Device device) {
  auto zeros = [&](int64_t n) {
    return torch::zeros({n}, torch::TensorOptions().dtype(torch::kFloat32).device(device)).requires_grad_(true);
  };
  std::vector<LayerSmoothing> scales(c.num_hidden_layers);
  for (LayerSmoothing& s : scales) {
    s.attn_in = zeros(c.hidden_size);
    s.mlp_in = zeros(c.hidden_size);
    s.v_out = zeros(c.num_key_value_heads * c.head_dim);
    if (!r4) s.up_out = zeros(c.intermediate_size);
  }
  return scales;
}

LayerWeights smooth_layer(const ModelConfig& c, const LayerWeights& layer, const LayerSmoothing& s) {
  LayerWeights L = layer;
  const auto dtype = layer.q_proj.scalar_type();
  auto scale = [&](const torch::Tensor& log_s) { return log_s.exp().to(dtype); };
  if (s.attn_in.defined()) {
    const torch::Tensor a = scale(s.attn_in);  // [hidden]
    L.input_layernorm = L.input_layernorm / a;
    for (const Linear& l : layer_linears())
      if (l.input == LinearInput::attn_in) L.*l.weight = L.*l.weight * a;
  }
  if (s.mlp_in.defined()) {
    const torch::Tensor m = scale(s.mlp_in);
    L.post_attention_layernorm = L.post_attention_layernorm / m;
    for (const Linear& l : layer_linears())
      if (l.input == LinearInput::mlp_in) L.*l.weight = L.*l.weight * m;
  }
  if (s.v_out.defined()) {
    const int64_t hd = c.head_dim, nkv = c.num_key_value_heads, rep = c.num_attention_heads / nkv;
    const torch::Tensor v = scale(s.v_out);  // [nkv·hd]
    L.v_proj = L.v_proj / v.unsqueeze(1);
    if (L.v_bias.defined()) L.v_bias = L.v_bias / v;
    // o_proj columns are ordered (query head, hd); query head h reads KV head h / rep.
    L.o_proj = L.o_proj * v.view({nkv, 1, hd}).expand({nkv, rep, hd}).reshape({nkv * rep * hd});
  }
  if (s.up_out.defined()) {
    const torch::Tensor u = scale(s.up_out);  // [intermediate]
    L.up_proj = L.up_proj / u.unsqueeze(1);
    L.down_proj = L.down_proj * u;
  }
  return L;
}

ModelWeights smooth_weights(const ModelConfig& c, const ModelWeights& weights, const std::vector<LayerSmoothing>& scales) {
  if (scales.empty()) return weights;
  SPIN_CHECK(int64_t(scales.size()) == c.num_hidden_layers, "smoothing: ", scales.size(), " layers of scales for ",
             c.num_hidden_layers, " layers");
  ModelWeights w = weights;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) w.layers[i] = smooth_layer(c, weights.layers[i], scales[i]);
  return w;
}

}  // namespace spin
