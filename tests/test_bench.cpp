// spin-bench smoke tests: one timed step on stories260K reports every field with consistent values, and on a
// tiny random Llama the eager PyTorch baseline (experiments/baseline_spinquant.py, float64 per-linear
// rotation) computes the same losses as spintrain's step over three optimizer steps.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace {

using nlohmann::json;
namespace t = spin::test;

// Runs spin-bench with `args`; returns its stdout parsed as JSON (stderr goes to <dir>/err.txt).
json bench(const std::string& name, const std::string& args) {
  const auto dir = t::scratch(name);
  const auto out = dir / "out.json", err = dir / "err.txt";
  const std::string cmd = t::bin("spin-bench").string() + " " + args + " >" + out.string() + " 2>" + err.string();
  const int rc = t::run(cmd);
  std::ifstream e(err), o(out);
  std::string log((std::istreambuf_iterator<char>(e)), {});
  EXPECT_EQ(rc, 0) << cmd << "\n" << log;
  return json::parse(o);
}

TEST(Bench, StoriesOneStepReportsConsistentFields) {
  const auto trace = t::scratch("bench_stories_trace") / "trace";
  const json r = bench("bench_stories", "--models stories --stories " + t::asset("models/stories260K").string() +
                                            " --stories-batch 2 --stories-seq 128 --steps 1 --gemm-size 256 --threads 2"
                                            " --profile " + trace.string());
  ASSERT_GT(r["gemm_peak_gflops"]["f32"].get<double>(), 0);
  ASSERT_GT(r["gemm_peak_gflops"]["bf16"].get<double>(), 0);
  ASSERT_EQ(r["models"].size(), 1u);
  const json& m = r["models"][0];
  EXPECT_EQ(m["name"], "stories260K");
  EXPECT_EQ(m["config"]["hidden_size"], 64);
  ASSERT_EQ(m["steps"].size(), 1u);
  const json& s = m["steps"][0];
  // Random ids under a trained 512-token model: a finite loss well above zero.
  EXPECT_TRUE(std::isfinite(s["loss"].get<double>()));
  EXPECT_GT(s["loss"].get<double>(), 1.0);
  double phases = 0;
  for (const char* p : {"rotate_s", "quant_s", "forward_s", "backward_model_s", "backward_rotation_s", "optimizer_s"}) {
    ASSERT_TRUE(s.contains(p)) << p;
    EXPECT_GE(s[p].get<double>(), 0) << p;
    phases += s[p].get<double>();
  }
  const double total = s["total_s"];
  EXPECT_LE(phases, total * 1.001 + 1e-6);
  EXPECT_GE(phases, total * 0.9);  // the phases cover the step
  EXPECT_NEAR(m["tokens_per_s"].get<double>(), 2 * 128 / total, 1e-6 * m["tokens_per_s"].get<double>());
  EXPECT_GT(m["forward_backward_gflops"].get<double>(), 0);
  EXPECT_GT(m["fraction_of_peak"].get<double>(), 0);
  EXPECT_GT(m["peak_rss_bytes"].get<int64_t>(), m["frozen_weights_bytes"].get<int64_t>());
  // stories260K: 5 layers of q/k/v/o/gate/up/down plus embed_tokens and an untied lm_head, float32.
  const int64_t layer = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 172 + 2 * 64;
  EXPECT_EQ(m["frozen_weights_bytes"].get<int64_t>(), 4 * (5 * layer + 2 * 512 * 64 + 64));
  EXPECT_FALSE(m.contains("baseline"));

  // Memory target fields: 1.5 × (frozen + rotated layer matrices + measured activations).
  const int64_t rotated = 4 * 5 * (layer - 2 * 64), activations = m["activation_bytes"].get<int64_t>();
  EXPECT_EQ(m["rotated_weights_bytes"].get<int64_t>(), rotated);
  EXPECT_GT(activations, 0);
  const double bound = 1.5 * double(m["frozen_weights_bytes"].get<int64_t>() + rotated + activations);
  EXPECT_NEAR(m["memory_target_bytes"].get<double>(), bound, 1.0);
  EXPECT_NEAR(m["peak_rss_of_target"].get<double>(), m["peak_rss_bytes"].get<double>() / bound, 1e-6);
  EXPECT_GT(r["runtime_rss_bytes"].get<int64_t>(), 0);

  // --profile: a chrome trace of the step that profile_summary.py reads; the step's GEMMs are in it.
  const auto summary = trace.parent_path() / "summary.txt";
  ASSERT_EQ(t::run("/usr/bin/python3 " + (t::root() / "experiments/profile_summary.py").string() + " " + trace.string() +
                       ".stories260K.json --top 40",
                   summary),
            0);
  EXPECT_NE(t::read_text(summary).find("aten::mm"), std::string::npos) << t::read_text(summary);
}

