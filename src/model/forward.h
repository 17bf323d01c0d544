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

// ids [B, T] int64 -> the first layer's input [B, T, hidden] (embedding rows, times R1 when
// weights.r1_online is set).
torch::Tensor embed(const ModelWeights& weights, const torch::Tensor& ids);

// ids [B, T] int64 -> hidden states after the final norm [B, T, hidden].
torch::Tensor forward_hidden(const ModelConfig& config, const ModelWeights& weights, const torch::Tensor& ids,
                             const ForwardOptions& options);

// One decoder layer: x [B, T, hidden] -> [B, T, hidden] (positions 0..T-1).
torch::Tensor decoder_layer(const ModelConfig& config, const LayerWeights& layer, const torch::Tensor& x,
                            const ForwardOptions& options);

// The pieces of a layer, for layer-wise tools (GPTQ) that need each linear's input:
//   RMSNorm of x times `weight` (statistics in at least f32);
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
//   attention output before o_proj: normed h [B, T, hidden] -> [B, T, q_size] (q/k/v, RoPE, R3, KV quant);
torch::Tensor attention_heads(const ModelConfig& config, const LayerWeights& layer, const torch::Tensor& h,
                              const ForwardOptions& options);
//   down_proj's input: normed h [B, T, hidden] -> [B, T, intermediate] (SwiGLU, then x·H with r4).
torch::Tensor mlp_hidden(const LayerWeights& layer, const torch::Tensor& h, const ForwardOptions& options);

// hidden [B, T, hidden] -> logits [B, T, vocab], in float32 (float64 for float64 weights).
torch::Tensor lm_logits(const ModelWeights& weights, const torch::Tensor& hidden);

}  // namespace spin
