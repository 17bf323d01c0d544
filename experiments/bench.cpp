// spin-bench: how fast is a spintrain step? Measures, in one run and one process:
//   - the GEMM peak of this machine through LibTorch (fp32 and bf16 square products);
//   - spintrain steps on stories260K and on a randomly initialised Llama with realistic layer shapes, each
//     split into weight rotation, fake quant, forward, backward (model, then through quant + rotation to
//     R1/R2) and optimizer; tokens/s, achieved forward+backward FLOP/s against the peak, peak RSS;
//   - optionally the eager PyTorch baseline (experiments/baseline_spinquant.py: every linear rotates its
//     weight in float64 on every forward, as the official SpinQuant code does) on the same frozen weights,
//     initial rotations and token ids, with its losses for an identical-loss check.
// Prints one JSON document on stdout (progress on stderr).
//
//   spin-bench --threads 2 --baseline experiments/baseline_spinquant.py
//   spin-bench --models random --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --layers 1 --seq 32 --steps 3
//
// A step is timed with the public functions src/train/trainer.cpp calls (rotate_weights, fake_quant_weights,
// forward_hidden + lm_logits + next_token_nll, backward, HybridOptimizer::step), grad_accum 1, loss ce,
// straight-through quantizers (scale constant): W<wbits> per-row symmetric RTN and, when asked, per-token
// activations (--abits), K/V per head (--kbits/--vbits) and the online Hadamards R3/R4; learned R1 and
// R2, random-hadamard init, constant lr. Token ids are uniform random (seeded). The first step is a
// warm-up: with --steps > 1 the means leave it out.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "data/hdf5_file.h"
#include "losses/next_token.h"
#include "optim/hybrid.h"
#include "src/io/atomic_file.h"
#include "src/base/runtime_env.h"
#include "src/base/check.h"
#include "src/io/checkpoint.h"
#include "src/cli/main.h"
#include "src/train/config.h"
#include "src/train/grad_leaves.h"
#include "src/kernels/hadamard.h"
#include "src/model/forward.h"
#include "src/quant/quantize_weights.h"
#include "src/model/recompute.h"
#include "src/io/resources.h"
#include "src/rotation/fusion.h"
#include "src/io/safetensors.h"

using namespace spin;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// GFLOP/s of the best of `reps` [n, n] x [n, n] products in `dtype`.
double gemm_gflops(int64_t n, torch::ScalarType dtype, const torch::Device& device, int reps) {
  torch::NoGradGuard g;
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts), c = torch::empty({n, n}, opts);
  torch::mm_out(c, a, b);  // warm-up
  sync(device);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    torch::mm_out(c, a, b);
    sync(device);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * n * n * n / best / 1e9;
}

// A Llama config.json for a random model.
json random_llama_json(int64_t hidden, int64_t intermediate, int64_t heads, int64_t kv_heads, int64_t layers,
                       int64_t vocab, int64_t seq) {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", hidden},
          {"intermediate_size", intermediate}, {"num_hidden_layers", layers}, {"num_attention_heads", heads},
          {"num_key_value_heads", kv_heads}, {"vocab_size", vocab}, {"max_position_embeddings", seq},
          {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false}};
}

// Random weights for `c` (float32, CPU): N(0, 0.02²) matrices, norms 1 + N(0, 0.1²), seeded.
ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  ModelWeights w;
  w.layers.resize(c.num_hidden_layers);
  for_each_slot(c, w, [&](const std::string& name, torch::Tensor& slot) {
    const auto shape = expected_shape(c, name);
    torch::Tensor r = at::randn(shape, gen, torch::kFloat32);
    slot = shape.size() == 1 ? 1 + 0.1 * r : 0.02 * r;
  });
  return w;
}

int64_t numel_sum(std::initializer_list<const torch::Tensor*> ts) {
  int64_t n = 0;
  for (const torch::Tensor* t : ts) n += t->numel();
  return n;
}

// Elements of every decoder layer's q/k/v/o/gate/up/down matrices: the linears of the layers, and the
// matrices rotate_weights rebuilds each step (embed_tokens and lm_head get R1 on their activations).
int64_t layer_matrix_numel(const ModelWeights& w) {
  int64_t n = 0;
  for (const LayerWeights& L : w.layers)
    for (const Linear& l : layer_linears()) n += (L.*l.weight).numel();
  return n;
}

