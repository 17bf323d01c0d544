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

#include "src/fake_quant.h"
#include "src/model_config.h"
#include "src/model_weights.h"

namespace spin {

struct ForwardOptions {
  QuantSpec act;
  QuantSpec key, value;
  bool r3 = false;
  bool r4 = false;
};

// ids [B, T] int64 -> hidden states after the final norm [B, T, hidden].
torch::Tensor forward_hidden(const ModelConfig& config, const ModelWeights& weights, const torch::Tensor& ids,
                             const ForwardOptions& options);

// hidden [B, T, hidden] -> logits [B, T, vocab], in float32 (float64 for float64 weights).
torch::Tensor lm_logits(const ModelWeights& weights, const torch::Tensor& hidden);

}  // namespace spin
