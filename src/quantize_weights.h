// RTN fake quantization of every linear weight of a decoder (embeddings and lm_head stay float).
#pragma once

#include "src/fake_quant.h"
#include "src/model_weights.h"

namespace spin {

// Each q/k/v/o/gate/up/down weight [out, in] fake-quantized per output row in groups along `in`.
// Differentiable (straight-through) when the weights require grad.
ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec);

}  // namespace spin
