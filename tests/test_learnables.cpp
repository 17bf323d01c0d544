// The Euclidean half of the hybrid: smoothing scales are exact in float and fold into the weights,
// learnable clip ratios get the LSQ gradient, and spintrain trains, exports and re-reads both.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "data/calib_dataset.h"
#include "src/train/learnables.h"
#include "src/model/forward.h"
#include "src/rotation/format.h"
#include "src/rotation/init.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

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
    rc.init = "random";
    const ModelWeights base = rotation_base(c, w, rc);
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

// Learned clip ratios: the value is RTN with each row's ratio, the gradient to x is the identity and
// the gradient to the ratio is LSQ's, recomputed here element by element in float64.
TEST(FakeQuant, LearnedClipValueAndGradient) {
  torch::manual_seed(1);
  for (bool asym : {false, true}) {
    const QuantSpec spec{4, 16, asym, 1.0};
    const int64_t rows = 5, n = 40;  // groups 16, 16, 8
    torch::Tensor x = torch::randn({rows, n}).requires_grad_(true);
    torch::Tensor clip = (0.6 + 0.4 * torch::rand({rows})).requires_grad_(true);
    torch::Tensor upstream = torch::randn({rows, n});
    torch::Tensor y = fake_quant(x, spec, clip);
    (y * upstream).sum().backward();
    EXPECT_TRUE(torch::equal(x.grad(), upstream)) << "straight-through to x";

    const double qmax = asym ? 15 : 7;
    for (int64_t r = 0; r < rows; ++r) {
      const double c = clip[r].item<float>();
      QuantSpec fixed = spec;
      fixed.clip = c;
      EXPECT_TRUE(torch::equal(y[r].detach(), fake_quant(x[r].detach(), fixed))) << "row " << r;
      double grad = 0;
      for (int64_t g0 = 0; g0 < n; g0 += 16) {
        const int64_t len = std::min<int64_t>(16, n - g0);
        torch::Tensor xs = x.detach()[r].narrow(0, g0, len).to(torch::kFloat64);
        torch::Tensor up = upstream[r].narrow(0, g0, len).to(torch::kFloat64);
        double scale, dscale, zero = 0, lo_code = -qmax - 1, hi_code = qmax;
        if (asym) {
          const double lo = std::min(xs.min().item<double>(), 0.0), hi = std::max(xs.max().item<double>(), 0.0);
          dscale = (hi - lo) / qmax;
          scale = c * dscale;
          zero = std::round(-c * lo / scale);
          lo_code = 0;
          hi_code = qmax;
        } else {
          dscale = xs.abs().max().item<double>() / qmax;
          scale = c * dscale;
        }
        for (int64_t k = 0; k < len; ++k) {
          const double u = xs[k].item<double>() / scale, code = std::round(u) + zero;
          // d(scale·(clamp(round(u) + zero) − zero))/d scale with round straight-through
          const double d = code < lo_code ? lo_code - zero : code > hi_code ? hi_code - zero : std::round(u) - u;
          grad += up[k].item<double>() * d * dscale;
        }
      }
      EXPECT_NEAR(clip.grad()[r].item<double>(), grad, 1e-4 * (1 + std::abs(grad))) << "asym " << asym << " row " << r;
    }
  }
}

// An autograd reference of RTN with the scale differentiated (round straight-through), one group per row.
torch::Tensor autograd_rtn(const torch::Tensor& x, int bits, bool asym, const torch::Tensor& clip) {
  auto round_ste = [](const torch::Tensor& u) { return u + (u.round() - u).detach(); };
  if (!asym) {
    const double qmax = std::pow(2.0, bits - 1) - 1;
    torch::Tensor s = x.abs().amax(-1, true) * clip / qmax;
    return torch::clamp(round_ste(x / s), -qmax - 1, qmax) * s;
  }
  const double qmax = std::pow(2.0, bits) - 1;
  torch::Tensor lo = x.amin(-1, true).clamp_max(0) * clip, hi = x.amax(-1, true).clamp_min(0) * clip;
  torch::Tensor s = (hi - lo) / qmax, zero = torch::round(-lo / s).detach();
  return (torch::clamp(round_ste(x / s) + zero, 0, qmax) - zero) * s;
}

