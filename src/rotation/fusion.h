// Rotation fusion: the math that moves rotations into weights.
//
// Convention (used everywhere in spintrain): activations are rotated as x·R (row vectors times R).
// A linear W [out, in] that consumes rotated activations becomes W·R; one that produces them becomes
// Rᵀ·W. Then (x·R)·(W·R)ᵀ = x·Wᵀ, so the float model's function is unchanged for any orthogonal R.
//   R1 [hidden, hidden], shared: residual stream. embed_tokens·R1; q/k/v/gate/up/lm_head ·R1;
//        o_proj and down_proj R1ᵀ·W.
//   R2 [head_dim, head_dim], one per layer: each KV head's v_proj rows R2ᵀ·W_v[h] (and its bias·R2);
//        each attention head's o_proj columns W_o[:, h]·R2. Under GQA every query head reads a KV head's
//        rotated values, so its output is rotated by the same R2.
//   R4 [intermediate, intermediate], fixed Hadamard: down_proj·H, with x·H applied online.
// RMSNorm commutes with rotations only once its weight is folded into the following linears.
#pragma once

#include <vector>

#include "src/model/config.h"
#include "src/model/weights.h"
#include "src/rotation/init.h"

namespace spin {

// A copy with every RMSNorm weight folded into the linears that read it (norm weights become ones;
// Qwen3's per-head q/k norms stay), lm_head untied from embed_tokens, and with `r4` R4's weight half
// (down_proj ← down_proj·H, H the normalised Hadamard of size intermediate_size; pair with
// ForwardOptions::r4). Computed in float64 one layer at a time and stored in `dtype`, so the only extra
// memory is one layer in float64.
ModelWeights fold_norms(const ModelConfig& config, const ModelWeights& weights, bool r4,
                        torch::ScalarType dtype = torch::kFloat64);

// Where R1 meets the embedding and lm_head: fused into both matrices (export), or left on the
// activations through ModelWeights::r1_online (training: 2·tokens·hidden² instead of 2·vocab·hidden²
// FLOPs per matrix and per step, and neither matrix is copied).
enum class EmbeddingR1 { fused, online };

// The weights with R1/R2 applied, in `base`'s dtype (rotations are cast to it). Differentiable in the
// rotations, so training calls it every step (EmbeddingR1::online); export calls it once in float64.
ModelWeights rotate_weights(const ModelConfig& config, const ModelWeights& base, const Rotations& rotations,
                            EmbeddingR1 embedding = EmbeddingR1::fused);

// One decoder layer with R1 (undefined: none) and its R2 (undefined: none) applied, in the layer's dtype;
// rotate_weights applies it to every layer. Block-wise training rotates one layer at a time with it.
LayerWeights rotate_layer(const ModelConfig& config, const LayerWeights& layer, const torch::Tensor& r1,
                          const torch::Tensor& r2);

}  // namespace spin
