// adapt_rotations (closed-form ITQ-style rotation refinement) on stories260K: shapes and orthogonality,
// a monotone objective that an independent recomputation through the rotated model confirms,
// block-diagonal refinement, float invariance of the fused model, determinism, and block_polar against
// an SVD oracle.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "data/calib_dataset.h"
#include "src/train/adapt.h"
#include "src/base/check.h"
#include "src/rotation/format.h"
#include "src/rotation/fusion.h"
#include "src/rotation/init.h"
#include "tests/test_util.h"

using namespace spin;
namespace F = torch::nn::functional;

namespace {

const QuantSpec kW4{4, 0, false, 1.0}, kW4g32{4, 32, false, 1.0}, kA4{4, 0, true, 1.0};

// A quantization setting as the trainer passes it to adapt_rotations.
struct Setting {
  std::string name;
  QuantSpec weight;
  ForwardOptions quant;  // act / key / value and the online Hadamards r3 / r4
};

Setting w4a4() {
  ForwardOptions q;
  q.act = kA4;
  return {"W4 per-row + A4", kW4, q};
}

Setting w4g32a4kv4() {
  ForwardOptions q;
  q.act = q.key = q.value = kA4;
  q.r3 = q.r4 = true;
  return {"W4 g32 + A4 + KV4, R3+R4", kW4g32, q};
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }
double orthogonality_error(const torch::Tensor& r) {
  return max_abs(r.t().matmul(r) - torch::eye(r.size(0), torch::kFloat64));
}

// ||X − Q(X)||² / ||X||², X quantized along its last dimension (as the forward and fake_quant_weights do).
double relative_error(const torch::Tensor& x, const QuantSpec& spec) {
  return (x - fake_quant(x, spec)).pow(2).sum().item<double>() / x.pow(2).sum().item<double>();
}

struct Adapt : ::testing::Test {
  static void SetUpTestSuite() {
    ck = new Checkpoint(load_checkpoint(test::asset("models/stories260K")));
    calib = new torch::Tensor(
        data::load_calib(test::asset("data/stories260K-calib.h5").string(), ck->config.vocab_size, {}));
  }
  static void TearDownTestSuite() {
    delete ck;
    delete calib;
  }
  static const ModelConfig& config() { return ck->config; }
  // The first `rows` calibration rows (512 tokens each).
  static torch::Tensor ids(int64_t rows = 2) { return calib->narrow(0, 0, rows); }
  // Random-Hadamard R1 and R2 (+ R3/R4 when the setting uses them), seed 0.
  static RotationConfig rotation_config(const Setting& s) {
    RotationConfig rc = RotationConfig::parse_list(s.quant.r4 ? "r1,r2,r3,r4" : "r1,r2", "test");
    rc.seed = 0;
    return rc;
  }
  static ModelWeights base(const Setting& s) { return fold_norms(config(), ck->weights, rotation_config(s).r4); }
  static Rotations init(const Setting& s) { return init_rotations(config(), rotation_config(s)); }
  static AdaptResult adapt(const Setting& s, const AdaptOptions& o, const torch::Tensor& calib_ids,
                           const Rotations& start) {
    return adapt_rotations(config(), base(s), start, calib_ids, s.weight, s.quant, o);
  }
  static AdaptResult adapt(const Setting& s, const AdaptOptions& o = {}) { return adapt(s, o, ids(), init(s)); }

