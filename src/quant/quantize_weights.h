// RTN fake quantization of every linear weight of a decoder (embeddings and lm_head stay float), with
// optional learnable clip ratios per output row.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "src/kernels/fake_quant.h"
#include "src/model/weights.h"

namespace spin {

// Learnable weight clip ratios of one layer: one [out] float32 tensor per linear, in kLinearNames order.
struct LayerClip {
  static constexpr std::array<const char*, 7> kLinearNames = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                              "gate_proj", "up_proj", "down_proj"};
  std::array<torch::Tensor, 7> ratio;
};

// The seven linears of a layer, in LayerClip::kLinearNames order.
std::array<torch::Tensor*, 7> layer_linears(LayerWeights& layer);

// Every ratio = `initial` (the --w-clip value), leaves requiring grad on `device`.
std::vector<LayerClip> init_clip(const ModelConfig& config, double initial, torch::Device device);

// Projects every ratio into [kMinClip, 1] in place (after an optimizer step).
constexpr double kMinClip = 0.5;
void clamp_clip(std::vector<LayerClip>& clip);

// Each q/k/v/o/gate/up/down weight [out, in] fake-quantized per output row in groups along `in`
// (straight-through), with the clip ratios of `clip` when given, spec.clip otherwise.
LayerWeights fake_quant_layer(const LayerWeights& layer, const QuantSpec& spec, const LayerClip* clip = nullptr);
// Every layer; `clip` is empty or has one entry per layer.
ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec,
                                const std::vector<LayerClip>& clip = {});

}  // namespace spin
