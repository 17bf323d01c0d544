// Forward pass of a Llama-family causal LM, with the hooks rotation training needs.
//
// The forward is a pure function of (config, weights, token ids, options): training builds rotated,
// fake-quantized weights each step and calls the same forward that evaluation uses. Computation
// happens in the weights' dtype (f32, bf16 or f64); RMSNorm statistics and softmax run in at least f32.
//
// Quantization points (all optional, see ForwardOptions):
//   act   per token at the inputs of q/k/v, o, gate/up and down projections (lm_head stays float);
//   key   K after RoPE (and after R3), per head group;  value  V after v_proj, per head group.
// Online rotations: r3 applies a Hadamard of size head_dim to q and k after RoPE (q·kᵀ unchanged);
// r4 applies a Hadamard of size intermediate_size to down_proj's input (down_proj must hold W·H).
#pragma once

#include <functional>

#include "src/kernels/fake_quant.h"
#include "src/model/config.h"
#include "src/model/weights.h"

namespace spin {

struct ForwardOptions {
  QuantSpec act;
  QuantSpec key, value;
  bool r3 = false;
  bool r4 = false;
};

// No quantization, only the online Hadamards: the float function of weights that carry their other
// halves (fold_norms with r4, a checkpoint exported with R3/R4).
ForwardOptions online_hadamards(bool r3, bool r4);

// ids [B, T] int64 -> the first layer's input [B, T, hidden] (embedding rows, times R1 when
// weights.r1_online is set).
torch::Tensor embed(const ModelWeights& weights, const torch::Tensor& ids);

// ids [B, T] int64 -> hidden states after the final norm [B, T, hidden].
torch::Tensor forward_hidden(const ModelConfig& config, const ModelWeights& weights, const torch::Tensor& ids,
                             const ForwardOptions& options);

// Observes a decoder layer without changing it (as llama.cpp's graph callback or GPTQ's forward hooks
// observe a forward): called with each linear input as the linears read it, i.e. after activation
// quantization: attn_in and mlp_in [B, T, hidden], attn_heads [B, T, q_size], mlp_hidden
// [B, T, intermediate], in that order. Returning false stops the layer there.
using LayerTap = std::function<bool(LinearInput input, const torch::Tensor& x)>;

// One decoder layer: x [B, T, hidden] -> [B, T, hidden] (positions 0..T-1); undefined when `tap`
// stopped it. Every walk over a layer (forward, recomputation, block-wise training, GPTQ, adapt) is
// this one.
torch::Tensor decoder_layer(const ModelConfig& config, const LayerWeights& layer, const torch::Tensor& x,
                            const ForwardOptions& options, const LayerTap& tap = {});

// RMSNorm of x times `weight` (statistics in at least f32).
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// hidden [B, T, hidden] -> logits [B, T, vocab], in float32 (float64 for float64 weights).
torch::Tensor lm_logits(const ModelWeights& weights, const torch::Tensor& hidden);

}  // namespace spin
