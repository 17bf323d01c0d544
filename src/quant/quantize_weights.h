// RTN fake quantization of every linear weight of a decoder (embeddings and lm_head stay float), with
// optional learnable clip ratios per output row.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "src/kernels/fake_quant.h"
#include "src/model/weights.h"

namespace spin {

// Learnable weight clip ratios of one layer: one [out] float32 tensor per linear, in layer_linears() order.
struct LayerClip {
  std::array<torch::Tensor, 7> ratio;
};

// Every ratio = `initial` (the --w-clip value), leaves requiring grad on `device`.
std::vector<LayerClip> init_clip(const ModelConfig& config, double initial, torch::Device device);

// Projects every ratio into [kMinClip, 1] in place (after an optimizer step).
constexpr double kMinClip = 0.5;
void clamp_clip(std::vector<LayerClip>& clip);

// The weight clip search of RTN (as in GPTQ's and QuaRot's `mse` option): for each output row of
// w [out, in], the ratio r in the grid 1, 1 - d, 1 - 2d, ..., kMinClip (d = (1 - kMinClip) / steps)
// that minimises ||w_row - RTN(w_row; r)||^2 under `spec`. Returns [out] float32 on w's device.
torch::Tensor search_clip(const torch::Tensor& w, const QuantSpec& spec, int steps = 50);
// search_clip() of every linear of `layer` into `clip`'s ratios, in place (no autograd record).
void search_layer_clip(const LayerWeights& layer, const QuantSpec& spec, LayerClip& clip);

// Learned clip ratios on disk (--learn-clip): "layers.<i>.<q_proj|...|down_proj>" [out] float32 in
// kWeightClipFile, which a rotated checkpoint names in its rotation section ("weight_clip_file"). RTN
// of the checkpoint's linears with these ratios is the quantizer spintrain trained against (spin-eval
// applies them; GPTQ picks its own scales).
extern const char* const kWeightClipFile;
void save_weight_clip(const std::filesystem::path& file, const std::vector<LayerClip>& clip);
// Validated against `config` (shape [out] per linear, values in [kMinClip, 1]).
std::vector<LayerClip> load_weight_clip(const std::filesystem::path& file, const ModelConfig& config);

// Each q/k/v/o/gate/up/down weight [out, in] fake-quantized per output row in groups along `in`
// (straight-through), with the clip ratios of `clip` when given, spec.clip otherwise.
LayerWeights fake_quant_layer(const LayerWeights& layer, const QuantSpec& spec, const LayerClip* clip = nullptr);
// Every layer; `clip` is empty or has one entry per layer.
ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec,
                                const std::vector<LayerClip>& clip = {});

}  // namespace spin
