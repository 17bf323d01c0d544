// Per-layer recomputation (src/model/recompute.h) gives the plain backward's loss and gradients: R1 (on the
// activations) and R2 through rotation and W4 fake quant, with A8 activations and KV8, R3/R4 on.
#include <gtest/gtest.h>

#include "data/calib_dataset.h"
#include "losses/next_token.h"
#include "src/quant/quantize_weights.h"
#include "src/model/recompute.h"
#include "src/rotation/format.h"
#include "src/rotation/fusion.h"
#include "tests/test_util.h"

using namespace spin;

namespace {

struct Grads {
  torch::Tensor loss;
  std::vector<torch::Tensor> grads;  // R1, then every R2
};

Grads run(bool recompute, torch::ScalarType dtype) {
  const Checkpoint ck = load_checkpoint(test::asset("models/stories260K"));
  const ModelConfig& c = ck.config;
  RotationConfig rc = RotationConfig::parse_list("r1,r2,r3,r4", "test");
  rc.init = RotationInit::random_hadamard;
  const ModelWeights base = map_weights(c, fold_norms(c, ck.weights, rc.r4), [&](const torch::Tensor& t) { return t.to(dtype); });
  const Rotations init = init_rotations(c, rc);
  Rotations p;
  std::vector<torch::Tensor> leaves;
  leaves.push_back(p.r1 = init.r1.to(dtype).requires_grad_(true));
  for (const auto& r : init.r2) leaves.push_back(p.r2.emplace_back(r.to(dtype).requires_grad_(true)));
  const ModelWeights w = fake_quant_weights(rotate_weights(c, base, p, EmbeddingR1::online), {4, 0, false, 1.0});
  ForwardOptions o;
  o.act = {8, 0, true, 1.0};
  o.key = o.value = {8, 0, true, 1.0};
  o.r3 = o.r4 = true;
  const torch::Tensor ids = data::load_calib(test::asset("data/stories260K-eval.h5").string(), 512, {}).narrow(0, 0, 2);
  auto loss_fn = [&](const torch::Tensor& logits) { return losses::next_token_nll(logits, ids); };
  Grads g;
  if (recompute) {
    g.loss = backward_with_recompute(c, w, ids, o, loss_fn);
  } else {
    torch::Tensor loss = loss_fn(lm_logits(w, forward_hidden(c, w, ids, o)));
    loss.backward();
    g.loss = loss.detach();
  }
  for (const auto& l : leaves) g.grads.push_back(l.grad());
  return g;
}

void expect_same(const Grads& a, const Grads& b, double tol) {
  EXPECT_LE((a.loss - b.loss).abs().item<double>(), tol);
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_TRUE(a.grads[i].defined() && b.grads[i].defined()) << i;
    const double scale = a.grads[i].abs().max().item<double>();
    EXPECT_GT(scale, 0) << i;
    EXPECT_LE((a.grads[i] - b.grads[i]).abs().max().item<double>(), tol * std::max(1.0, scale)) << "gradient " << i;
  }
}

}  // namespace

TEST(Recompute, SameLossAndGradientsAsPlainBackwardFloat64) { expect_same(run(false, torch::kFloat64), run(true, torch::kFloat64), 1e-10); }

TEST(Recompute, SameLossAndGradientsAsPlainBackwardFloat32) { expect_same(run(false, torch::kFloat32), run(true, torch::kFloat32), 1e-5); }
