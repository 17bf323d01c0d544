// --mode e2e: R1, R2 and the scales learned through the whole fake-quantized model (SpinQuant).
//
// Per optimizer step:
//   Wq = student_weights(base, learnables)        rotate → smooth → fake-quant (src/train/learnables.h),
//                                                 once per step, in the training dtype, with autograd
//   for each micro-batch: loss(forward(Wq as detached leaves)).backward()   gradients pile up on the leaves
//   Wq.backward(leaf gradients)                   one backward to R1/R2, scales and clip ratios
//   all-reduce of the loss and gradients          every rank takes the same step (src/dist/group.h)
//   take_step                                     Cayley SGD/Adam on R (stays orthogonal), Adam on the rest
// The float teacher for KL losses is `base` itself evaluated without rotation or quantization (same
// function as the input model), so no second copy of the weights exists. --save-every writes the
// learnables and the optimizer state to --state-dir atomically; --resume continues from there bitwise
// identically (same thread count) and refuses a state made with options that affect the result.
#pragma once

#include "src/train/mode.h"

namespace spin {

LearnResult learn_e2e(const Job& job, Learnables& learnables);

}  // namespace spin