struct Workload {
  std::string name;
  ModelConfig config;
  ModelWeights base;    // folded norms, training dtype/device, frozen
  Rotations init;       // float64 initial R1/R2
  torch::Tensor ids;    // [batch, seq] int64, CPU
};

struct Settings {
  torch::ScalarType dtype;
  torch::Device device = torch::kCPU;
  QuantSpec weight;
  ForwardOptions student;  // activation/KV quantizers and R3/R4 of the quantized forward
  double lr, momentum;
  int64_t steps;
  int threads;
  bool recompute = false;  // backward_with_recompute: its time is reported as backward_model, forward 0
  std::string baseline, python, work_dir;
  std::string profile;  // chrome trace of the last step, "<profile>.<workload>.json" (empty: none)
};

// Removes the exchange-file directory however the run ends.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(fs::path p) : path(std::move(p)) { fs::create_directories(path); }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

const char* dtype_name(torch::ScalarType t) { return t == torch::kBFloat16 ? "bf16" : t == torch::kFloat64 ? "f64" : "f32"; }

// Phase names in step order; a step record holds "<phase>_s" for each plus "total_s" and "loss".
const char* kPhases[] = {"rotate", "quant", "forward", "backward_model", "backward_rotation", "optimizer"};

// Runs settings.steps spintrain steps on `w` and returns one record per step.
json run_steps(const Workload& w, const Settings& s) {
  const ModelConfig& mc = w.config;
  const auto param_dtype = s.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto leaf = [&](const torch::Tensor& r) { return r.to(s.device, param_dtype).clone().requires_grad_(true); };
  Rotations params;
  std::vector<torch::Tensor> trainable;
  trainable.push_back(params.r1 = leaf(w.init.r1));
  for (const auto& r : w.init.r2) trainable.push_back(params.r2.emplace_back(leaf(r)));
  optim::CayleySGDOptions o;
  o.lr = s.lr;
  o.momentum = s.momentum;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.push_back(optim::stiefel_group(trainable, o));
  optim::HybridOptimizer opt(std::move(groups));
  const torch::Tensor ids = w.ids.to(s.device);

  json records = json::array();
  for (int64_t step = 0; step < s.steps; ++step) {
    double t[6];
    auto lap = [&](int i, Clock::time_point& t0) {
      sync(s.device);
      t[i] = seconds_since(t0);
      t0 = Clock::now();
    };
    std::optional<torch::autograd::profiler::RecordProfile> trace;
    if (!s.profile.empty() && step + 1 == s.steps) trace.emplace(cat(s.profile, ".", w.name, ".json"));
    const auto start = Clock::now();
    auto t0 = start;
    opt.zero_grad();
    ModelWeights rotated = rotate_weights(mc, w.base, params, EmbeddingR1::online);
    lap(0, t0);
    ModelWeights wq = fake_quant_weights(rotated, s.weight);
    lap(1, t0);
    ModelWeights leaves = grad_leaves(mc, wq);
    double loss_value = 0;
    if (s.recompute) {
      lap(2, t0);
      auto nll = [&](const torch::Tensor& logits) { return losses::next_token_nll(logits, ids); };
      loss_value = backward_with_recompute(mc, leaves, ids, s.student, nll).item<double>();
      lap(3, t0);
    } else {
      torch::Tensor loss = losses::next_token_nll(lm_logits(leaves, forward_hidden(mc, leaves, ids, s.student)), ids);
      loss_value = loss.item<double>();
      lap(2, t0);
      loss.backward();
      lap(3, t0);
    }
    backward_from_leaves(mc, wq, leaves);
    lap(4, t0);
    opt.step();
    lap(5, t0);
    json rec = {{"loss", loss_value}, {"total_s", seconds_since(start)}};
    for (int i = 0; i < 6; ++i) rec[cat(kPhases[i], "_s")] = t[i];
    records.push_back(rec);
    std::cerr << w.name << " step " << step + 1 << "/" << s.steps << ": loss " << loss_value << ", "
              << rec["total_s"].get<double>() << " s" << std::endl;
  }
  return records;
}

// Mean of `values`, leaving out the first (warm-up) step when there is more than one.
double warm_mean(const std::vector<double>& values) {
  const size_t first = values.size() > 1 ? 1 : 0;
  double sum = 0;
  for (size_t i = first; i < values.size(); ++i) sum += values[i];
  return sum / double(values.size() - first);
}

std::vector<double> column(const json& records, const std::string& key) {
  std::vector<double> v;
  for (const json& r : records) v.push_back(r[key].get<double>());
  return v;
}

