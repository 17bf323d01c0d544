// Sequential GPTQ over a whole decoder: layer by layer, each layer's linears see the calibration
// activations produced by the already-quantized earlier layers (and, within a layer, by its already-
// quantized earlier linears: q/k/v, then o, then gate/up, then down — "true sequential").
//
// Memory: the hidden states [rows, T, hidden] at the current layer boundary, one batch of one layer's
// activations, and the Hessians of the linears being quantized.
// Online Hadamards are honoured: with r3 the attention (o_proj's input) uses Hadamard-rotated q/k, with
// r4 down_proj's Hessian is built from x·H, its actual input.
#pragma once

#include <functional>
#include <string>

#include "src/quant/gptq.h"
#include "src/model/config.h"
#include "src/model/weights.h"

namespace spin {

// The input a linear of a decoder layer reads.
enum class LinearInput { kQkv, kO, kGateUp, kDown };

// One decoder layer (float, no activation quantization): x [B, T, hidden] -> [B, T, hidden], the same
// computation as forward_hidden's layers (r3/r4 as in ForwardOptions). `capture` (optional) receives each
// linear input as it is computed: kQkv, kGateUp [B, T, hidden], kO [B, T, q_size], kDown [B, T, intermediate].
torch::Tensor decoder_layer(const ModelConfig& config, const LayerWeights& layer, const torch::Tensor& x, bool r3,
                            bool r4, const std::function<void(LinearInput, const torch::Tensor&)>& capture = {});

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
