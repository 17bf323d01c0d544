#include "src/rotation.h"

#include "src/check.h"
#include "src/hadamard.h"

namespace spin {

ModelWeights fold_norms(const ModelConfig& config, const ModelWeights& weights) {
  ModelWeights w = map_weights(config, weights, [](const torch::Tensor& t) { return t.to(torch::kFloat64).clone(); });
  w.lm_head = w.lm_head.clone();  // untie: R1 must reach embed_tokens and lm_head separately
  for (LayerWeights& L : w.layers) {
    // W·diag(g): scale each input column by the norm weight g [hidden].
    for (torch::Tensor* t : {&L.q_proj, &L.k_proj, &L.v_proj}) *t = *t * L.input_layernorm;
    for (torch::Tensor* t : {&L.gate_proj, &L.up_proj}) *t = *t * L.post_attention_layernorm;
    L.input_layernorm = torch::ones_like(L.input_layernorm);
    L.post_attention_layernorm = torch::ones_like(L.post_attention_layernorm);
  }
  w.lm_head = w.lm_head * w.norm;
  w.norm = torch::ones_like(w.norm);
  return w;
}

ModelWeights fuse_r4(const ModelConfig& config, const ModelWeights& weights) {
  ModelWeights w = weights;
  for (LayerWeights& L : w.layers) L.down_proj = apply_hadamard(L.down_proj);  // rows · H
  return w;
}

LayerWeights rotate_layer(const ModelConfig& c, const LayerWeights& layer, const torch::Tensor& r1,
                          const torch::Tensor& r2) {
  LayerWeights L = layer;
  const auto dtype = layer.q_proj.scalar_type();
  if (r1.defined()) {
    SPIN_CHECK(r1.sizes() == torch::IntArrayRef({c.hidden_size, c.hidden_size}), "R1 has shape ", r1.sizes(),
               " but hidden_size is ", c.hidden_size);
    const torch::Tensor r = r1.to(dtype);
    for (torch::Tensor* t : {&L.q_proj, &L.k_proj, &L.v_proj, &L.gate_proj, &L.up_proj}) *t = t->matmul(r);
    L.o_proj = r.t().matmul(L.o_proj);
    L.down_proj = r.t().matmul(L.down_proj);
  }
  if (r2.defined()) {
    const int64_t hd = c.head_dim, nkv = c.num_key_value_heads, nh = c.num_attention_heads, H = c.hidden_size;
    SPIN_CHECK(r2.sizes() == torch::IntArrayRef({hd, hd}), "R2 has shape ", r2.sizes(), " but head_dim is ", hd);
    const torch::Tensor r = r2.to(dtype);
    // v_proj [nkv·hd, H] -> [nkv, hd, H]; each head's rows R2ᵀ·W_v[h].
    L.v_proj = r.t().matmul(L.v_proj.view({nkv, hd, H})).reshape({nkv * hd, H});
    if (L.v_bias.defined()) L.v_bias = L.v_bias.view({nkv, hd}).matmul(r).reshape({nkv * hd});
    // o_proj [H, nh·hd] -> [H, nh, hd]; each head's columns W_o[:, h]·R2.
    L.o_proj = L.o_proj.view({H, nh, hd}).matmul(r).reshape({H, nh * hd});
  }
  return L;
}

ModelWeights rotate_weights(const ModelConfig& c, const ModelWeights& base, const Rotations& rot,
                            EmbeddingR1 embedding) {
  ModelWeights w = base;
  if (!rot.r2.empty())
    SPIN_CHECK(int64_t(rot.r2.size()) == c.num_hidden_layers, "R2: ", rot.r2.size(), " matrices for ",
               c.num_hidden_layers, " layers");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const torch::Tensor r2 = rot.r2.empty() ? torch::Tensor() : rot.r2[i];
    try {
      w.layers[i] = rotate_layer(c, base.layers[i], rot.r1, r2);
    } catch (const Error& e) {
      fail("layer ", i, ": ", e.what());
    }
  }
  if (rot.r1.defined()) {  // shape checked by rotate_layer
    const torch::Tensor r1 = rot.r1.to(base.embed_tokens.scalar_type());
    if (embedding == EmbeddingR1::online) {
      w.r1_online = r1;
    } else {
      w.embed_tokens = w.embed_tokens.matmul(r1);
      w.lm_head = w.lm_head.matmul(r1);
    }
  }
  return w;
}

}  // namespace spin