// Forward FLOPs of one batch: 2·tokens·(linear weights + lm_head + R1 on the embedding output and on
// lm_head's input, EmbeddingR1::online) + QKᵀ and P·V over the causal T(T+1)/2 query-key pairs (the
// useful work; spintrain's block-wise attention does a little more, the baseline the full T×T).
double forward_flops(const ModelConfig& c, const ModelWeights& w, int64_t batch, int64_t seq) {
  const int64_t linear = w.lm_head.numel() + 2 * c.hidden_size * c.hidden_size + layer_matrix_numel(w);
  const double pairs = double(seq) * (seq + 1) / 2;
  const double attention = 4.0 * batch * c.num_attention_heads * pairs * c.head_dim * c.num_hidden_layers;
  return 2.0 * batch * seq * double(linear) + attention;
}

// FLOPs of rotate_weights(EmbeddingR1::online): every R1-rotated layer matrix [m, n] costs 2·m·n·hidden
// (embed_tokens and lm_head are not rotated: forward_flops counts R1 on their activations); R2 on v/o
// 2·numel·head_dim.
double rotation_flops(const ModelConfig& c, const ModelWeights& w) {
  int64_t r2 = 0;
  for (const LayerWeights& L : w.layers) r2 += numel_sum({&L.v_proj, &L.o_proj});
  return 2.0 * layer_matrix_numel(w) * c.hidden_size + 2.0 * r2 * c.head_dim;
}

int64_t bytes_of(const ModelConfig& c, const ModelWeights& w) {
  int64_t b = 0;
  for (const auto& [name, t] : named_tensors(c, w)) b += t.numel() * t.element_size();
  return b;
}

// Writes the baseline's inputs, runs it, returns its JSON (see baseline_spinquant.py).
json run_baseline(const Workload& w, const Settings& s) {
  const ModelConfig& c = w.config;
  SPIN_CHECK(c.architecture == "LlamaForCausalLM" && !c.attention_bias && !c.qk_norm && c.rope_scaling.type == "none",
             w.name, ": the python baseline supports plain Llama only");
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"embed_tokens", w.base.embed_tokens}, {"norm", w.base.norm}, {"lm_head", w.base.lm_head},
      {"R1", w.init.r1}, {"ids", w.ids}};
  for (size_t i = 0; i < w.base.layers.size(); ++i) {
    const LayerWeights& L = w.base.layers[i];
    const std::string p = cat("layers.", i, ".");
    for (const auto& [n, t] : std::vector<std::pair<const char*, const torch::Tensor*>>{
             {"input_layernorm", &L.input_layernorm}, {"q_proj", &L.q_proj}, {"k_proj", &L.k_proj},
             {"v_proj", &L.v_proj}, {"o_proj", &L.o_proj}, {"post_attention_layernorm", &L.post_attention_layernorm},
             {"gate_proj", &L.gate_proj}, {"up_proj", &L.up_proj}, {"down_proj", &L.down_proj}})
      tensors.emplace_back(p + n, *t);
    tensors.emplace_back(p + "R2", w.init.r2[i]);
  }
  // The online Hadamards as dense matrices (the baseline applies them with a matmul).
  if (s.student.r3) tensors.emplace_back("H3", hadamard_matrix(c.head_dim));
  if (s.student.r4) tensors.emplace_back("H4", hadamard_matrix(c.intermediate_size));
  // The baseline reads float32 and casts to its dtype: exact for bf16 weights.
  for (auto& [n, t] : tensors)
    if (t.is_floating_point() && t.scalar_type() != torch::kFloat64) t = t.to(torch::kCPU, torch::kFloat32);
  // A quantizer the baseline implements: bits (16: off) and asym; per row/token/head, clip 1.
  auto spec = [&](const QuantSpec& q, const char* what) {
    SPIN_CHECK(!q.enabled() || (q.groupsize == 0 && q.clip == 1.0), "spin-bench: the python baseline quantizes ", what,
               " per row/token/head without clipping only");
    return json{{"bits", q.enabled() ? q.bits : 16}, {"asym", q.asym}};
  };
  SPIN_CHECK(!s.weight.asym, "spin-bench: the python baseline quantizes weights symmetrically only");
  const json settings = {{"steps", s.steps}, {"lr", s.lr}, {"momentum", s.momentum},
                         {"weight", spec(s.weight, "weights")}, {"act", spec(s.student.act, "activations")},
                         {"key", spec(s.student.key, "keys")}, {"value", spec(s.student.value, "values")},
                         {"r3", s.student.r3}, {"r4", s.student.r4},
                         {"threads", s.threads}, {"dtype", dtype_name(s.dtype)},
                         {"device", s.device.is_cuda() ? "cuda" : "cpu"}};
  const fs::path input = fs::path(s.work_dir) / (w.name + ".safetensors");
  save_safetensors(input.string(), tensors, {{"config", c.json.dump()}, {"settings", settings.dump()}});
  tensors.clear();
  const std::string cmd = cat(s.python, " '", s.baseline, "' --input '", input.string(), "'");
  std::cerr << "baseline: " << cmd << std::endl;
  FILE* pipe = popen(cmd.c_str(), "r");
  SPIN_CHECK(pipe, "spin-bench: cannot start the baseline: ", cmd);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int rc = pclose(pipe);
  fs::remove(input);
  SPIN_CHECK(rc == 0, "spin-bench: the baseline failed (exit status ", rc, "): ", cmd);
  try {
    return json::parse(out);
  } catch (const json::exception& e) {
    fail("spin-bench: the baseline printed no valid JSON (", e.what(), ")");
  }
}

