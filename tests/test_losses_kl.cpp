// KL losses against the float teacher: the full KL and the memory-light top-k KL, checked against a
// float64 reference written out here (values and gradients).
#include <gtest/gtest.h>

#include <cmath>

#include "losses/next_token.h"

using namespace spin::losses;

namespace {

// KL(p‖q) per position, p = the teacher's top-k distribution renormalised, q the student's full softmax,
// by explicit loops in double; mean over positions. teacher/student [P, V].
double reference_topk_kl(const torch::Tensor& teacher, const torch::Tensor& student, int64_t k) {
  const int64_t P = teacher.size(0), V = teacher.size(1);
  double total = 0;
  for (int64_t p = 0; p < P; ++p) {
    std::vector<std::pair<double, int64_t>> t;
    double smax = -INFINITY, tmax = -INFINITY;
    for (int64_t v = 0; v < V; ++v) {
      t.emplace_back(teacher[p][v].item<double>(), v);
      smax = std::max(smax, student[p][v].item<double>());
      tmax = std::max(tmax, t.back().first);
    }
    std::sort(t.begin(), t.end(), [](auto& a, auto& b) { return a.first > b.first; });
    double zs = 0, zt = 0;
    for (int64_t v = 0; v < V; ++v) zs += std::exp(student[p][v].item<double>() - smax);
    for (int64_t i = 0; i < k; ++i) zt += std::exp(t[i].first - tmax);
    for (int64_t i = 0; i < k; ++i) {
      const double logp = t[i].first - tmax - std::log(zt);
      const double logq = student[p][t[i].second].item<double>() - smax - std::log(zs);
      total += std::exp(logp) * (logp - logq);
    }
  }
  return total / double(P);
}

TEST(KlTopK, MatchesReferenceAndFullKlAtK) {
  torch::manual_seed(0);
  const int64_t B = 2, T = 3, V = 40;
  torch::Tensor teacher = 3 * torch::randn({B, T, V}), student = 3 * torch::randn({B, T, V});
  for (int64_t k : {1, 5, 17, 40}) {
    const double ours = kl_topk(student, teacher_topk(teacher, k)).item<double>();
    EXPECT_NEAR(ours, reference_topk_kl(teacher.reshape({-1, V}), student.reshape({-1, V}), k), 1e-5) << "k " << k;
  }
  // k = V keeps the whole distribution: the full KL.
  const double full = kl_to_teacher(student, torch::log_softmax(teacher, -1)).item<double>();
  EXPECT_NEAR(kl_topk(student, teacher_topk(teacher, V)).item<double>(), full, 1e-5);
  EXPECT_NEAR(kl_topk(student, teacher_topk(teacher, 1000)).item<double>(), full, 1e-5) << "k > V is clamped";
  // Zero when the student is the teacher (full KL), positive otherwise.
  EXPECT_NEAR(kl_to_teacher(teacher, torch::log_softmax(teacher, -1)).item<double>(), 0, 1e-6);
  EXPECT_GT(kl_topk(student, teacher_topk(teacher, 5)).item<double>(), 0);
}

// The gradient to the student logits equals autograd through the float64 formula
// Σ_i p_i (log p_i − log_softmax(s)_i) over the teacher's top k.
TEST(KlTopK, GradientMatchesFloat64Formula) {
  torch::manual_seed(1);
  const int64_t V = 30, k = 6;
  torch::Tensor teacher = 2 * torch::randn({1, 4, V});
  torch::Tensor student = (2 * torch::randn({1, 4, V})).requires_grad_(true);
  const TopK top = teacher_topk(teacher, k);
  kl_topk(student, top).backward();

  torch::Tensor s64 = student.detach().to(torch::kFloat64).requires_grad_(true);
  torch::Tensor logp = top.logp.to(torch::kFloat64);
  torch::Tensor logq = torch::log_softmax(s64, -1).gather(-1, top.indices);
  (logp.exp() * (logp - logq)).sum(-1).mean().backward();
  EXPECT_LT((student.grad().to(torch::kFloat64) - s64.grad()).abs().max().item<double>(), 1e-6);
  // The top-k probabilities sum to one after renormalisation.
  EXPECT_LT((top.logp.exp().sum(-1) - 1).abs().max().item<double>(), 1e-6);
}

}  // namespace
