// Rotated checkpoints: a plain HF checkpoint with R1/R2 (and R4's weight half) fused in, plus
//   config.json "rotation": {
//       "format": "spintrain-rotation/1", "fused": ["r1", "r2"], "init": "random-hadamard", "seed": 0,
//       "learned": false, "norms_folded": true, "rotations_file": "rotations.safetensors",
//       "online_hadamard": [ {"name": "r3", "size": head_dim, "apply_to": "q,k after RoPE"},
//                            {"name": "r4", "size": intermediate_size, "apply_to": "down_proj input"} ] }
//   rotations.safetensors: "R1" [hidden, hidden] and "layers.<i>.R2" [head_dim, head_dim], float64.
// A runtime that ignores the section still computes the float model exactly when no online Hadamard is
// listed; with r3/r4 listed it must apply x·H (H = hadamard_matrix(size), see src/kernels/hadamard.h) there.
#pragma once

#include <filesystem>
#include <string>

#include "src/io/checkpoint.h"
#include "src/model/forward.h"
#include "src/quant/quantize_weights.h"
#include "src/rotation/fusion.h"

namespace spin {

struct RotationConfig {
  bool r1 = false, r2 = false, r3 = false, r4 = false;
  std::string init = "random-hadamard";
  uint64_t seed = 0;
  bool learned = false;

  // "r1,r2,r3,r4" subsets; unknown names throw.
  static RotationConfig parse_list(const std::string& list, const std::string& where);
  bool any() const { return r1 || r2 || r3 || r4; }
};

// The initial rotations for `rc` (float64): R1 with `seed`, layer i's R2 with seed + 1 + i.
Rotations init_rotations(const ModelConfig& config, const RotationConfig& rc);

// fold_norms with R4's weight half when rc.r4: the weights that R1/R2 are applied to, in `dtype`
// (computed in float64 a layer at a time).
ModelWeights rotation_base(const ModelConfig& config, const ModelWeights& weights, const RotationConfig& rc,
                           torch::ScalarType dtype = torch::kFloat64);

// Writes the rotated checkpoint (weights in source.dtype, sharded like the source) atomically.
// `extra_section` is merged into the rotation section; `extra_files` may add files to the directory.
void export_rotated(const std::filesystem::path& out, const Checkpoint& source, const ModelWeights& fused,
                    const RotationConfig& rc, const Rotations& rotations, const nlohmann::json& extra_section = {},
                    const std::function<void(const std::filesystem::path& dir)>& extra_files = {});

// Learned weight clip ratios (--learn-clip): "layers.<i>.<q_proj|...|down_proj>" [out] float32, named in
// the rotation section as "weight_clip_file". RTN of the checkpoint's linears with these ratios is the
// quantizer spintrain trained against (spin-eval uses them; GPTQ picks its own scales).
extern const char* const kWeightClipFile;
void save_weight_clip(const std::filesystem::path& file, const std::vector<LayerClip>& clip);

// The orthogonal matrix nearest to r (polar factor U·Vᵀ of its SVD), in float64: removes the float32
// drift of a learned rotation before it is fused and saved.
torch::Tensor nearest_orthogonal(const torch::Tensor& r);

// A loaded model with its online rotations: reads the `rotation` section (if any) and validates
// rotations.safetensors against the model (shapes, orthogonality to 1e-6).
struct LoadedModel {
  Checkpoint checkpoint;
  RotationConfig rotation;  // all false for an ordinary checkpoint
  Rotations rotations;      // the fused R1/R2 from rotations.safetensors (float64), if any
  std::vector<LayerClip> weight_clip;  // learned clip ratios, if the rotation section names a file
  ForwardOptions online() const;  // r3/r4 set from the rotation section, no quantization
};
LoadedModel load_model(const std::filesystem::path& dir);

}  // namespace spin
