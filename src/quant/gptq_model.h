// Sequential GPTQ over a whole decoder: layer by layer, each layer's linears see the calibration
// activations produced by the already-quantized earlier layers (and, within a layer, by its already-
// quantized earlier linears: q/k/v, then o, then gate/up, then down — "true sequential").
//
// Each group of linears that reads one input (LinearInput) is one stage: the layer is walked over every
// calibration batch up to that input (decoder_layer's tap accumulates its Hessian and stops the walk),
// the group is quantized, and the next stage walks again through the now-quantized linears; a last walk
// advances the hidden states to the next layer (AutoGPTQ's true-sequential loop does the same).
// Memory: the hidden states [rows, T, hidden] at the current layer boundary, one batch of one layer's
// activations, and the Hessian of the group being quantized.
// Online Hadamards are honoured: with r3 the attention (o_proj's input) uses Hadamard-rotated q/k, with
// r4 down_proj's Hessian is built from x·H, its actual input.
#pragma once

#include <functional>
#include <string>

#include "src/model/config.h"
#include "src/model/weights.h"
#include "src/quant/gptq.h"

namespace spin {

struct GptqModelOptions {
  GptqOptions gptq;
  bool r3 = false, r4 = false;  // the model's online Hadamards (LoadedModel::online())
  int64_t batch_size = 8;       // calibration rows per forward pass
};

// Called once per quantized linear, in quantization order, with its HF weight name
// ("model.layers.0.self_attn.q_proj.weight") and result.
using OnQuantized = std::function<void(const std::string& name, const QuantizedWeight& q)>;

// GPTQ of every q/k/v/o/gate/up/down weight on calibration ids [rows, T] (int64). Returns a copy of
// `weights` with those linears replaced by their dequantized values (in the weights' dtype and device);
// embeddings, norms and lm_head are unchanged.
ModelWeights gptq_model(const ModelConfig& config, const ModelWeights& weights, const torch::Tensor& ids,
                        const GptqModelOptions& options, const OnQuantized& on_quantized = {});

}  // namespace spin