  static Checkpoint* ck;
  static torch::Tensor* calib;
};
Checkpoint* Adapt::ck = nullptr;
torch::Tensor* Adapt::calib = nullptr;

// The objectives of the "r1" and "r2.<l>" stages recomputed without adapt_rotation.cpp's terms: fuse
// `rot` into the model (rotate_weights, float64), run the rotated float model over every token and sum
// the relative RTN errors of the tensors each rotation touches, each quantized along its last dimension
// exactly as the quantized forward would see it. Returns {E_r1, E_r2.0, E_r2.1, ...}.
std::vector<double> independent_objectives(const ModelConfig& c, const ModelWeights& base, const Rotations& rot,
                                           const torch::Tensor& ids, const Setting& s) {
  torch::NoGradGuard no_grad;
  const ModelWeights w = rotate_weights(c, base, rot);
  ForwardOptions float_model;
  float_model.r3 = s.quant.r3;
  float_model.r4 = s.quant.r4;
  const QuantSpec &act = s.quant.act, &value = s.quant.value, &weight = s.weight;
  std::vector<double> e(1 + c.num_hidden_layers, 0.0);
  torch::Tensor x = embed(w, ids);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    double& r1 = e[0];
    double& r2 = e[1 + l];
    torch::Tensor h, heads, mlp_in;  // the linear inputs of the float layer
    torch::Tensor next = decoder_layer(c, L, x, float_model, [&](LinearInput in, const torch::Tensor& t) {
      if (in == LinearInput::attn_in) h = t;
      if (in == LinearInput::attn_heads) heads = t;
      if (in == LinearInput::mlp_in) mlp_in = t;
      return true;
    });
    if (act.enabled()) {
      r1 += relative_error(h, act) + relative_error(mlp_in, act);
      r2 += relative_error(heads, act);  // [B, T, nh·hd]: per token over every head
    }
    if (value.enabled())  // [B, T, nkv, hd]: per KV head
      r2 += relative_error(F::linear(h, L.v_proj, L.v_bias).view({h.size(0), h.size(1), -1, c.head_dim}), value);
    if (weight.enabled()) {
      for (const torch::Tensor& t : {L.q_proj, L.k_proj, L.v_proj, L.o_proj, L.gate_proj, L.up_proj, L.down_proj})
        r1 += relative_error(t, weight);
      r2 += relative_error(L.v_proj, weight) + relative_error(L.o_proj, weight);
    }
    x = next;
  }
  return e;
}

void expect_relative_near(double actual, double expected, const std::string& what) {
  EXPECT_NEAR(actual, expected, 1e-9 * std::abs(expected)) << what;
}

TEST_F(Adapt, ShapesOrthogonalityAndZeroSteps) {
  const ModelConfig& c = config();
  const Setting s = w4g32a4kv4();
  AdaptOptions o;
  o.steps = 3;
  const AdaptResult r = adapt(s, o);
  ASSERT_EQ(r.rotations.r1.sizes(), torch::IntArrayRef({c.hidden_size, c.hidden_size}));
  ASSERT_EQ(r.rotations.r2.size(), size_t(c.num_hidden_layers));
  EXPECT_EQ(r.rotations.r1.scalar_type(), torch::kFloat64);
  EXPECT_LE(orthogonality_error(r.rotations.r1), 1e-10);
  for (const torch::Tensor& r2 : r.rotations.r2) {
    ASSERT_EQ(r2.sizes(), torch::IntArrayRef({c.head_dim, c.head_dim}));
    EXPECT_EQ(r2.scalar_type(), torch::kFloat64);
    EXPECT_LE(orthogonality_error(r2), 1e-10);
  }
  ASSERT_EQ(r.stages.size(), size_t(1 + c.num_hidden_layers));
  EXPECT_EQ(r.stages[0].name, "r1");
  EXPECT_EQ(r.stages[1].name, "r2.0");
  EXPECT_EQ(r.stages[0].terms, c.num_hidden_layers * 9);  // 2 activations + 7 weights per layer
  EXPECT_EQ(r.stages[1].terms, 4);                        // V cache, o_proj input, v_proj, o_proj

  o.steps = 0;
  const Rotations start = init(s);
  const AdaptResult same = adapt(s, o);
  EXPECT_TRUE(torch::equal(same.rotations.r1, start.r1));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) EXPECT_TRUE(torch::equal(same.rotations.r2[l], start.r2[l]));
  for (const AdaptStageReport& st : same.stages) {
    EXPECT_EQ(st.before, st.after) << st.name;
    EXPECT_EQ(st.best_step, 0) << st.name;
  }

  // Only what init defines is adapted; a weight-only setting reads no calibration tokens.
  o.steps = 2;
  const AdaptResult r1_only = adapt(Setting{"W4", kW4, {}}, o, torch::Tensor(), Rotations{start.r1, {}});
  EXPECT_TRUE(r1_only.rotations.r2.empty());
  ASSERT_EQ(r1_only.stages.size(), 1u);
  EXPECT_EQ(r1_only.stages[0].terms, c.num_hidden_layers * 7);
  const AdaptResult r2_only = adapt(s, o, ids(), Rotations{{}, start.r2});
  EXPECT_FALSE(r2_only.rotations.r1.defined());
  EXPECT_EQ(r2_only.stages.size(), size_t(c.num_hidden_layers));
}

