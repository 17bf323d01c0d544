// The Llama forward against an independent PyTorch reference, and the known eval NLL of stories260K.
#include <gtest/gtest.h>

#include "data/calib_dataset.h"
#include "src/checkpoint.h"
#include "src/evaluate.h"
#include "src/safetensors.h"
#include "tests/test_util.h"

using namespace spin;

namespace {

struct Stories : ::testing::Test {
  static void SetUpTestSuite() {
    ck = new Checkpoint(load_checkpoint(test::asset("models/stories260K")));
    ids = new torch::Tensor(data::load_calib(test::asset("data/stories260K-eval.h5").string(), 512, {}));
  }
  static void TearDownTestSuite() {
    delete ck;
    delete ids;
  }
  static Checkpoint* ck;
  static torch::Tensor* ids;
};
Checkpoint* Stories::ck = nullptr;
torch::Tensor* Stories::ids = nullptr;

TEST_F(Stories, ConfigAndTiedEmbeddings) {
  const ModelConfig& c = ck->config;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(ck->weights.lm_head.is_same(ck->weights.embed_tokens));
}

// Runs the forward in `dtype` on two eval rows and compares with tests/reference/llama_forward.py (float64).
int compare_with_reference(const Checkpoint& ck, const torch::Tensor& batch, torch::ScalarType dtype, double tol) {
  ModelWeights w = map_weights(ck.config, ck.weights, [&](const torch::Tensor& t) { return t.to(dtype); });
  torch::NoGradGuard g;
  torch::Tensor logits = lm_logits(w, forward_hidden(ck.config, w, batch, {})).to(torch::kFloat64);
  auto dir = test::scratch(std::string("model_reference_") + c10::toString(dtype));
  save_safetensors((dir / "io.safetensors").string(), {{"ids", batch}, {"logits", logits}});
  const std::string cmd = "/usr/bin/python3 " + (test::root() / "tests/reference/llama_forward.py").string() + " " +
                          test::asset("models/stories260K").string() + " " + (dir / "io.safetensors").string() + " " +
                          std::to_string(tol);
  return test::run(cmd, dir / "log.txt");
}

// Float64: the same mathematics as the reference, to rounding.
TEST_F(Stories, F64LogitsMatchPythonReference) {
  EXPECT_EQ(compare_with_reference(*ck, ids->narrow(0, 0, 2), torch::kFloat64, 1e-9), 0);
}

// Float32 over 2 x 512 positions: measured max |diff| 1.1e-4 against the float64 reference (f32 rounding
// through 5 layers on logits of magnitude ~15).
TEST_F(Stories, F32LogitsMatchPythonReference) {
  EXPECT_EQ(compare_with_reference(*ck, ids->narrow(0, 0, 2), torch::kFloat32, 2e-4), 0);
}

TEST_F(Stories, EvalNllMatchesKnownValue) {
  ModelRef m{&ck->config, &ck->weights, {}};
  EvalResult r = evaluate(m, *ids, 16);
  EXPECT_EQ(r.tokens, 64 * 511);
  EXPECT_NEAR(r.nll, 2.7524, 5e-4);
  EXPECT_NEAR(r.ppl, 15.68, 0.01);
}

TEST_F(Stories, Bf16ForwardIsCloseToF32) {
  ModelWeights w = map_weights(ck->config, ck->weights, [](const torch::Tensor& t) { return t.to(torch::kBFloat16); });
  ModelRef m{&ck->config, &w, {}};
  EvalResult r = evaluate(m, ids->narrow(0, 0, 8), 8);
  ModelRef f{&ck->config, &ck->weights, {}};
  EvalResult rf = evaluate(f, ids->narrow(0, 0, 8), 8);
  EXPECT_NEAR(r.nll, rf.nll, 0.02);
  EXPECT_NE(r.nll, rf.nll);  // it did compute in bf16
}

}  // namespace
