// Causal multi-head attention with grouped K/V heads, optionally within a sliding window. Two kernels
// compute it: on CPU with head_dim <= kRowKernelMaxHeadDim the fused row kernel (attention_rows.h),
// elsewhere the blocked kernel described here.
//
// Blocked kernel: blocks of query rows.
// Block b (query rows [t0, t1)) attends to keys [0, t1) only, so the masked upper triangle is skipped
// beyond each diagonal block ((n + 1) / 2n of the full T×T work with n blocks). With a window W, query i
// attends to keys j with i - W < j <= i (transformers' sliding_window_overlay and causal mask), so the
// block reads keys [max(0, t0 - W + 1), t1) and masks the keys older than each row's window as well. The 1/sqrt(head_dim)
// scale is applied to q (T·head_dim values) instead of to the scores, the causal mask is filled into
// the diagonal block only, and the `rep` query heads that share a K/V head are stacked into one GEMM
// against that head, without copying K or V.
// The backward is written by hand, flash-attention style: the forward keeps only q, k, v, the output and
// one log-sum-exp per row, and the backward recomputes each block's probabilities (one extra score GEMM
// per block) instead of keeping T×T probabilities per head for the whole forward.
// Blocks are sized so one block's scores stay under kAttentionBlockBytes (chosen by timing block sizes:
// docs/BENCHMARKS.md, "Training step performance"); the score buffers are allocated once per call and
// reused by every block.
#pragma once

#include <torch/torch.h>

namespace spin {

inline constexpr int64_t kAttentionBlockBytes = int64_t(128) << 20;
// Up to this head_dim the score GEMMs are cheap next to the softmax's passes over the scores, and the
// row kernel, which never writes scores to memory, is faster (docs/BENCHMARKS.md).
inline constexpr int64_t kRowKernelMaxHeadDim = 32;

enum class AttentionKernel {
  automatic,  // rows on CPU with head_dim <= kRowKernelMaxHeadDim and block_rows 0, else blocks
  blocks,
  rows,       // CPU only
};

// q [B, heads, T, head_dim], k and v [B, kv_heads, T, head_dim] (heads a multiple of kv_heads; query
// head h uses K/V head h / (heads / kv_heads), as HF's repeat_kv) -> [B, T, heads * head_dim].
// Scores and softmax run in at least float32; the result has v's dtype. block_rows (blocked kernel) 0
// picks the block size from kAttentionBlockBytes; window 0 means no sliding window (every earlier key).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t block_rows = 0, int64_t window = 0,
                               AttentionKernel kernel = AttentionKernel::automatic);

}  // namespace spin
