// Cayley Adam kernel; see cayley_adam.h.
#include "optim/cayley_adam.h"

#include <cmath>

namespace spin::optim {

void cayley_adam_update(torch::Tensor& X, const torch::Tensor& G, torch::Tensor& m, torch::Tensor& v,
                        int64_t step, const CayleyAdamOptions& opt, double lr) {
  torch::NoGradGuard no_grad;
  if (!m.defined()) {
    m = torch::zeros_like(X);
    v = torch::zeros({}, X.options());
  }
  m = opt.beta1 * m + (1 - opt.beta1) * G;
  v = opt.beta2 * v + (1 - opt.beta2) * G.square().sum();
  double bias1 = 1 - std::pow(opt.beta1, static_cast<double>(step));
  double bias2 = 1 - std::pow(opt.beta2, static_cast<double>(step));
  double r = bias1 * std::sqrt(v.item<double>() / bias2 + opt.eps);
  torch::Tensor W = cayley_generator(X, m) * (-1.0 / r);  // [n,n] skew, descent direction W X
  m = W.mm(X) * (-r);                                     // first moment projected to the tangent space
  X.copy_(stiefel_step(X, W, lr, opt.retraction, step));
}

}  // namespace spin::optim
