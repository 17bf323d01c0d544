// The three modes and the learnable scales through spintrain on stories260K: --smooth --learn-clip
// trains, exports and re-reads both; block-wise trains layer by layer; adapt refines without training;
// mode options fail cleanly.
#include <gtest/gtest.h>

#include <fstream>

#include "data/calib_dataset.h"
#include "src/io/checkpoint.h"
#include "src/model/forward.h"
#include "src/quant/quantize_weights.h"
#include "src/rotation/format.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

torch::Tensor logits(const ModelConfig& c, const ModelWeights& w, const torch::Tensor& ids, const ForwardOptions& o) {
  torch::NoGradGuard g;
  return lm_logits(w, forward_hidden(c, w, ids, o));
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
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
                                {spintrain("--mode adapt --smooth"), "--smooth needs backpropagation"},
                                {spintrain("--quant-grad exact"), "quant-grad 'exact'"},
                                {spintrain("--r1-from " + plain_model), "has no R1"},
                                {spintrain("--rotations r2 --r1-from " + plain_model), "needs r1"}},
                               dir);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
