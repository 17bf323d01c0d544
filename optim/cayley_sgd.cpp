// Cayley SGD kernel; see cayley_sgd.h.
#include "optim/cayley_sgd.h"

namespace spin::optim {

void cayley_sgd_update(torch::Tensor& X, const torch::Tensor& G, torch::Tensor& momentum,
                       int64_t step, const CayleySGDOptions& opt, double lr) {
  torch::NoGradGuard no_grad;
  torch::Tensor M = momentum.defined() ? opt.momentum * momentum - G : -G;
  torch::Tensor W = cayley_generator(X, M);  // [n,n] skew
  momentum = W.mm(X);                        // tangent momentum at X
  if (opt.nesterov) W = cayley_generator(X, opt.momentum * momentum - G);
  X.copy_(stiefel_step(X, W, lr, opt.retraction, step));
}

}  // namespace spin::optim
