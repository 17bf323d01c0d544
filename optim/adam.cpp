// Adam / AdamW kernel; see adam.h.
#include "optim/adam.h"

#include <cmath>

namespace spin::optim {

void adam_update(torch::Tensor& P, const torch::Tensor& G, torch::Tensor& m, torch::Tensor& v,
                 int64_t step, const AdamOptions& opt, double lr) {
  torch::NoGradGuard no_grad;
  if (!m.defined()) {
    m = torch::zeros_like(P);
    v = torch::zeros_like(P);
  }
  torch::Tensor grad = G;
  if (opt.weight_decay != 0) {
    if (opt.decoupled) P.mul_(1 - lr * opt.weight_decay);
    else grad = G.add(P, opt.weight_decay);
  }
  m.mul_(opt.beta1).add_(grad, 1 - opt.beta1);
  v.mul_(opt.beta2).addcmul_(grad, grad, 1 - opt.beta2);
  double bias1 = 1 - std::pow(opt.beta1, static_cast<double>(step));
  double bias2 = 1 - std::pow(opt.beta2, static_cast<double>(step));
  torch::Tensor denom = (v.sqrt() / std::sqrt(bias2)).add_(opt.eps);
  P.addcdiv_(m, denom, -lr / bias1);
}

}  // namespace spin::optim
