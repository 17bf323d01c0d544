// spintrain end to end on stories260K: learning improves on the initial rotation, the exported
// checkpoint is rotation-invariant in float and its matrices orthogonal, resume reproduces an
// uninterrupted run, and bad options fail cleanly.
#include <gtest/gtest.h>

#include <fstream>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/io/checkpoint.h"
#include "src/model/evaluate.h"
#include "src/rotation/format.h"
#include "src/io/safetensors.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

std::string spintrain(const fs::path& out, const std::string& extra) {
  return test::spintrain_command(out, "--nsamples 32 --batch-size 4 --threads 2 --quiet " + extra);
}

nlohmann::json results(const fs::path& out) {
  std::ifstream in(out / "spintrain_results.json");
  return nlohmann::json::parse(in);
}

double eval_nll(const nlohmann::json& r, const std::string& prefix) {
  for (const auto& row : r["eval"])
    if (row["name"].get<std::string>().rfind(prefix, 0) == 0) return row["nll"];
  ADD_FAILURE() << "no eval row " << prefix;
  return 0;
}

// A short run of the default recipe (KL, Cayley SGD lr 0.1, cosine) trains, moves R1 away from its
// init, and exports a float-invariant checkpoint with orthogonal float64 rotations.
//
// Whether the learned rotation beats its init is NOT asserted here. Under the old default
// (--quant-grad ste) the outcome at a size CI can afford was chaotic: (40 steps of 8 x 128 tokens,
// seed 2) two builds whose losses first differ by 1e-4 at step 4 ended at eval NLL 5.586 and 5.814
// against an init of 5.614. With --quant-grad scale (now the default) the 100-step, 3-seed runs of
// `experiments/results.sh out modes` improve every seed by far more than the seed spread (docs/RESULTS.md, "Modes");
// a 10-step assertion has not been measured across seeds and builds, so it is not made here.
TEST(Spintrain, LearningRunsAndExportIsInvariant) {
  auto dir = test::scratch("spintrain_learn");
  const fs::path out = dir / "model";
  ASSERT_EQ(test::run(spintrain(out, "--batch-size 8 --seq-len 128 --wbits 4 --steps 10 --eval-data " +
                                         test::asset("data/stories260K-eval.h5").string() + " --eval-rows 8"),
                      dir / "log.txt"),
            0)
      << "see " << dir / "log.txt";
  const nlohmann::json r = results(out);
  EXPECT_LT(eval_nll(r, "float"), eval_nll(r, "rtn + learned"));
  EXPECT_LT(eval_nll(r, "rtn + learned"), eval_nll(r, "rtn (no rotation)"));

  // The saved checkpoint is the float model when nothing is quantized.
  LoadedModel m = load_model(out);
  EXPECT_TRUE(m.rotation.r1 && m.rotation.r2 && m.rotation.learned);
  Checkpoint orig = load_checkpoint(test::asset("models/stories260K"));
  torch::Tensor ids = data::load_calib(test::asset("data/stories260K-eval.h5").string(), 512, {}).narrow(0, 0, 2);
  torch::NoGradGuard g;
  torch::Tensor a = lm_logits(orig.weights, forward_hidden(orig.config, orig.weights, ids, {}));
  torch::Tensor b = lm_logits(m.checkpoint.weights, forward_hidden(m.checkpoint.config, m.checkpoint.weights, ids, m.online()));
  EXPECT_LE((a - b).abs().max().item<double>(), 2e-4);  // float32 tolerance, see test_rotation.cpp

  SafetensorsFile rot((out / "rotations.safetensors").string());
  for (const auto& t : rot.tensors()) {
    torch::Tensor R = rot.get(t.name);
    EXPECT_EQ(R.scalar_type(), torch::kFloat64);
    EXPECT_LT((R.t().matmul(R) - torch::eye(R.size(0), torch::kFloat64)).abs().max().item<double>(), 1e-5) << t.name;
  }
  // The learned R1 moved away from its init.
  RotationConfig rc = RotationConfig::parse_list("r1", "test");
  EXPECT_GT((rot.get("R1") - init_rotations(orig.config, rc).r1).abs().max().item<double>(), 1e-3);
}

