// Adam / AdamW for the Euclidean parameter groups of HybridOptimizer (norm scales, biases, ...),
// with the update rule and bias correction of torch::optim::Adam and torch::optim::AdamW.
#pragma once

#include <torch/torch.h>

namespace spin::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool decoupled = true;  // AdamW (p <- p (1 - lr wd)) when true, L2 added to the gradient when false
};

// One step of P (updated in place) for the gradient G; m and v (undefined on the first step) are
// the moment buffers shaped like P; `step` is 1-based; lr replaces opt.lr.
void adam_update(torch::Tensor& P, const torch::Tensor& G, torch::Tensor& m, torch::Tensor& v,
                 int64_t step, const AdamOptions& opt, double lr);

}  // namespace spin::optim