// Activation memory of one float forward + backward of the unrotated, unquantized model: the embedding
// output is a leaf that requires grad, so the backward runs through every layer (and lm_head) without
// computing weight gradients. Peak RSS during it minus RSS before: the activations kept for backward,
// their gradients and the transients of both passes. CPU only (-1 on CUDA).
int64_t activation_bytes(const Workload& w, const Settings& s) {
  if (!s.device.is_cpu()) return -1;
  const int64_t before = rss_bytes();
  reset_peak_rss();
  {
    const torch::Tensor ids = w.ids.to(s.device);
    torch::Tensor x = embed(w.base, ids).detach().requires_grad_();
    torch::Tensor h = x;
    for (const LayerWeights& L : w.base.layers) h = decoder_layer(w.config, L, h, online_hadamards(s.student.r3, s.student.r4));
    losses::next_token_nll(lm_logits(w.base, rms_norm(h, w.base.norm, w.config.rms_norm_eps)), ids).backward();
  }
  return peak_rss_bytes() - before;
}

json bench_workload(const Workload& w, const Settings& s, const json& peak) {
  const int64_t batch = w.ids.size(0), seq = w.ids.size(1);
  const int64_t activations = activation_bytes(w, s);
  const bool reset = reset_peak_rss();
  const json steps = run_steps(w, s);
  json r = {{"name", w.name}, {"dtype", dtype_name(s.dtype)}, {"batch", batch}, {"seq", seq}, {"recompute", s.recompute},
            {"config", w.config.json}, {"steps", steps}, {"peak_rss_bytes", peak_rss_bytes()},
            {"peak_rss_is_training_only", reset}, {"frozen_weights_bytes", bytes_of(w.config, w.base)}};
  json mean;
  for (const char* p : kPhases) mean[cat(p, "_s")] = warm_mean(column(steps, cat(p, "_s")));
  mean["total_s"] = warm_mean(column(steps, "total_s"));
  r["mean"] = mean;
  if (activations >= 0) {
    // The memory target: peak below 1.5 × (frozen weights + one rotated copy + activations).
    const int64_t rotated = layer_matrix_numel(w.base) * w.base.lm_head.element_size();
    const int64_t bound = int64_t(1.5 * double(bytes_of(w.config, w.base) + rotated + activations));
    r["activation_bytes"] = activations;
    r["rotated_weights_bytes"] = rotated;
    r["memory_target_bytes"] = bound;
    r["peak_rss_of_target"] = double(r["peak_rss_bytes"].get<int64_t>()) / double(bound);
  }
  r["tokens_per_s"] = batch * seq / mean["total_s"].get<double>();
  const double train = 3 * forward_flops(w.config, w.base, batch, seq);  // backward ≈ 2× forward
  const double fb = mean["forward_s"].get<double>() + mean["backward_model_s"].get<double>();
  r["forward_backward_gflop"] = train / 1e9;
  r["forward_backward_gflops"] = train / fb / 1e9;
  r["rotation_gflop"] = rotation_flops(w.config, w.base) / 1e9;
  const std::string key = dtype_name(s.dtype);
  if (peak.contains(key)) r["fraction_of_peak"] = train / fb / 1e9 / peak[key].get<double>();
  if (!s.baseline.empty()) {
    json b = run_baseline(w, s);
    SPIN_CHECK(b.contains("losses") && b["losses"].size() == steps.size(), "spin-bench: the baseline ran ",
               b.value("losses", json::array()).size(), " steps, expected ", steps.size());
    double diff = 0;
    for (size_t i = 0; i < steps.size(); ++i) {
      const double ours = steps[i]["loss"], theirs = b["losses"][i];
      diff = std::max(diff, std::abs(ours - theirs) / std::max(1e-12, std::abs(theirs)));
    }
    b["mean_step_s"] = warm_mean(b["step_seconds"].get<std::vector<double>>());
    r["baseline"] = b;
    r["max_loss_rel_diff"] = diff;
    r["speedup"] = b["mean_step_s"].get<double>() / mean["total_s"].get<double>();
  }
  return r;
}

}  // namespace

