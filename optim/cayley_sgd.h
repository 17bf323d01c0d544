// Cayley SGD with momentum on the Stiefel manifold (Li, Li & Todorovic, ICLR 2020, Algorithm 1),
// the update SpinQuant's SGDG performs: the momentum is projected to the tangent space as the
// skew generator W, the step size is capped by 2q/||W||_1, the Cayley step is a few fixed-point
// iterations, and an optional QR re-orthonormalisation runs periodically or on drift.
//
// A per-matrix kernel; HybridOptimizer (optim/hybrid.h) owns the state and calls it.
// No weight-decay option: the generator of X itself is zero for X^T X = I, so decay toward 0 has
// no tangent component and would never change a Stiefel parameter.
#pragma once

#include <torch/torch.h>

#include "optim/stiefel.h"

namespace spin::optim {

struct CayleySGDOptions {
  double lr = 0.1;
  double momentum = 0.9;  // beta in M <- beta M - G
  bool nesterov = false;  // step along beta M - G instead of M
  RetractionOptions retraction;
};

// One step of X [n,p] (updated in place) for the gradient G [n,p]. `momentum` [n,p] is the
// tangent momentum (undefined on the first step); `step` is this matrix's 1-based step count;
// lr replaces opt.lr (the scheduled rate).
void cayley_sgd_update(torch::Tensor& X, const torch::Tensor& G, torch::Tensor& momentum,
                       int64_t step, const CayleySGDOptions& opt, double lr);

}  // namespace spin::optim
