// Gradient cut between the rotated, fake-quantized weights and the forward passes that use them.
//
// A training step computes W' = fake_quant(rotate(W, R)) once, then runs each micro-batch's forward and
// backward on detached copies of W' (the "leaves"): their .grad accumulates dL/dW' over micro-batches.
// backward_from_leaves then carries those gradients through rotation and quantization to R in a single
// backward, so the weight transform costs one forward and one backward per step, not per micro-batch.
#pragma once

#include <torch/torch.h>

#include "src/model/weights.h"

namespace spin {

// Detached copies, requiring grad, of the tensors of `w` that require grad; the others are shared.
ModelWeights grad_leaves(const ModelConfig& config, const ModelWeights& w);

// Backward from `w` with the gradients accumulated on `leaves` (= grad_leaves(config, w)).
void backward_from_leaves(const ModelConfig& config, ModelWeights& w, ModelWeights& leaves);

}  // namespace spin