// SIGKILL a run mid-training (training state every 2 steps), --resume it, and compare with an
// uninterrupted run: the rotations must be bitwise identical (same thread count).
TEST(Spintrain, ResumeAfterSigkillMatchesUninterruptedRun) {
  auto dir = test::scratch("spintrain_resume");
  const std::string common =
      "--wbits 4 --abits 8 --kbits 8 --vbits 8 --r3 --r4 --steps 10 --save-every 2 --lr 0.5 --seq-len 128";
  ASSERT_EQ(test::run(spintrain(dir / "full", common), dir / "full.txt"), 0);

  const fs::path out = dir / "part", log = dir / "part.log.jsonl";
  const std::string kill_mid_run = "(" + spintrain(out, common) + " & pid=$!; " +
                                   "for i in $(seq 3000); do [ -f " + log.string() + " ] && [ $(wc -l < " +
                                   log.string() + ") -ge 5 ] && break; sleep 0.02; done; kill -9 $pid; wait $pid)";
  EXPECT_NE(test::run(kill_mid_run, dir / "killed.txt"), 0);
  EXPECT_FALSE(fs::exists(out)) << "no export before training finished";
  ASSERT_TRUE(fs::exists(dir / "part.state" / "state.pt"));
  ASSERT_EQ(test::run(spintrain(out, common + " --resume"), dir / "resumed.txt"), 0) << "see " << dir / "resumed.txt";

  SafetensorsFile full((dir / "full" / "rotations.safetensors").string());
  SafetensorsFile part((out / "rotations.safetensors").string());
  ASSERT_EQ(full.tensors().size(), part.tensors().size());
  for (const auto& t : full.tensors()) EXPECT_TRUE(torch::equal(full.get(t.name), part.get(t.name))) << t.name;
}

TEST(Spintrain, BadOptionsAreOneLineErrors) {
  auto dir = test::scratch("spintrain_bad");
  auto cmd = [&](const std::string& extra) { return spintrain(dir / "out", "--steps 1 " + extra); };
  test::expect_one_line_errors({{cmd("--loss mse"), "loss 'mse'"},
                                {cmd("--optimizer sgd"), "optimizer 'sgd'"},
                                {cmd("--init nope"), "nope"},
                                {cmd("--rotations r1,r5"), "unknown rotation 'r5'"},
                                {cmd("--wbits 1"), "bits"},
                                {cmd("--lr abc"), "'lr' has invalid value"},
                                {cmd("--resume"), "no training state"}},
                               dir);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// A randomly initialised Llama (hidden 512, 8 layers, stories260K's vocabulary: ~84 MB in float32),
// large enough that writing its export takes a killable while.
fs::path write_large_model(const fs::path& dir) {
  std::ifstream in(test::asset("models/stories260K") / "config.json");
  nlohmann::json cfg = nlohmann::json::parse(in);
  cfg["hidden_size"] = 512;
  cfg["intermediate_size"] = 1024;
  cfg["num_hidden_layers"] = 8;
  cfg["head_dim"] = 64;
  cfg["tie_word_embeddings"] = false;
  const ModelConfig mc = parse_model_config(cfg, "large config");
  ModelWeights w;
  torch::manual_seed(0);
  for_each_slot(mc, w, [&](const std::string& name, torch::Tensor& slot) {
    const auto shape = expected_shape(mc, name);
    slot = shape.size() == 1 ? torch::ones(shape) : torch::randn(shape) * 0.02;
  });
  SaveOptions opt;
  opt.config_json = cfg;
  save_checkpoint(dir, mc, w, opt);
  return dir;
}

// SIGKILL at several moments inside the export (from the moment its temporary directory appears):
// the output directory is always a complete checkpoint, either the previous run's or the new one;
// the killed runs' temporaries are removed by the next export, and --resume then produces exactly
// the uninterrupted run's rotations.
TEST(Spintrain, SigkillDuringExportKeepsACompleteOutput) {
  auto dir = test::scratch("spintrain_kill_export");
  const fs::path model = write_large_model(dir / "large");
  const std::string run = test::bin("spintrain").string() + " --model " + model.string() + " --calib " +
                          test::asset("data/stories260K-calib.h5").string() +
                          " --nsamples 8 --seq-len 32 --batch-size 2 --threads 2 --quiet --wbits 4 --steps 2 "
                          "--save-every 2 --skip-baselines --clip-search false --out ";
  ASSERT_EQ(test::run(run + (dir / "ref").string(), dir / "ref.txt"), 0);
  const fs::path out = dir / "out", prev = dir / "prev";
  ASSERT_EQ(test::run(run + out.string() + " --seed 7", dir / "prev.txt"), 0);
  fs::copy(out, prev, fs::copy_options::recursive);

  auto rotations_equal = [](const fs::path& a, const fs::path& b) {
    SafetensorsFile fa((a / "rotations.safetensors").string()), fb((b / "rotations.safetensors").string());
    for (const auto& t : fa.tensors())
      if (!torch::equal(fa.get(t.name), fb.get(t.name))) return false;
    return true;
  };
  int kills = 0, killed_mid_export = 0, kept_previous = 0, got_new = 0;
  for (const char* delay : {"0", "0.1", "0.4", "1.5"}) {
    // Wait for this run's own temporary (earlier kills leave theirs behind), wait `delay`, kill.
    const std::string tmp = out.string() + ".tmp.$pid";
    const std::string kill_in_export = "(" + run + out.string() + " & pid=$!; until [ -d " + tmp +
                                       " ] || ! kill -0 $pid 2>/dev/null; do sleep 0.005; done; sleep " + delay +
                                       "; kill -9 $pid 2>/dev/null && echo KILLED; wait $pid; [ -d " + tmp +
                                       " ] && echo INSIDE; exit 0)";
    test::run(kill_in_export, dir / "killed.txt");
    const std::string said = test::read_text(dir / "killed.txt");
    kills += said.find("KILLED") != std::string::npos;
    killed_mid_export += said.find("INSIDE") != std::string::npos;
    ASSERT_TRUE(fs::exists(out / "config.json")) << "delay " << delay;
    EXPECT_NO_THROW(load_model(out)) << "delay " << delay;  // validates every tensor and the rotations
    const bool is_prev = rotations_equal(out, prev), is_new = rotations_equal(out, dir / "ref");
    EXPECT_TRUE(is_prev || is_new) << "delay " << delay;
    kept_previous += is_prev;
    got_new += is_new;
    if (is_new) {  // start the next kill from the previous output again
      fs::remove_all(out);
      fs::copy(prev, out, fs::copy_options::recursive);
    }
  }
  EXPECT_GT(killed_mid_export, 0) << "no kill landed inside the export; the test proves nothing";
  std::cout << "SIGKILLs: " << kills << " of 4, " << killed_mid_export << " inside the export (temporary left); "
            << "output afterwards: previous " << kept_previous << ", new complete " << got_new << std::endl;

  // The state was saved at step 2 before the export: --resume only fuses and exports.
  ASSERT_EQ(test::run(run + out.string() + " --resume", dir / "resumed.txt"), 0);
  EXPECT_TRUE(rotations_equal(out, dir / "ref"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_NE(e.path().filename().string().rfind("out.tmp.", 0), 0u) << "stale " << e.path();
}

// A drift threshold below float32 noise forces the re-orthonormalisation path every step: each step
// logs the warning and the rotations leave it orthogonal to float64 rounding.
TEST(Spintrain, OrthogonalityDriftIsRepairedAndLogged) {
  auto dir = test::scratch("spintrain_reorth");
  ASSERT_EQ(test::run(spintrain(dir / "out", "--steps 2 --reorth-threshold 1e-12"), dir / "log.txt"), 0);
  std::ifstream in(dir / "out.log.jsonl");
  int warnings = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("step")) continue;
    EXPECT_TRUE(j.contains("warning")) << line;
    warnings += j.contains("warning");
    EXPECT_LT(j["orth_err"].get<double>(), 1e-6) << line;
  }
  EXPECT_EQ(warnings, 2);
  const std::string all = test::read_text(dir / "log.txt");
  EXPECT_NE(all.find("re-orthonormalised"), std::string::npos) << all;
}

}  // namespace

