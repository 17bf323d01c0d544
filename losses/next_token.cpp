#include "losses/next_token.h"

namespace spin::losses {

torch::Tensor next_token_nll(const torch::Tensor& logits, const torch::Tensor& ids) {
  const int64_t V = logits.size(-1);
  torch::Tensor pred = logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat32).reshape({-1, V});
  torch::Tensor target = ids.narrow(1, 1, ids.size(1) - 1).reshape({-1}).to(pred.device());
  return torch::nn::functional::cross_entropy(pred, target);
}

torch::Tensor kl_to_teacher(const torch::Tensor& student_logits, const torch::Tensor& teacher_logp) {
  torch::Tensor logq = torch::log_softmax(student_logits.to(torch::kFloat32), -1);
  torch::Tensor p = teacher_logp.exp();
  return (p * (teacher_logp - logq)).sum(-1).mean();
}

TopK teacher_topk(const torch::Tensor& teacher_logits, int64_t k) {
  torch::NoGradGuard no_grad;
  torch::Tensor logp = torch::log_softmax(teacher_logits.to(torch::kFloat32), -1);
  auto [values, indices] = logp.topk(std::min<int64_t>(k, logp.size(-1)), -1);
  // Renormalise to a distribution over the k kept tokens.
  values = values - values.logsumexp(-1, true);
  return {values, indices};
}

torch::Tensor kl_topk(const torch::Tensor& student_logits, const TopK& teacher) {
  torch::Tensor logq = torch::log_softmax(student_logits.to(torch::kFloat32), -1).gather(-1, teacher.indices);
  return (teacher.logp.exp() * (teacher.logp - logq)).sum(-1).mean();
}

}  // namespace spin::losses
