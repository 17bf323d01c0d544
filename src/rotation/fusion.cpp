#include "src/rotation/fusion.h"

#include "src/base/check.h"
#include "src/kernels/hadamard.h"

namespace spin {

ModelWeights fold_norms(const ModelConfig& config, const ModelWeights& weights, bool r4, torch::ScalarType dtype) {
  auto f64 = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  // A fresh tensor in `dtype` (never an alias of the input), undefined stays undefined.
  auto store = [&](const torch::Tensor& t) { return t.defined() ? t.to(dtype, false, /*copy=*/true) : t; };
  auto ones = [&](const torch::Tensor& t) { return torch::ones_like(t, torch::TensorOptions().dtype(dtype)); };
  ModelWeights w;
  w.embed_tokens = store(weights.embed_tokens);
  w.lm_head = store(f64(weights.lm_head) * f64(weights.norm));  // untied: R1 reaches both separately
  w.norm = ones(weights.norm);
  for (const LayerWeights& in : weights.layers) {
    LayerWeights L;
    const torch::Tensor g_attn = f64(in.input_layernorm), g_mlp = f64(in.post_attention_layernorm);
    for (const Linear& l : layer_linears()) {
      const torch::Tensor& W = in.*l.weight;
      torch::Tensor& out = L.*l.weight;
      switch (l.input) {  // W·diag(g) for a normed input: each input column times the norm weight g [hidden]
        case LinearInput::attn_in: out = store(f64(W) * g_attn); break;
        case LinearInput::mlp_in: out = store(f64(W) * g_mlp); break;
        case LinearInput::attn_heads: out = store(W); break;
        case LinearInput::mlp_hidden: out = store(r4 ? apply_hadamard(f64(W)) : W); break;  // rows · H
      }
    }
    L.input_layernorm = ones(in.input_layernorm);
    L.post_attention_layernorm = ones(in.post_attention_layernorm);
    L.q_bias = store(in.q_bias);
    L.k_bias = store(in.k_bias);
    L.v_bias = store(in.v_bias);
    L.q_norm = store(in.q_norm);
    L.k_norm = store(in.k_norm);
    w.layers.push_back(std::move(L));
  }
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
    for (const Linear& l : layer_linears())  // consumers first, then producers: the order of R1's
      if (l.reads_residual()) L.*l.weight = (L.*l.weight).matmul(r);  // gradient terms is part of the result
    for (const Linear& l : layer_linears())
      if (!l.reads_residual()) L.*l.weight = r.t().matmul(L.*l.weight);
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
