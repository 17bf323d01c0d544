// What spintrain learns and the transform it defines from the frozen weights to the student's:
//   student layer i = fake_quant( smooth( rotate(base layer i, R1, R2_i), s_i ), clip_i )
// Rotations live on the Stiefel manifold (Cayley SGD/Adam); smoothing log-scales and clip ratios are
// Euclidean (Adam, clip ratios projected into [kMinClip, 1] after each step): the Cayley/Adam hybrid.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "optim/hybrid.h"
#include "src/quant/quantize_weights.h"
#include "src/rotation/fusion.h"
#include "src/rotation/smoothing.h"
#include "src/train/config.h"

namespace spin {

struct Learnables {
  Rotations rotations;                    // leaves; r1 undefined / r2 empty when not learned
  std::vector<LayerSmoothing> smoothing;  // empty unless --smooth
  std::vector<LayerClip> clip;            // empty unless --learn-clip

  // Trainable leaves from the initial rotations (cast to float32, float64 for f64 training) and the
  // scale/clip options of `cfg`, all on cfg.device. R1 is a leaf only if `learn_r1`.
  static Learnables create(const TrainConfig& cfg, const ModelConfig& config, const Rotations& init, bool learn_r1);

  std::vector<torch::Tensor> stiefel() const;              // R1 (if learned) then every R2
  std::vector<torch::Tensor> euclidean() const;            // every log-scale then every clip ratio
  std::vector<torch::Tensor> layer_stiefel(int64_t i) const;    // R2_i
  std::vector<torch::Tensor> layer_euclidean(int64_t i) const;  // layer i's scales and clip ratios
  std::vector<torch::Tensor> all() const;                  // stiefel() then euclidean()

  // max |RᵀR − I| over every rotation (0 if none).
  double orthogonality_error() const;

  // After an optimizer step: clip ratios back into [kMinClip, 1].
  void project();

  // Every clip ratio set to search_clip() of the initial student's float weights (--clip-search).
  void search_clip(const ModelConfig& config, const ModelWeights& base, const QuantSpec& weight);
};

// Layer i of the student in the layer's dtype, differentiable in the learnables.
LayerWeights student_layer(const ModelConfig& config, const LayerWeights& base_layer, const Learnables& l, int64_t i,
                           const QuantSpec& weight);

// The whole student (R1 on the embedding/lm_head side as `embedding` says).
ModelWeights student_weights(const ModelConfig& config, const ModelWeights& base, const Learnables& l,
                             const QuantSpec& weight, EmbeddingR1 embedding);

// The float model with rotations and smoothing fused (no quantization), in base's dtype: the export.
ModelWeights fused_weights(const ModelConfig& config, const ModelWeights& base, const Rotations& rotations,
                           const std::vector<LayerSmoothing>& smoothing);

// One HybridOptimizer: `stiefel` with --optimizer at --lr, `euclidean` (if any) with Adam at --scale-lr.
std::unique_ptr<optim::HybridOptimizer> make_optimizer(const TrainConfig& cfg, std::vector<torch::Tensor> stiefel,
                                                       std::vector<torch::Tensor> euclidean);

// --schedule/--warmup over --steps steps (each layer's steps in block-wise training).
optim::LrSchedule make_schedule(const TrainConfig& cfg);

}  // namespace spin
