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
#include "src/rotation/init.h"

namespace spin {

// Writes the rotated checkpoint (weights in source.dtype, sharded like the source) atomically.
// `extra_section` is merged into the rotation section; `extra_files` may add files to the directory;
// section.weight_clip_file names the learned clip ratios (kWeightClipFile, written by save_weight_clip).
void export_rotated(const std::filesystem::path& out, const Checkpoint& source, const ModelWeights& fused,
                    const RotationConfig& rc, const Rotations& rotations, const nlohmann::json& extra_section = {},
                    const std::function<void(const std::filesystem::path& dir)>& extra_files = {});

// Copies the rotations file named by `config_json`'s rotation section (if any) from `source_dir` into
// `dir`: a checkpoint derived from a rotated one (e.g. its GPTQ version) keeps the metadata.
void copy_rotations_file(const nlohmann::json& config_json, const std::filesystem::path& source_dir,
                         const std::filesystem::path& dir);

// GPTQ chooses its own scales, so the learned clip ratios of spintrain --learn-clip (the rotation
// section's weight_clip_file) do not apply to GPTQ's output, which does not carry the file either:
// removes the reference from `config_json` and returns the note to record in the output's config
// (null when there was no reference).
nlohmann::json drop_learned_clip(nlohmann::json& config_json);

// A loaded model with its online rotations: reads the `rotation` section (if any) and validates
// rotations.safetensors against the model (shapes, orthogonality to 1e-6).
struct LoadedModel {
  Checkpoint checkpoint;
  RotationConfig rotation;  // all false for an ordinary checkpoint
  Rotations rotations;      // the fused R1/R2 from rotations.safetensors (float64), if any
  std::vector<LayerClip> weight_clip;  // learned clip ratios, if the rotation section names a file
  ForwardOptions online() const { return online_hadamards(rotation.r3, rotation.r4); }
};
LoadedModel load_model(const std::filesystem::path& dir);

}  // namespace spin