// The reported before/after of every stage equal an independent recomputation through the rotated model
// (all 1024 tokens are used: max_samples >= tokens), after <= before, and R1 strictly improves.
TEST_F(Adapt, ObjectiveDecreasesAndMatchesIndependentRecomputation) {
  const ModelConfig& c = config();
  for (const Setting& s : {w4a4(), w4g32a4kv4()}) {
    SCOPED_TRACE(s.name);
    const Rotations start = init(s);
    const AdaptResult r = adapt(s);
    const ModelWeights b = base(s);
    const std::vector<double> e_init = independent_objectives(c, b, start, ids(), s);
    const std::vector<double> e_r1 = independent_objectives(c, b, {r.rotations.r1, start.r2}, ids(), s);
    const std::vector<double> e_final = independent_objectives(c, b, r.rotations, ids(), s);
    ASSERT_EQ(r.stages.size(), e_init.size());
    expect_relative_near(r.stages[0].before, e_init[0], "r1 before");
    expect_relative_near(r.stages[0].after, e_r1[0], "r1 after");
    EXPECT_LT(r.stages[0].after, r.stages[0].before * 0.99);
    for (int64_t l = 1; l <= c.num_hidden_layers; ++l) {
      const AdaptStageReport& st = r.stages[l];
      expect_relative_near(st.before, e_r1[l], st.name + " before");
      expect_relative_near(st.after, e_final[l], st.name + " after");
      EXPECT_LE(st.after, st.before) << st.name;
    }
  }
}

