// Adaptive rotations: closed-form refinement of R1/R2 for a given quantizer, without backpropagation.
//
// For one rotation R [n, n] (activations rotated x·R) the objective is a sum of terms, one for every
// quantized tensor that R touches:
//   E(R) = Σ_t w_t ||A_t·R − Q_t(A_t·R)||²_F,   w_t = 1 / ||A_t||²_F   (relative error: terms are scale-free)
// The rows of A_t [m_t, n] are the vectors R rotates; Q_t quantizes them where they really live (the
// quantization groups of the real tensor may span several slices, or run across R's output). One
// ITQ-style alternation (Gong & Lazebnik, "Iterative Quantization", 2011) step:
//   Y_t = Q_t(A_t·R)                          the quantized values, held fixed;
//   C   = Σ_t w_t A_tᵀ·Y_t            [n, n]    min_R Σ w ||A·R − Y||² = max_R tr(Rᵀ·C);
//   R   = R0 · block_polar(R0ᵀ·C, b)           its maximiser over R = R0·B, B block-diagonal orthogonal
//                                              with b×b blocks; one block (b = n) gives R = polar(C).
// R0 is the initial rotation (Hadamard, random Hadamard...). The Y step is round-to-nearest, not the
// best point of the grid, so a step may raise E: the best R seen is returned, never worse than R0.
//
// Terms (each only when its quantizer is enabled):
//   R1 (shared):  per layer the normed inputs of attention and MLP [tokens, hidden] (per-token act
//                 quant); q/k/v/gate/up W [out, hidden] (W·R1, weight groups along hidden); o/down
//                 A = Wᵀ [in, hidden] (R1ᵀ·W, quantized per row along `in`). Weights have the initial
//                 R2 fused (v_proj rows and o_proj columns are mixed by it): the context R1 meets.
//   R2 (layer l): V cache [tokens·nkv, head_dim] (value quant per head); o_proj input [tokens·nh,
//                 head_dim] (act quant over the whole nh·head_dim token vector); v_proj A = W_v[h]ᵀ
//                 stacked over KV heads (R2ᵀ·W_v[h], quantized per row along hidden); o_proj A = W_o[:, h]
//                 stacked over query heads (W_o[:, h]·R2, groups along nh·head_dim). Weights have the
//                 adapted R1 fused (R1 is chosen first).
// Activations come from the float model (rotations do not change its function); R3/R4 are fixed
// Hadamards and are not adapted.
// Cost: one float forward over all of ids (it dominates), then per step and term A·R, RTN and Aᵀ·Y.
#pragma once

#include <string>
#include <vector>

#include "src/model/forward.h"
#include "src/rotation/fusion.h"
#include "src/train/mode.h"

namespace spin {

struct AdaptOptions {
  int64_t steps = 20;          // alternations per rotation (0: the initial rotations, with their objective)
  int64_t block_size = 0;      // R = R0·B with B block-diagonal, blocks of block_size; 0 or >= n: one block
  int64_t max_samples = 2048;  // tokens per activation term: a seeded subset of the calibration tokens
  uint64_t seed = 0;           // which tokens (data::seeded_permutation)
};

struct AdaptStageReport {
  std::string name;        // "r1" or "r2.<layer>"
  double before = 0;       // E(R0)
  double after = 0;        // E(returned R) <= before
  int64_t terms = 0;       // number of terms in E
  int64_t best_step = 0;   // the alternation that gave the returned R (0: R0 itself)
};

struct AdaptResult {
  Rotations rotations;                   // float64, CPU, orthogonal; like `init` (r1 undefined / r2 empty)
  std::vector<AdaptStageReport> stages;  // "r1" first (if adapted), then "r2.0", "r2.1", ...
};

// Refines every rotation `init` defines (R1 first, then each layer's R2) for the quantizers:
//   base    norm-folded weights (rotation_base: fold_norms, with R4's weight half when quant.r4), any float dtype;
//           the float forward and the activations use base's dtype and device, everything else float64;
//   ids     [N, T] int64 calibration tokens (read only when an activation term is enabled);
//   weight  the RTN weight quantizer of every q/k/v/o/gate/up/down projection;
//   quant   act / value quantizers as in the forward (key is untouched by R1/R2: not used), r4 as base.
// spin::Error when block_size does not divide hidden_size (R1) or head_dim (R2), or on bad options.
AdaptResult adapt_rotations(const ModelConfig& config, const ModelWeights& base, const Rotations& init,
                            const torch::Tensor& ids, const QuantSpec& weight, const ForwardOptions& quant,
                            const AdaptOptions& options);

// --mode adapt: adapt_rotations from job.init for the run's quantizers on job.data's rows (--adapt-steps,
// --adapt-block-size, --adapt-max-samples; tokens sampled with --seed); the result replaces the
// learnables' rotations. One log record per rotation ({"stage", "objective_before", "objective_after",
// "terms", "best_step"}) and a line on stderr unless --quiet.
LearnResult learn_adapt(const Job& job, Learnables& learnables);

// argmax of tr(Bᵀ·C) over block-diagonal orthogonal B [n, n] with blocks of `block`: each diagonal
// block of C replaced by its polar factor U·Vᵀ (SVD), off-diagonal blocks zero. C [n, n]; returns
// float64 on the CPU. block 0 or >= n: one block, the polar factor of C. spin::Error when block does not
// divide n.
torch::Tensor block_polar(const torch::Tensor& c, int64_t block);

}  // namespace spin