// The custom backward (which keeps only x and clip) gives the gradients autograd computes through the
// reference above, for x and for learned clip ratios, symmetric and asymmetric.
TEST(FakeQuant, ScaleGradientMatchesAutogradReference) {
  torch::manual_seed(3);
  for (bool asym : {false, true}) {
    QuantSpec spec{3, 0, asym, 1.0};
    spec.scale_grad = true;
    torch::Tensor x = torch::randn({6, 24}, torch::kFloat64).requires_grad_(true);
    torch::Tensor clip = (0.7 + 0.3 * torch::rand({6}, torch::kFloat64)).requires_grad_(true);
    torch::Tensor upstream = torch::randn({6, 24}, torch::kFloat64);
    (fake_quant(x, spec, clip) * upstream).sum().backward();
    torch::Tensor xr = x.detach().clone().requires_grad_(true), cr = clip.detach().to(torch::kFloat32).to(torch::kFloat64).requires_grad_(true);
    (autograd_rtn(xr, 3, asym, cr.unsqueeze(1)) * upstream).sum().backward();
    EXPECT_LT(max_diff(x.grad(), xr.grad()), 1e-4) << "asym " << asym;
    EXPECT_LT(max_diff(clip.grad(), cr.grad()), 1e-3 * (1 + cr.grad().abs().max().item<double>())) << "asym " << asym;
  }
}

nlohmann::json results(const fs::path& out) {
  std::ifstream in(out / "spintrain_results.json");
  return nlohmann::json::parse(in);
}

double eval_nll(const nlohmann::json& r, const std::string& name) {
  for (const auto& row : r["eval"])
    if (row["name"] == name) return row["nll"];
  ADD_FAILURE() << "no eval row " << name;
  return 0;
}

std::string eval_data() { return test::asset("data/stories260K-eval.h5").string(); }

// The float model's logits on two eval rows, and those of a saved checkpoint (with its online rotations).
double float_logit_gap(const fs::path& out) {
  Checkpoint orig = load_checkpoint(test::asset("models/stories260K"));
  LoadedModel m = load_model(out);
  torch::Tensor ids = data::load_calib(eval_data(), 512, {}).narrow(0, 0, 2);
  return max_diff(logits(orig.config, orig.weights, ids, {}),
                  logits(m.checkpoint.config, m.checkpoint.weights, ids, m.online()));
}

// spin-eval's NLL of `model` at W4 on the rows spintrain evaluated.
double spin_eval_nll(const fs::path& model, const fs::path& dir) {
  const fs::path json = dir / "eval.json";
  const std::string cmd = "(" + test::bin("spin-eval").string() + " --model " + model.string() + " --data " + eval_data() +
                          " --rows 8 --seq-len 128 --wbits 4 --threads 2 --json > " + json.string() + ")";
  EXPECT_EQ(test::run(cmd, dir / "eval.txt"), 0) << test::read_text(dir / "eval.txt");
  std::ifstream in(json);
  return nlohmann::json::parse(in)["nll"];
}