using cli::Type;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-bench", "Training-step performance of spintrain vs an eager PyTorch baseline",
      std::vector<cli::Option>{
          {"models", Type::text, "stories,random", "", "comma list: stories, random"},
          {"stories", Type::text, "assets/models/stories260K", "", "stories260K checkpoint directory"},
          {"stories-batch", Type::integer, "8", "", "rows per step on stories260K"},
          {"stories-seq", Type::integer, "512", "", "tokens per row on stories260K"},
          {"hidden", Type::integer, "2048", "", "random model hidden_size"},
          {"intermediate", Type::integer, "5632", "", "random model intermediate_size"},
          {"heads", Type::integer, "32", "", "random model num_attention_heads"},
          {"kv-heads", Type::integer, "4", "", "random model num_key_value_heads"},
          {"layers", Type::integer, "2", "", "random model num_hidden_layers"},
          {"vocab", Type::integer, "32000", "", "random model vocab_size"},
          {"seq", Type::integer, "2048", "", "random model tokens per row"},
          {"batch", Type::integer, "1", "", "random model rows per step"},
          {"steps", Type::integer, "3", "", "timed steps per model (the first is a warm-up when > 1)"},
          {"lr", Type::real, "1.5", "", "Cayley SGD learning rate (constant)"},
          {"momentum", Type::real, "0.9", "", "Cayley SGD momentum"},
          {"dtype", Type::text, "f32", "", "training dtype: f32 or bf16"},
          {"recompute", Type::boolean, "false", "", "per-layer recomputation in backward (spintrain --recompute)"},
          {"device", Type::text, "cpu", "", "cpu, cuda or auto"},
          {"threads", Type::integer, "0", "", "CPU threads (0: all cores), also given to the baseline"},
          {"gemm-size", Type::integer, "4096", "", "square GEMM size for the peak (0: skip)"},
          {"gemm-reps", Type::integer, "3", "", "GEMM repetitions (best counts)"},
          {"baseline", Type::text, "", "", "baseline script (empty: no baseline)"},
          {"python", Type::text, "/usr/bin/python3", "", "python interpreter for the baseline"},
          {"seed", Type::integer, "0", "", "seed of weights, ids and rotations"},
          {"profile", Type::text, "", "", "write a chrome trace of each model's last step to PREFIX.<model>.json  (summarise with experiments/profile_summary.py)"},
          {"out", Type::text, "", "", "also write the JSON to this file"},
          {"save-random", Type::text, "", "", "only write the random model to DIR (float32 checkpoint) and --batch rows of its  token ids to DIR-calib.h5, for spintrain runs at benchmark shapes"},
      } + cli::with_defaults(cli::quant_options(), {{"wbits", "4"}}) +
          cli::select(train_program().options, {"r3", "r4"})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& a) {
        if (!a.text("save-random").empty()) {
      const fs::path dir = a.text("save-random");
      const int64_t seq = a.integer("seq");
      const json config = random_llama_json(a.integer("hidden"), a.integer("intermediate"),
                                            a.integer("heads"), a.integer("kv-heads"),
                                            a.integer("layers"), a.integer("vocab"), seq);
      const ModelConfig c = parse_model_config(config, "spin-bench random model");
      const uint64_t seed = uint64_t(a.integer("seed"));
      SaveOptions so;
      so.config_json = config;
      so.dtype = torch::kFloat32;
      save_checkpoint(dir, c, random_weights(c, seed), so);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 7);
      const std::string calib = dir.string() + "-calib.h5";
      data::write_token_ids(calib,
                            at::randint(c.vocab_size, {a.integer("batch"), seq}, gen, torch::kInt64),
                            {{"source", "spin-bench --save-random: uniform random token ids"}});
      std::cerr << "wrote " << dir.string() << " and " << calib << std::endl;
      return 0;
    }
    Settings s;
    s.dtype = cli::parse_dtype(a.text("dtype"));
    s.recompute = a.flag("recompute");
    SPIN_CHECK(s.dtype != torch::kFloat64, "spin-bench: --dtype must be f32 or bf16");
    s.device = cli::parse_device(a.text("device"));
    cli::check_dtype_on_device(s.dtype, s.device);
    const cli::QuantFlags quant = cli::quant_flags(a);
    s.weight = quant.weight;
    s.student = quant.forward();
    s.student.r3 = a.flag("r3");
    s.student.r4 = a.flag("r4");
    s.lr = a.real("lr");
    s.momentum = a.real("momentum");
    s.steps = a.integer("steps");
    SPIN_CHECK(s.steps >= 1, "spin-bench: --steps must be at least 1");
    s.threads = int(a.integer("threads"));
    s.baseline = a.text("baseline");
    s.python = a.text("python");
    s.profile = a.text("profile");
    const ScratchDir scratch(fs::temp_directory_path() / cat("spin-bench-", getpid()));
    s.work_dir = scratch.path.string();
    const uint64_t seed = uint64_t(a.integer("seed"));
    const int64_t runtime_rss = rss_bytes();  // libraries and runtime, before any model is built

    auto env = [](const char* name) { return std::string(std::getenv(name) ? std::getenv(name) : ""); };
    json result = {{"threads", at::get_num_threads()}, {"device", s.device.str()}, {"torch", TORCH_VERSION},
                   {"openblas_core", openblas_core()}, {"omp_wait_policy", env("OMP_WAIT_POLICY")},
                   {"gomp_spincount", env("GOMP_SPINCOUNT")},
                   {"wbits", s.weight.bits}, {"quant", quant.describe()}, {"r3", s.student.r3}, {"r4", s.student.r4},
                   {"steps", s.steps}, {"runtime_rss_bytes", runtime_rss}};
    json peak = json::object();
    if (const int64_t n = a.integer("gemm-size"); n > 0) {
      for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
        peak[dtype_name(dt)] = gemm_gflops(n, dt, s.device, int(a.integer("gemm-reps")));
        std::cerr << "GEMM " << n << " " << dtype_name(dt) << ": " << peak[dtype_name(dt)].get<double>() << " GFLOP/s"
                  << std::endl;
      }
      result["gemm_size"] = n;
    }
    result["gemm_peak_gflops"] = peak;

    RotationConfig rc;
    rc.r1 = rc.r2 = true;
    rc.r3 = s.student.r3;
    rc.r4 = s.student.r4;
    rc.seed = seed;
    auto make = [&](const std::string& name, const ModelConfig& c, const ModelWeights& weights, int64_t batch,
                    int64_t seq) {
      Workload w{name, c, map_weights(c, fold_norms(c, weights, rc.r4),
                                      [&](const torch::Tensor& t) { return t.to(s.device, s.dtype); }),
                 init_rotations(c, rc), {}};
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 7);
      w.ids = at::randint(c.vocab_size, {batch, seq}, gen, torch::kInt64);
      return w;
    };
    json models = json::array();
    std::stringstream list(a.text("models"));
    for (std::string m; std::getline(list, m, ',');) {
      if (m == "stories") {
        const Workload w = [&] {
          const Checkpoint ck = load_checkpoint(a.text("stories"));
          return make("stories260K", ck.config, ck.weights, a.integer("stories-batch"),
                      a.integer("stories-seq"));
        }();
        models.push_back(bench_workload(w, s, peak));
      } else if (m == "random") {
        const int64_t seq = a.integer("seq");
        const ModelConfig c = parse_model_config(
            random_llama_json(a.integer("hidden"), a.integer("intermediate"), a.integer("heads"),
                              a.integer("kv-heads"), a.integer("layers"), a.integer("vocab"), seq),
            "spin-bench random model");
        const Workload w = make("random-llama", c, random_weights(c, seed), a.integer("batch"), seq);
        models.push_back(bench_workload(w, s, peak));
      } else {
        fail("spin-bench: --models: unknown model '", m, "' (expected stories or random)");
      }
    }
    result["models"] = models;
    const std::string text = result.dump(2) + "\n";
    if (const std::string out = a.text("out"); !out.empty()) write_text_atomic(out, text);
    std::cout << text;
    return 0;
  });
}