// Training runs without the stored weights (they are reloaded for the float64 export). If the
// checkpoint on disk changes meanwhile, the export must refuse rather than fuse other weights than the
// ones trained on: the model file is replaced once the first step is logged.
TEST(Spintrain, CheckpointChangedDuringTrainingIsNotExported) {
  auto dir = test::scratch("spintrain_changed_on_disk");
  const fs::path model = dir / "model";
  fs::copy(test::asset("models/stories260K"), model, fs::copy_options::recursive);
  {
    SafetensorsFile f((model / "model.safetensors").string());
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& t : f.tensors()) tensors.emplace_back(t.name, f.get(t.name).clone());
    tensors.back().second.mul_(1.01);
    save_safetensors((dir / "changed.safetensors").string(), tensors, f.metadata());
  }
  const fs::path out = dir / "out", log = dir / "train.jsonl";
  const std::string train = test::bin("spintrain").string() + " --model " + model.string() + " --calib " +
                            test::asset("data/stories260K-calib.h5").string() +
                            " --nsamples 8 --seq-len 32 --batch-size 2 --threads 2 --quiet --skip-baselines "
                            "--steps 60 --log " + log.string() + " --out " + out.string();
  const std::string cmd = "(" + train + " & pid=$!; until grep -q '\"step\"' " + log.string() +
                          " 2>/dev/null || ! kill -0 $pid 2>/dev/null; do sleep 0.005; done; mv " +
                          (dir / "changed.safetensors").string() + " " + (model / "model.safetensors").string() +
                          "; wait $pid)";
  EXPECT_EQ(test::run(cmd, dir / "run.txt"), 1);
  const std::string said = test::read_text(dir / "run.txt");
  EXPECT_NE(said.find("changed on disk during training; nothing was exported"), std::string::npos) << said;
  EXPECT_FALSE(fs::exists(out));
}

// An output path whose directories do not exist yet (a fresh clone has no out/): the export and the
// default log next to it create them.
TEST(Spintrain, MissingOutputDirectoriesAreCreated) {
  auto dir = test::scratch("spintrain_missing_dirs");
  const fs::path out = dir / "not" / "yet" / "out";
  ASSERT_EQ(test::run(test::spintrain_command(out, "--nsamples 8 --seq-len 32 --batch-size 2 --threads 2 --quiet "
                                                   "--skip-baselines --steps 1"),
                      dir / "run.txt"),
            0)
      << test::read_text(dir / "run.txt");
  EXPECT_TRUE(fs::exists(out / "config.json"));
  EXPECT_TRUE(fs::exists(out.string() + ".log.jsonl"));
}