// --smooth --learn-clip end to end: trains with Adam next to Cayley SGD, exports a float-invariant plain
// checkpoint (scales folded: norm weights are no longer ones) with the clip ratios beside it, and
// spin-eval's RTN of that export (which reads the ratios) is spintrain's own "rtn + learned" figure.
// --quant-grad scale (symmetric): the gradient of x adds, to the straight-through identity inside the
// range, the path through the scale s = clip·max|x|/qmax, which only the group's max-|x| element feeds:
//   ∂L/∂x_j = g_j·[j inside] + [j = argmax] · sign(x_j)·clip/qmax · Σ_k g_k·∂deq_k/∂s.
TEST(FakeQuant, ScaleGradientFollowsTheScale) {
  torch::manual_seed(2);
  QuantSpec spec{4, 8, false, 0.9};
  spec.scale_grad = true;
  const double qmax = 7, c = float(0.9);
  torch::Tensor x = torch::randn({3, 16}, torch::kFloat64).requires_grad_(true);
  torch::Tensor upstream = torch::randn({3, 16}, torch::kFloat64);
  torch::Tensor y = fake_quant(x, spec);
  QuantSpec plain = spec;
  plain.scale_grad = false;
  EXPECT_LT(max_diff(y.detach(), fake_quant(x.detach(), plain)), 1e-6) << "same value as without scale_grad";
  (y * upstream).sum().backward();
  torch::Tensor xd = x.detach();
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t g0 = 0; g0 < 16; g0 += 8) {
      torch::Tensor xs = xd[r].narrow(0, g0, 8), up = upstream[r].narrow(0, g0, 8);
      const int64_t arg = xs.abs().argmax().item<int64_t>();
      const double s = c * xs.abs().max().item<double>() / qmax;
      double ds_sum = 0;
      std::vector<double> expected(8);
      for (int64_t k = 0; k < 8; ++k) {
        const double u = xs[k].item<double>() / s, code = std::round(u);
        const bool inside = code >= -qmax - 1 && code <= qmax;
        ds_sum += up[k].item<double>() * (inside ? code - u : std::clamp(code, -qmax - 1, qmax));
        expected[k] = inside ? up[k].item<double>() : 0;
      }
      expected[arg] += (xs[arg].item<double>() > 0 ? 1 : -1) * c / qmax * ds_sum;
      for (int64_t k = 0; k < 8; ++k)
        EXPECT_NEAR(x.grad()[r][g0 + k].item<double>(), expected[k], 1e-5) << "row " << r << " element " << g0 + k;
    }
}

TEST(Spintrain, SmoothingAndClipAreLearnedAndExported) {
  auto dir = test::scratch("learnables_e2e");
  const fs::path out = dir / "model";
  ASSERT_EQ(test::run(test::spintrain_command(out, "--nsamples 16 --batch-size 8 --seq-len 128 --steps 6 --threads 2 "
                                                   "--quiet --smooth --learn-clip --scale-lr 0.01 --eval-data " +
                                                       eval_data() + " --eval-rows 8"),
                      dir / "log.txt"),
            0)
      << test::read_text(dir / "log.txt");
  EXPECT_LT(float_logit_gap(out), 5e-4);
  LoadedModel m = load_model(out);
  EXPECT_GT(max_diff(m.checkpoint.weights.layers[0].input_layernorm, torch::ones({64})), 1e-3) << "scales folded";
  ASSERT_EQ(m.weight_clip.size(), 5u);
  double lowest = 1;
  for (const auto& layer : m.weight_clip)
    for (const auto& r : layer.ratio) lowest = std::min(lowest, r.min().item<double>());
  EXPECT_LT(lowest, 0.999) << "clip ratios moved";
  EXPECT_GE(lowest, kMinClip);
  EXPECT_NEAR(spin_eval_nll(out, dir), eval_nll(results(out), "rtn + learned"), 2e-3);
}