TEST_F(Adapt, BlockDiagonalRefinement) {
  const ModelConfig& c = config();
  const Setting s = w4a4();
  const Rotations start = init(s);
  for (int64_t block : {16, 4}) {
    SCOPED_TRACE(block);
    AdaptOptions o;
    o.block_size = block;
    o.steps = 5;
    const AdaptResult r = adapt(s, o);
    // R = R0·B: B = R0ᵀ·R is orthogonal and zero off its diagonal blocks (R2: head_dim 8, so block 16 = full).
    auto check = [&](const torch::Tensor& r0, const torch::Tensor& adapted) {
      const int64_t n = r0.size(0), b = std::min(block, n);
      const torch::Tensor blocks = r0.t().matmul(adapted);
      const torch::Tensor on_block =
          torch::kron(torch::eye(n / b, torch::kFloat64), torch::ones({b, b}, torch::kFloat64));
      EXPECT_LT(max_abs(blocks * (1 - on_block)), 1e-12) << "n " << n;
      EXPECT_LE(orthogonality_error(adapted), 1e-10);
    };
    check(start.r1, r.rotations.r1);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) check(start.r2[l], r.rotations.r2[l]);
    EXPECT_GT(max_abs(r.rotations.r1 - start.r1), 1e-3) << "blocks must move";
    EXPECT_LT(r.stages[0].after, r.stages[0].before);
  }
  auto expect_error = [&](int64_t block, const Rotations& rot, const std::string& fragment) {
    AdaptOptions o;
    o.block_size = block;
    try {
      adapt(s, o, ids(), rot);
      ADD_FAILURE() << "block " << block << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(24, start, "block size 24 does not divide R1's size 64");
  expect_error(3, Rotations{{}, start.r2}, "block size 3 does not divide R2's size 8");
}

// Whatever the quantizer made of them, the adapted rotations fused into the float model (float64) leave
// its logits unchanged: valid rotations, used with rotate_weights' convention.
TEST_F(Adapt, FusedFloatModelIsInvariant) {
  const ModelConfig& c = config();
  const Setting s = w4g32a4kv4();
  const AdaptResult r = adapt(s);
  torch::NoGradGuard no_grad;
  ForwardOptions online;
  online.r3 = online.r4 = true;
  const ModelWeights fused = rotate_weights(c, base(s), r.rotations);
  const ModelWeights original =
      map_weights(c, ck->weights, [](const torch::Tensor& t) { return t.to(torch::kFloat64); });
  const torch::Tensor x = ids(1);
  const torch::Tensor expected = lm_logits(original, forward_hidden(c, original, x, {}));
  EXPECT_LE(max_abs(lm_logits(fused, forward_hidden(c, fused, x, online)) - expected), 1e-9);
}

TEST_F(Adapt, DeterministicAndSampled) {
  const Setting s = w4g32a4kv4();
  AdaptOptions o;
  o.steps = 5;
  o.max_samples = 1024;  // of the 2048 tokens of 4 rows: a seeded subset
  const AdaptResult a = adapt(s, o, ids(4), init(s)), b = adapt(s, o, ids(4), init(s));
  EXPECT_TRUE(torch::equal(a.rotations.r1, b.rotations.r1));
  for (size_t l = 0; l < a.rotations.r2.size(); ++l) EXPECT_TRUE(torch::equal(a.rotations.r2[l], b.rotations.r2[l]));
  for (size_t i = 0; i < a.stages.size(); ++i) EXPECT_EQ(a.stages[i].after, b.stages[i].after);

  o.max_samples = 128;
  const AdaptResult few = adapt(s, o, ids(4), init(s));
  EXPECT_LE(orthogonality_error(few.rotations.r1), 1e-10);
  EXPECT_GT(max_abs(few.rotations.r1 - a.rotations.r1), 1e-6);
  EXPECT_GT(max_abs(few.rotations.r2[0] - a.rotations.r2[0]), 1e-6);
  EXPECT_NE(few.stages[0].before, a.stages[0].before);  // another sample of activations
  for (const AdaptStageReport& st : few.stages) EXPECT_LE(st.after, st.before) << st.name;
}

// block_polar against an SVD oracle, and as the maximiser of tr(Rᵀ·C) over (block-diagonal) rotations.
TEST(BlockPolar, MatchesSvdAndMaximisesTrace) {
  const int64_t n = 16;
  const torch::Tensor C = seeded_gaussian(n, n, 11);
  auto trace = [&](const torch::Tensor& r) { return r.t().matmul(C).trace().item<double>(); };
  auto polar_oracle = [](const torch::Tensor& m) {
    auto [u, s, vh] = torch::linalg::svd(m, false, c10::nullopt);
    return u.matmul(vh);
  };
  // exp of a random skew-symmetric matrix, small or large.
  auto random_rotation = [](int64_t size, uint64_t seed, double scale) {
    const torch::Tensor g = seeded_gaussian(size, size, seed);
    return torch::matrix_exp(scale * (g - g.t()));
  };

  const torch::Tensor full = block_polar(C, 0);
  EXPECT_LE(max_abs(full - polar_oracle(C)), 1e-12);
  EXPECT_LE(max_abs(block_polar(C, n) - full), 0.0);
  for (uint64_t seed = 1; seed <= 4; ++seed)
    for (double scale : {1e-3, 1e-1, 1.0}) EXPECT_LT(trace(full.matmul(random_rotation(n, seed, scale))), trace(full));

  const int64_t b = 4;
  const torch::Tensor blocks = block_polar(C, b);
  for (int64_t j = 0; j < n; j += b)
    for (int64_t k = 0; k < n; k += b) {
      const torch::Tensor got = blocks.narrow(0, j, b).narrow(1, k, b);
      if (j == k)
        EXPECT_LE(max_abs(got - polar_oracle(C.narrow(0, j, b).narrow(1, j, b))), 1e-12);
      else
        EXPECT_EQ(max_abs(got), 0.0);
    }
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    std::vector<torch::Tensor> perturbation;
    for (int64_t j = 0; j < n / b; ++j) perturbation.push_back(random_rotation(b, 10 * seed + j, 0.1));
    EXPECT_LT(trace(blocks.matmul(torch::block_diag(perturbation))), trace(blocks));
  }
  EXPECT_GE(trace(full), trace(blocks));  // the full group contains the block-diagonal one
  EXPECT_THROW(block_polar(C, 5), Error);
}

// Not run by ctest (disabled): the timing and objectives on every calibration row at its stored length.
//   build/tests/test_adapt --gtest_also_run_disabled_tests --gtest_filter='*FullCalibration*'
TEST_F(Adapt, DISABLED_FullCalibrationRuntime) {
  for (const Setting& s : {Setting{"W4 per-row sym", kW4, {}}, [] {
         Setting w = w4g32a4kv4();
         w.name = "W4A4KV4 (per-row sym weights), R3+R4";
         w.weight = kW4;
         return w;
       }()}) {
    const auto t0 = std::chrono::steady_clock::now();
    const AdaptResult r = adapt(s, {}, *calib, init(s));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << s.name << ": " << calib->size(0) << " x " << calib->size(1) << " tokens, " << seconds << " s\n";
    for (const AdaptStageReport& st : r.stages)
      std::cout << "  " << st.name << ": terms " << st.terms << ", before " << st.before << ", after " << st.after
                << " (step " << st.best_step << ")\n";
  }
}

}  // namespace
