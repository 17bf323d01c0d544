// The spintrain job: learn rotations (and, with --smooth/--learn-clip, smoothing scales and clip
// ratios) under the fake-quant proxy, then fuse, evaluate and export. --mode e2e is the loop below;
// --mode blockwise (src/train/blockwise.h) and --mode adapt (src/train/adapt.h) replace it; evaluation
// and export are shared.
//
// Per e2e optimizer step:
//   Wq = student_weights(base, learnables)       rotate → smooth → fake-quant (src/train/learnables.h), once
//                                                 per step, in the training dtype, with autograd
//   for each micro-batch: loss(forward(Wq as detached leaves)).backward()   gradients pile up on the leaves
//   Wq.backward(leaf gradients)                   one backward to R1/R2, scales and clip ratios
//   optimizer.step()                              Cayley SGD/Adam on R (stays orthogonal), Adam on the rest
// base = fold_norms (+ R4's weight half) of the input model in the training dtype, frozen, kept once.
// The float teacher for KL losses is `base` itself evaluated without rotation or quantization (same
// function as the input model), so no second copy of the weights exists.
#pragma once

#include "src/train/config.h"

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
