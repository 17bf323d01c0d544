// The spintrain loop: learn R1/R2 under the fake-quant proxy, then fuse, export and evaluate.
//
// Per optimizer step:
//   W  = rotate_weights(base, R1, R2)           once per step, in the training dtype, with autograd
//   Wq = fake_quant_weights(W)                   straight-through estimator
//   for each micro-batch: loss(forward(Wq as detached leaves)).backward()   gradients pile up on the leaves
//   Wq.backward(leaf gradients)                   one backward through rotation + quantization to R1/R2
//   optimizer.step()                              Cayley SGD/Adam keeps R orthogonal
// base = fold_norms (+ R4 fused) of the input model, frozen, kept once. The float teacher for KL losses
// is `base` itself evaluated without rotation or quantization (same function as the input model), so no
// second copy of the weights exists.
#pragma once

#include "src/train_config.h"

namespace spin {

struct TrainSummary {
  nlohmann::json eval_table;  // rows: {name, nll, ppl, kl}
  double final_loss = 0;
  double max_orthogonality_error = 0;
  int64_t steps_run = 0;
};

// Runs the whole job described by `config` (train, export to config.out, evaluate).
TrainSummary run_spintrain(const TrainConfig& config);

}  // namespace spin
