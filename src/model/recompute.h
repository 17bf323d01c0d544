// Activation memory for long sequences: forward + backward with per-layer recomputation.
//
// A plain backward keeps every intermediate of every layer (the [B, heads, T, T] attention scores
// and probabilities dominate at long T). Here the forward keeps only each decoder layer's input
// [B, T, hidden]; the backward walks the layers in reverse, recomputes one layer with autograd on,
// and back-propagates through it alone. Peak activation memory: (layers + 1) hidden states + one
// layer's intermediates + the logits, for one extra forward of the decoder layers.
#pragma once

#include <functional>

#include "src/model/forward.h"

namespace spin {

// Computes loss_of_logits(lm_logits(w, forward_hidden(config, w, ids, options))) and back-propagates
// it: gradients accumulate on every tensor of `w` that requires grad (as loss.backward() would).
// Returns the loss (a detached scalar). Same gradients as the plain backward (tests/test_recompute.cpp).
torch::Tensor backward_with_recompute(const ModelConfig& config, const ModelWeights& w, const torch::Tensor& ids,
                                      const ForwardOptions& options,
                                      const std::function<torch::Tensor(const torch::Tensor& logits)>& loss_of_logits);

}  // namespace spin