// Block-wise: the layers' relative output MSE over all calibration rows falls with training (summed), R1 stays at its init (or
// is taken from --r1-from), and the export is the float model.
TEST(Spintrain, BlockwiseTrainsLayerByLayer) {
  auto dir = test::scratch("learnables_blockwise");
  const std::string flags = "--mode blockwise --nsamples 16 --batch-size 4 --seq-len 128 --steps 12 --threads 2 --quiet "
                            "--smooth --learn-clip --scale-lr 0.02 --eval-data " + eval_data() + " --eval-rows 8";
  ASSERT_EQ(test::run(test::spintrain_command(dir / "bw", flags), dir / "bw.txt"), 0) << test::read_text(dir / "bw.txt");
  std::ifstream log(dir / "bw.log.jsonl");
  double init_sum = 0, final_sum = 0;
  int layers = 0;
  for (std::string line; std::getline(log, line);) {
    auto rec = nlohmann::json::parse(line);
    if (!rec.contains("layer_mse_init")) continue;
    EXPECT_EQ(rec["layer"], layers++);
    init_sum += rec["layer_mse_init"].get<double>();
    final_sum += rec["layer_mse_final"].get<double>();
  }
  EXPECT_EQ(layers, 5);
  EXPECT_LT(final_sum, 0.97 * init_sum);
  const nlohmann::json r = results(dir / "bw");
  EXPECT_EQ(r["mode"], "blockwise");
  EXPECT_LT(eval_nll(r, "rtn + learned"), eval_nll(r, "rtn (no rotation)"));
  EXPECT_LT(float_logit_gap(dir / "bw"), 5e-4);
  const ModelConfig c = load_checkpoint(test::asset("models/stories260K")).config;
  EXPECT_LT(max_diff(load_model(dir / "bw").rotations.r1, init_rotations(c, RotationConfig::parse_list("r1", "t")).r1), 1e-12);

  // R1 from another rotated checkpoint (spin-rotate with seed 5).
  ASSERT_EQ(test::run(test::bin("spin-rotate").string() + " --model " + test::asset("models/stories260K").string() +
                          " --out " + (dir / "rot5").string() + " --rotations r1 --seed 5",
                      dir / "rot.txt"),
            0);
  ASSERT_EQ(test::run(test::spintrain_command(dir / "from", "--mode blockwise --nsamples 8 --batch-size 4 --seq-len 64 "
                                                            "--steps 2 --threads 2 --quiet --r1-from " + (dir / "rot5").string()),
                      dir / "from.txt"),
            0)
      << test::read_text(dir / "from.txt");
  EXPECT_LT(max_diff(load_model(dir / "from").rotations.r1, load_model(dir / "rot5").rotations.r1), 1e-12);
}

// --mode adapt through spintrain: one log record per stage with a non-increasing objective, a float-
// invariant export, and (deterministic, no SGD) a better W4 RTN model than its random-Hadamard start.
TEST(Spintrain, AdaptRefinesRotationsWithoutTraining) {
  auto dir = test::scratch("learnables_adapt");
  ASSERT_EQ(test::run(test::spintrain_command(dir / "ad", "--mode adapt --nsamples 16 --seq-len 128 --threads 2 --quiet "
                                                          "--adapt-steps 50 --eval-data " + eval_data() + " --eval-rows 8"),
                      dir / "ad.txt"),
            0)
      << test::read_text(dir / "ad.txt");
  std::ifstream log(dir / "ad.log.jsonl");
  std::vector<std::string> stages;
  for (std::string line; std::getline(log, line);) {
    auto rec = nlohmann::json::parse(line);
    if (!rec.contains("stage")) continue;
    stages.push_back(rec["stage"]);
    EXPECT_LE(rec["objective_after"].get<double>(), rec["objective_before"].get<double>()) << line;
  }
  EXPECT_EQ(stages, (std::vector<std::string>{"r1", "r2.0", "r2.1", "r2.2", "r2.3", "r2.4"}));
  const nlohmann::json r = results(dir / "ad");
  EXPECT_EQ(r["mode"], "adapt");
  EXPECT_LT(eval_nll(r, "rtn + learned"), eval_nll(r, "rtn + random-hadamard init") - 0.02);
  EXPECT_LT(float_logit_gap(dir / "ad"), 5e-4);
}

TEST(Spintrain, ModeOptionErrorsAreOneLine) {
  auto dir = test::scratch("learnables_bad");
  auto spintrain = [&](const std::string& extra) {
    return test::spintrain_command(dir / "out", "--steps 1 --quiet " + extra);
  };
  const std::string plain_model = test::asset("models/stories260K").string();
  test::expect_one_line_errors({{spintrain("--mode layerwise"), "mode 'layerwise'"},
                                {spintrain("--mode blockwise --nproc 2"), "runs in one process"},
                                {spintrain("--mode adapt --smooth"), "learned by backpropagation"},
                                {spintrain("--quant-grad exact"), "quant-grad 'exact'"},
                                {spintrain("--r1-from " + plain_model), "has no R1"},
                                {spintrain("--rotations r2 --r1-from " + plain_model), "needs r1"}},
                               dir);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
