// Learnable per-channel smoothing scales (OSTQuant/SmoothQuant style): exact reparametrisations of the
// float model that move magnitude between an activation and the weights that read it, so the quantized
// model can trade activation range against weight range.
//
// Scales are diagonal and positive: each is stored as log s (a leaf for Adam), s = exp(log s). They act
// in the rotated basis (after rotate_layer), one set per layer:
//   attn_in [hidden]        input_layernorm ← g / s;            q/k/v_proj ← W·diag(s)
//   mlp_in  [hidden]        post_attention_layernorm ← g / s;   gate/up_proj ← W·diag(s)
//   v_out   [nkv·head_dim]  v_proj rows (and v_bias) ← / s;     o_proj columns of every query head ← · s of
//                           its KV head (GQA: the query heads of a group share their KV head's scales)
//   up_out  [intermediate]  up_proj rows ← / s;                 down_proj columns ← · s   (SwiGLU: silu(gate)·up
//                           is linear in up). Not with R4: its online Hadamard sits between the two.
// The activations the quantizer sees become x / s (per token: SmoothQuant's migration), the weights
// W·diag(s). Folded at export into the norm weights and linears, so the checkpoint stays a plain HF one.
#pragma once

#include <vector>

#include "src/model/config.h"
#include "src/model/weights.h"

namespace spin {

struct LayerSmoothing {
  torch::Tensor attn_in, mlp_in, v_out, up_out;  // log-scales; up_out undefined with R4

  std::vector<torch::Tensor> parameters() const;  // the defined ones
};

// log s = 0 (s = 1: the identity) for every layer, float32 leaves requiring grad on `device`.
std::vector<LayerSmoothing> init_smoothing(const ModelConfig& config, bool r4, torch::Device device);

// The layer with its scales applied (differentiable in the scales), in the layer's dtype.
LayerWeights smooth_layer(const ModelConfig& config, const LayerWeights& layer, const LayerSmoothing& s);

// Every layer smoothed; returns `weights` unchanged when `scales` is empty.
ModelWeights smooth_weights(const ModelConfig& config, const ModelWeights& weights,
                            const std::vector<LayerSmoothing>& scales);

}  // namespace spin
