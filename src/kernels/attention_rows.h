// Causal attention by query rows, fused: for each row the scores against its keys, the
// softmax and P·V are computed in one pass over those keys, in a buffer of T floats that stays in
// the core's cache, so nothing of size T² is ever written to memory (FlashAttention's idea, Dao et
// al. 2022, with blocks of a few query rows). Keys go 16 at a time: a block's scores (Σ over head_dim of
// q·Kᵀ) and its share of P·V are accumulated in vector registers from key-major K and V, padded so
// that no block needs a scalar tail. The backward recomputes each block's probabilities from the saved
// log-sum-exp and forms dS, dQ, dK and dV in the same pass. Query rows go 4 at a time (consecutive
// positions of one head), so that each load of K, V and their gradients serves 4 rows. GCC vector
// code, one clone per instruction set on x86; parallel over rows in the forward and over K/V heads in
// the backward.
//
// This is the CPU kernel for small head_dim, where the score GEMMs of the blocked kernel
// (attention.cpp) are cheap and the passes of the softmax over T×T scores are what costs
// (docs/BENCHMARKS.md); causal_attention() chooses it.
#pragma once

#include <torch/torch.h>

namespace spin {

// q [B, heads, T, hd] (already scaled by 1/sqrt(hd)), k and v [B, kv_heads, T, hd], CPU, any floating
// dtype (computed in float32, float64 in float64); window 0: every earlier key. -> [B, heads, T, hd].
torch::Tensor causal_attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    int64_t window);

}  // namespace spin
