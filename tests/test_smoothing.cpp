// Learnable smoothing scales: exact in float at every position, with and without R4.
#include <gtest/gtest.h>

#include "data/calib_dataset.h"
#include "src/io/checkpoint.h"
#include "src/model/forward.h"
#include "src/rotation/fusion.h"
#include "src/rotation/smoothing.h"
#include "src/train/learnables.h"
#include "tests/test_util.h"

using namespace spin;

namespace {

torch::Tensor logits(const ModelConfig& c, const ModelWeights& w, const torch::Tensor& ids, const ForwardOptions& o) {
  torch::NoGradGuard g;
  return lm_logits(w, forward_hidden(c, w, ids, o));
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
// Random rotations and random log-scales (std 0.5) at every smoothing position, on top of random q/k/v
// biases (Qwen2-style) so that v_out must divide the bias too: the float64 model is unchanged, with
// and without R4 (which removes up_out), and the scales really moved the weights.
TEST(Smoothing, FloatModelUnchangedAtEveryPosition) {
  Checkpoint ck = load_checkpoint(test::asset("models/stories260K"));
  ModelConfig c = ck.config;
  c.attention_bias = true;
  torch::manual_seed(0);
  ModelWeights w = map_weights(c, ck.weights, [](const torch::Tensor& t) { return t.to(torch::kFloat64); });
  for (LayerWeights& L : w.layers) {
    L.q_bias = torch::randn({L.q_proj.size(0)}, torch::kFloat64);
    L.k_bias = torch::randn({L.k_proj.size(0)}, torch::kFloat64);
    L.v_bias = torch::randn({L.v_proj.size(0)}, torch::kFloat64);
  }
  const torch::Tensor ids = data::load_calib(test::asset("data/stories260K-eval.h5").string(), 512, {}).narrow(0, 0, 2);
  const torch::Tensor expected = logits(c, w, ids, {});
  for (bool r4 : {false, true}) {
    RotationConfig rc = RotationConfig::parse_list("r1,r2", "test");
    rc.r4 = r4;
    rc.init = RotationInit::random;
    const ModelWeights base = fold_norms(c, w, rc.r4);
    std::vector<LayerSmoothing> s = init_smoothing(c, r4, torch::kCPU);
    {
      torch::NoGradGuard g;
      for (auto& layer : s)
        for (auto& p : layer.parameters()) p.normal_(0, 0.5);
    }
    EXPECT_EQ(s[0].up_out.defined(), !r4);
    const Rotations rot = init_rotations(c, rc);
    const ModelWeights smoothed = fused_weights(c, base, rot, s);
    const ModelWeights rotated = fused_weights(c, base, rot, {});
    ForwardOptions o;
    o.r4 = r4;
    EXPECT_LT(max_diff(logits(c, smoothed, ids, o), expected), 1e-9) << "r4 " << r4;
    for (auto [a, b] : {std::pair{&smoothed.layers[1].q_proj, &rotated.layers[1].q_proj},
                        {&smoothed.layers[1].v_proj, &rotated.layers[1].v_proj},
                        {&smoothed.layers[1].up_proj, &rotated.layers[1].up_proj}})
      if (!(r4 && a == &smoothed.layers[1].up_proj)) {
        EXPECT_GT(max_diff(*a, *b), 1e-2);
      }
  }
}
}  // namespace