TEST(Bench, BaselineMatchesLossesOnTinyRandomLlama) {
  const json r = bench("bench_baseline",
                       "--models random --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --layers 2 --seq 32 "
                       "--vocab 128 --steps 3 --gemm-size 0 --threads 2 --baseline " +
                           (t::root() / "experiments/baseline_spinquant.py").string());
  ASSERT_EQ(r["models"].size(), 1u);
  const json& m = r["models"][0];
  const json& ours = m["steps"];
  const json& theirs = m["baseline"]["losses"];
  ASSERT_EQ(ours.size(), 3u);
  ASSERT_EQ(theirs.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(ours[i]["loss"].get<double>(), theirs[i].get<double>(), 1e-5 * theirs[i].get<double>()) << "step " << i;
  // The rotations moved (so steps 2 and 3 test the optimizer too) and the loss is near log(vocab) = 4.85.
  EXPECT_NE(ours[0]["loss"].get<double>(), ours[2]["loss"].get<double>());
  EXPECT_NEAR(ours[0]["loss"].get<double>(), std::log(128.0), 0.5);
  EXPECT_LT(m["max_loss_rel_diff"].get<double>(), 1e-5);
  EXPECT_GT(m["speedup"].get<double>(), 0);
}


// spin-attention-bench: one JSON line per shape and kernel, with consistent times and FLOP rate; a
// malformed shape is a one-line error.
TEST(Bench, AttentionBenchTimesBothKernels) {
  const auto dir = t::scratch("bench_attention");
  const std::string cmd = t::bin("spin-attention-bench").string() + " --shapes 2x4x2x40x8,stories260K --reps 1 --threads 2";
  ASSERT_EQ(t::run(cmd + " >" + (dir / "out.jsonl").string() + " 2>" + (dir / "err.txt").string()), 0)
      << t::read_text(dir / "err.txt");
  std::ifstream in(dir / "out.jsonl");
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 4u);
  const char* kernels[] = {"rows", "blocks"};
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& l = lines[i];
    EXPECT_EQ(l["kernel"], kernels[i % 2]);
    EXPECT_EQ(l["shape"], i < 2 ? "2x4x2x40x8" : "stories260K");
    EXPECT_EQ(l["dtype"], "f32");
    EXPECT_EQ(l["device"], "cpu");
    EXPECT_GT(l["forward_ms"].get<double>(), 0);
    EXPECT_GT(l["backward_ms"].get<double>(), 0);
    EXPECT_NEAR(l["total_ms"].get<double>(), l["forward_ms"].get<double>() + l["backward_ms"].get<double>(), 1e-9);
    const double T = l["T"], macs = double(l["B"]) * double(l["heads"]) * T * (T + 1) / 2 * double(l["head_dim"]);
    EXPECT_NEAR(l["gflops"].get<double>(), 14 * macs / 1e9 / (l["total_ms"].get<double>() / 1e3),
                1e-9 * l["gflops"].get<double>());
  }
  EXPECT_EQ(lines[2]["head_dim"], 8);
  t::expect_one_line_errors({{t::bin("spin-attention-bench").string() + " --shapes 2x4x3x40x8",
                              "heads a multiple of kv_heads"},
                             {t::bin("spin-attention-bench").string() + " --shapes 2x4", "is not BxHEADSxKV_HEADSxTxHEAD_DIM"}},
                            dir);
}

}  // namespace
