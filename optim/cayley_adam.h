// Cayley Adam on the Stiefel manifold (Li, Li & Todorovic, ICLR 2020, Algorithm 2): an Adam-style
// first moment kept on the tangent space and one scalar second moment per matrix (the running
// mean of ||G||_F^2), so the update direction stays a tangent vector and the Cayley step applies.
//
// A per-matrix kernel; HybridOptimizer (optim/hybrid.h) owns the state and calls it.
// The second moment starts at 0 with Adam's bias correction (the paper starts it at 1).
#pragma once

#include <torch/torch.h>

#include "optim/stiefel.h"

namespace spin::optim {

struct CayleyAdamOptions {
  double lr = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double eps = 1e-8;  // added to the bias-corrected second moment under the square root
  RetractionOptions retraction;
};

// One step of X [n,p] (updated in place) for the gradient G [n,p]. `m` [n,p] is the tangent
// first moment and `v` a 0-dim tensor (both undefined on the first step); `step` is 1-based;
// lr replaces opt.lr.
void cayley_adam_update(torch::Tensor& X, const torch::Tensor& G, torch::Tensor& m, torch::Tensor& v,
                        int64_t step, const CayleyAdamOptions& opt, double lr);

}  // namespace spin::optim
