#include "src/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>

#include "data/batch_stream.h"
#include "data/calib_dataset.h"
#include "losses/next_token.h"
#include "optim/hybrid.h"
#include "src/train/adapt.h"
#include "src/io/atomic_file.h"
#include "src/kernels/attention.h"
#include "src/train/blockwise.h"
#include "src/base/check.h"
#include "src/dist/group.h"
#include "src/model/evaluate.h"
#include "src/train/grad_leaves.h"
#include "src/train/learnables.h"
#include "src/model/recompute.h"
#include "src/io/resources.h"
#include "src/io/safetensors.h"
#include "src/train/log.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

using Clock = std::chrono::steady_clock;

// Options whose change alters the learned rotations; a resumed run must match them.
const char* kResultKeys[] = {"model", "calib", "nsamples", "seq-len", "wbits", "groupsize", "w-asym", "w-clip",
                             "abits", "a-asym", "a-clip", "kbits", "vbits", "kv-groupsize", "kv-asym", "rotations",
                             "r3", "r4", "init", "seed", "optimizer", "lr", "momentum", "schedule", "warmup",
                             "steps", "batch-size", "grad-accum", "loss", "kl-topk", "dtype", "reorth-threshold",
                             "mode", "r1-from", "smooth", "learn-clip", "scale-lr", "quant-grad"};

using data::BatchStream;

struct Trainer {
  const TrainConfig& cfg;
  dist::Group& group;
  LoadedModel model;
  const ModelConfig& mc;
  ModelWeights base;  // folded (+R4) frozen weights in the training dtype/device
  Rotations init;     // float64 initial rotations (R1 from --r1-from when given)
  Learnables learn;   // rotations (R1 fixed outside e2e), scales and clip ratios
  std::unique_ptr<optim::HybridOptimizer> opt;  // e2e (blockwise makes one per layer)
  optim::LrSchedule schedule;
  int64_t start_step = 0;

  Trainer(const TrainConfig& c, dist::Group& g)
      : cfg(c), group(g), model(load_model(c.model)), mc(model.checkpoint.config) {
    SPIN_CHECK(cfg.batch_size % group.world_size() == 0, "spintrain: --batch-size ", cfg.batch_size,
               " is not divisible by the ", group.world_size(), " ranks (each rank takes an equal slice)");
    SPIN_CHECK(!model.rotation.any(), c.model, ": is already a rotated checkpoint (config.json has a rotation section)");
    init = init_rotations(mc, cfg.rotation);
    if (!cfg.r1_from.empty()) {
      SPIN_CHECK(cfg.rotation.r1, "spintrain: --r1-from needs r1 in --rotations");
      const Rotations from = load_model(cfg.r1_from).rotations;
      SPIN_CHECK(from.r1.defined(), cfg.r1_from, ": has no R1 (config.json rotation.fused does not list r1)");
      SPIN_CHECK(from.r1.size(0) == mc.hidden_size, cfg.r1_from, ": R1 is ", from.r1.size(0), " x ", from.r1.size(1),
                 " but ", cfg.model, " has hidden_size ", mc.hidden_size);
      init.r1 = from.r1;
    }
    base = map_weights(mc, rotation_base(mc, model.checkpoint.weights, cfg.rotation, cfg.dtype),
                       [&](const torch::Tensor& t) { return t.to(cfg.device); });
    // The stored weights are needed again only for the float64 fusion and export: drop them for the
    // training phase (one model-sized copy less at its peak) and reload them from disk afterwards.
    model.checkpoint.weights = ModelWeights{};
    // Only end-to-end training sees R1's effect on every layer at once; the other modes keep it fixed.
    learn = Learnables::create(cfg, mc, init, cfg.mode == "e2e");
    SPIN_CHECK(!learn.all().empty() || cfg.mode == "adapt",
               "spintrain: nothing to learn: --rotations names nothing and --smooth/--learn-clip are off");
    if (cfg.mode == "e2e") opt = make_optimizer(cfg, learn.stiefel(), learn.euclidean());
    schedule = make_schedule(cfg);
  }

  ForwardOptions student_options() const {
    ForwardOptions o;
    o.act = cfg.act;
    o.key = cfg.key;
    o.value = cfg.value;
    o.r3 = cfg.rotation.r3;
    o.r4 = cfg.rotation.r4;
    return o;
  }
  // The float model: base needs R4's online Hadamard to compute the input model's function.
  ForwardOptions teacher_options() const {
    ForwardOptions o;
    o.r4 = cfg.rotation.r4;
    return o;
  }

  // One micro-batch's forward and backward, the loss scaled by `scale`; returns that loss (detached).
  // --recompute keeps only each layer's input and rebuilds the rest during backward.
  torch::Tensor forward_backward(const ModelWeights& w, const torch::Tensor& batch, double scale) {
    auto loss_fn = [&](const torch::Tensor& logits) { return loss_from_logits(logits, batch) * scale; };
    if (cfg.recompute) return backward_with_recompute(mc, w, batch, student_options(), loss_fn);
    torch::Tensor loss = loss_fn(lm_logits(w, forward_hidden(mc, w, batch, student_options())));
    loss.backward();
    return loss.detach();
  }

  // The training loss of the student's logits [B, T, vocab] on `batch`: CE, or KL to the float model.
  torch::Tensor loss_from_logits(const torch::Tensor& logits, const torch::Tensor& batch) {
    if (cfg.loss == "ce") return losses::next_token_nll(logits, batch);
    torch::Tensor teacher;
    {
      torch::NoGradGuard g;
      teacher = lm_logits(base, forward_hidden(mc, base, batch, teacher_options()));
    }
    if (cfg.loss == "kl") return losses::kl_to_teacher(logits, torch::log_softmax(teacher, -1));
    return losses::kl_topk(logits, losses::teacher_topk(teacher, cfg.kl_topk));
  }

  fs::path state_file() const { return fs::path(cfg.state_dir) / "state.pt"; }

  nlohmann::json result_keys() const {
    nlohmann::json j;
    for (const char* k : kResultKeys) j[k] = cfg.resolved[k];
    return j;
  }

  void save_state(int64_t next_step) {
    torch::serialize::OutputArchive a, o;
    a.write("next_step", torch::tensor(next_step));
    const std::string keys = result_keys().dump();
    a.write("config_json", torch::from_blob(const_cast<char*>(keys.data()), {int64_t(keys.size())}, torch::kUInt8).clone());
    const auto params = learn.all();
    for (size_t i = 0; i < params.size(); ++i) a.write(cat("param.", i), params[i].detach());
    opt->save(o);
    a.write("optimizer", o);
    fs::create_directories(cfg.state_dir);
    write_file_atomic(state_file(), [&](const fs::path& tmp) { a.save_to(tmp.string()); });
  }

  void load_state() {
    SPIN_CHECK(fs::exists(state_file()), state_file().string(), ": no training state to resume from");
    torch::serialize::InputArchive a, o;
    a.load_from(state_file().string());
    auto read = [&](const std::string& key) {
      torch::Tensor t;  // a fresh tensor per key: read() into a defined tensor would alias its storage
      a.read(key, t);
      return t;
    };
    torch::Tensor keys = read("config_json");
    const std::string saved(static_cast<const char*>(keys.data_ptr()), keys.numel());
    SPIN_CHECK(nlohmann::json::parse(saved) == result_keys(), state_file().string(),
               ": the training state was made with different options: ", saved);
    start_step = read("next_step").item<int64_t>();
    torch::NoGradGuard g;
    const auto params = learn.all();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(read(cat("param.", i)));
    a.read("optimizer", o);
    opt->load(o);
  }

  // Estimated bytes this job still needs on top of what is resident after loading (`base`; the
  // checkpoint's weights are dropped for training and reloaded for the export), the larger of two
  // phases, per rank:
  //   training: rotated, fake-quantized and leaf-gradient copies of every weight (3 x base) plus
  //             activations saved for backward (with --recompute: every layer's input and one
  //             layer's intermediates) and the float32 logits at the loss;
  //   export:   the stored weights again, folded and fused in float64 (2 x 8 bytes per parameter
  //             plus the stored dtype).
  // A rough model (docs/SCALING.md works it through for 7B-70B), meant to catch a job that cannot fit.
  uint64_t extra_memory_estimate(int64_t seq_len) const {
    const int64_t numel = parameter_count();
    const int64_t weight_bytes = numel * int64_t(torch::elementSize(cfg.dtype));
    const int64_t rows = cfg.batch_size / group.world_size(), T = seq_len;
    const int64_t per_layer = rows * T * (12 * mc.hidden_size + 4 * mc.intermediate_size) * 4;
    // Attention keeps nothing of size T² (src/kernels/attention.h); one call's score scratch is transient.
    const int64_t attention = 2 * std::min(kAttentionBlockBytes, rows * mc.num_attention_heads * T * T * 4);
    const int64_t logits = rows * T * mc.vocab_size * 4 * (cfg.loss == "ce" ? 4 : 7);
    const int64_t layer_inputs = (mc.num_hidden_layers + 1) * rows * T * mc.hidden_size * 4;
    const int64_t activations =
        (cfg.recompute ? layer_inputs + per_layer : mc.num_hidden_layers * per_layer) + attention;
    const int64_t training = 3 * weight_bytes + activations + logits;
    const int64_t exporting = group.is_main() ? numel * (16 + int64_t(torch::elementSize(model.checkpoint.dtype))) : 0;
    return uint64_t(std::max(training, exporting));
  }

  // The export's size: every tensor of `base` (norm-folded, untied) in the stored dtype, plus the
  // float64 rotations and the clip ratios.
  uint64_t export_bytes() const {
    int64_t bytes = parameter_count() * int64_t(torch::elementSize(model.checkpoint.dtype));
    for (const auto& p : learn.all()) bytes += p.numel() * 8;
    return uint64_t(bytes);
  }

  // Elements of every tensor the export will hold (`base`: norm-folded, lm_head untied).
  int64_t parameter_count() const {
    int64_t numel = 0;
    for (const auto& [name, t] : named_tensors(mc, base)) numel += t.numel();
    return numel;
  }

  // This rank's contiguous slice of a global micro-batch [batch_size, T] -> [batch_size / world, T].
  torch::Tensor rank_slice(const torch::Tensor& batch) const {
    const int64_t rows = batch.size(0) / group.world_size();
    return batch.narrow(0, group.rank() * rows, rows);
  }

  // One optimizer step over grad_accum global micro-batches; returns the mean loss over all ranks.
  double step(BatchStream& data, int64_t step_index) {
    opt->zero_grad();
    ModelWeights wq = student_weights(mc, base, learn, cfg.weight, EmbeddingR1::online);
    // Detached leaves: every micro-batch's backward stops here, so the rotation and quantization of the
    // weights run once per step whatever grad_accum is.
    ModelWeights leaves = grad_leaves(mc, wq);
    const std::vector<torch::Tensor> params = learn.all();
    torch::Tensor loss_sum = torch::zeros({1}, cfg.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
    for (int64_t m = 0; m < cfg.grad_accum; ++m) {
      torch::Tensor batch = rank_slice(data.batch(step_index * cfg.grad_accum + m)).to(cfg.device);
      loss_sum += forward_backward(leaves, batch, 1.0 / double(cfg.grad_accum)).to(torch::kCPU, loss_sum.scalar_type());
    }
    backward_from_leaves(mc, wq, leaves);
    // Every rank averages the same buffer, so every rank sees the same loss and takes the same step.
    std::vector<torch::Tensor> reduced = {loss_sum};
    for (torch::Tensor p : params) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // e.g. a scale that no loss reads
      reduced.push_back(p.grad());
    }
    group.average(reduced);
    const double value = loss_sum.item<double>();
    SPIN_CHECK(std::isfinite(value), "spintrain: step ", step_index + 1, ": loss is ", value,
               "; stopping (the last good training state, if any, is in ", cfg.state_dir, ")");
    opt->set_lr_factor(schedule.factor(step_index));
    opt->step();
    return value;
  }

  // Steps start_step..cfg.steps of end-to-end training, one log record each.
  void train(BatchStream& data, TrainLog& log, TrainSummary& summary) {
    const int64_t tokens_per_step = cfg.batch_size * cfg.grad_accum * data.seq_len();
    const auto t0 = Clock::now();
    const std::vector<torch::Tensor> params = learn.all();
    for (int64_t s = start_step; s < cfg.steps; ++s) {
      const auto ts = Clock::now();
      const double loss = step(data, s);
      learn.project();
      std::optional<double> drift;
      const double orth = repair_orthogonality(*opt, learn.stiefel(), cfg.reorth_threshold, drift);
      const std::string checksum = group.check_identical(params, "the learned parameters");
      const double dt = std::chrono::duration<double>(Clock::now() - ts).count();
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      summary.final_loss = loss;
      summary.steps_run++;
      nlohmann::json rec = {{"step", s + 1}, {"steps", cfg.steps}, {"loss", loss}, {"lr", cfg.lr * schedule.factor(s)},
                            {"orth_err", orth}, {"tokens_per_s", tokens_per_step / dt}, {"step_seconds", dt},
                            {"eta_seconds", elapsed / (s + 1 - start_step) * (cfg.steps - s - 1)},
                            {"world_size", group.world_size()}, {"rot_checksum", checksum}};
      if (drift) rec["warning"] = orthogonality_warning(*drift, cfg.reorth_threshold);
      log.step(rec);
      if (group.is_main() && cfg.save_every > 0 && ((s + 1) % cfg.save_every == 0 || s + 1 == cfg.steps))
        save_state(s + 1);
    }
  }

  Rotations learned_f64() const {
    Rotations r;
    if (learn.rotations.r1.defined()) r.r1 = nearest_orthogonal(learn.rotations.r1);
    for (const auto& p : learn.rotations.r2) r.r2.push_back(nearest_orthogonal(p));
    return r;
  }
};

}  // namespace

TrainSummary run_spintrain(const TrainConfig& cfg) {
  cli::set_threads(cfg.threads);
  dist::Group group(dist::env_from_environment(), std::chrono::seconds(cfg.dist_timeout));
  Trainer tr(cfg, group);
  const ModelConfig& mc = tr.mc;
  data::CalibOptions dopt;
  dopt.rows = cfg.nsamples;
  dopt.seq_len = cfg.seq_len;
  BatchStream data(data::load_calib(cfg.calib, mc.vocab_size, dopt), cfg.batch_size, cfg.rotation.seed);
  if (cfg.resume) tr.load_state();
  const int64_t seq_len = data.seq_len();
  if (cfg.resource_check) {
    if (group.is_main()) require_disk(cfg.out, tr.export_bytes(), "spintrain: the export");
    if (cfg.device.is_cpu()) require_memory(tr.extra_memory_estimate(seq_len), cat("spintrain (rank ", group.rank(), ")"));
  }

  // Rank 0 alone writes the log, the training state and the export; the others only train.
  const bool main_rank = group.is_main();
  TrainLog log = main_rank ? TrainLog(cfg.log, cfg.resume, cfg.quiet) : TrainLog();
  TrainSummary summary;
  const auto t0 = Clock::now();
  if (cfg.mode == "e2e") {
    tr.train(data, log, summary);
  } else if (cfg.mode == "blockwise") {
    const BlockwiseSummary b = train_blockwise(cfg, mc, tr.base, tr.learn, data.rows().to(cfg.device),
                                               tr.student_options(), tr.teacher_options(), log);
    summary.final_loss = b.final_loss;
    summary.steps_run = b.steps_run;
  } else {  // adapt: closed form, no optimizer
    const AdaptOptions ao{cfg.adapt_steps, cfg.adapt_block_size, cfg.adapt_max_samples, cfg.rotation.seed};
    const AdaptResult a = adapt_rotations(mc, tr.base, tr.init, data.rows().to(cfg.device), cfg.weight,
                                          tr.student_options(), ao);
    for (const AdaptStageReport& st : a.stages) {
      log.record({{"stage", st.name}, {"objective_before", st.before}, {"objective_after", st.after},
                  {"terms", st.terms}, {"best_step", st.best_step}});
      if (main_rank && !cfg.quiet)
        std::cerr << "adapt " << st.name << ": relative quantization error " << st.before << " -> " << st.after
                  << " (best step " << st.best_step << ")" << std::endl;
    }
    tr.learn.rotations = a.rotations;
  }
  const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t train_peak_rss = peak_rss_bytes();  // before evaluation and the float64 export
  summary.max_orthogonality_error = tr.learn.orthogonality_error();
  if (!main_rank) return summary;

  // Fuse in float64 from the stored weights (reloaded: training ran without them), not from the
  // training-dtype copy; the reloaded weights must be the ones that were trained on.
  tr.model.checkpoint.weights = load_model(cfg.model).checkpoint.weights;
  const Rotations learned = tr.learned_f64();
  const ModelWeights base64 = rotation_base(mc, tr.model.checkpoint.weights, cfg.rotation);
  const auto trained = named_tensors(mc, tr.base), stored = named_tensors(mc, base64);
  for (size_t i = 0; i < trained.size(); ++i)
    SPIN_CHECK(stored[i].second.to(cfg.dtype).equal(trained[i].second.cpu()), cfg.model, ": ", stored[i].first,
               " changed on disk during training; nothing was exported");
  const ModelWeights fused = fused_weights(mc, base64, learned, tr.learn.smoothing);

  // Before/after table on held-out data.
  nlohmann::json table = nlohmann::json::array();
  if (!cfg.eval_data.empty()) {
    data::CalibOptions eopt;
    eopt.rows = cfg.eval_rows;
    eopt.seq_len = cfg.seq_len;
    torch::Tensor ids = data::load_calib(cfg.eval_data, mc.vocab_size, eopt).to(cfg.device);
    auto compute = [&](const ModelWeights& w) {
      return map_weights(mc, w, [&](const torch::Tensor& t) { return t.detach().to(cfg.device, cfg.dtype); });
    };
    const ModelRef reference{&mc, &tr.base, tr.teacher_options()};
    auto row = [&](const std::string& name, const ModelWeights& w, const ForwardOptions& fo) {
      torch::NoGradGuard g;
      const ModelRef m{&mc, &w, fo};
      EvalResult r = evaluate(m, ids, cfg.batch_size, &reference);
      nlohmann::json j = r.to_json();
      j["name"] = name;
      table.push_back(j);
      std::cerr << std::left << std::setw(28) << name << std::fixed << " nll " << std::setprecision(4) << r.nll << "  ppl "
                << std::setprecision(3) << r.ppl << "  kl " << std::setprecision(4) << r.kl << std::endl;
    };
    ForwardOptions quant = tr.student_options();
    if (!cfg.skip_baselines) {
      row("float", tr.base, tr.teacher_options());
      ForwardOptions plain = quant;
      plain.r3 = plain.r4 = false;
      row("rtn (no rotation)", fake_quant_weights(compute(tr.model.checkpoint.weights), cfg.weight), plain);
      row("rtn + " + cfg.rotation.init + " init",
          fake_quant_weights(compute(rotate_weights(mc, base64, tr.init)), cfg.weight), quant);
    }
    row("rtn + learned", fake_quant_weights(compute(fused), cfg.weight, tr.learn.clip), quant);
  }
  summary.eval_table = table;

  nlohmann::json results = {{"eval", table},
                            {"final_loss", summary.final_loss},
                            {"orth_err", summary.max_orthogonality_error},
                            {"mode", cfg.mode},
                            {"train_seconds", train_seconds},
                            {"train_peak_rss_bytes", train_peak_rss},
                            {"peak_rss_bytes", peak_rss_bytes()},
                            {"config", cfg.resolved}};
  nlohmann::json train_section = {{"mode", cfg.mode}, {"steps", cfg.steps}, {"optimizer", cfg.optimizer},
                                  {"loss", cfg.loss}, {"lr", cfg.lr},
                                  {"quant_proxy", cli::QuantFlags{cfg.weight, cfg.act, cfg.key, cfg.value}.describe()}};
  nlohmann::json section = {{"training", train_section}};
  if (cfg.smooth)  // folded: the norm weights hold 1/s, the linears W·diag(s)
    section["smoothing_folded"] = cfg.rotation.r4 ? nlohmann::json{"attn_in", "mlp_in", "v_out"}
                                                  : nlohmann::json{"attn_in", "mlp_in", "v_out", "up_out"};
  if (cfg.learn_clip) section["weight_clip_file"] = kWeightClipFile;
  export_rotated(cfg.out, tr.model.checkpoint, fused, cfg.rotation, learned, section, [&](const fs::path& dir) {
    write_text_atomic(dir / "spintrain_config.json", cfg.resolved.dump(2) + "\n");
    write_text_atomic(dir / "spintrain_results.json", results.dump(2) + "\n");
    if (cfg.learn_clip) save_weight_clip(dir / kWeightClipFile, tr.learn.clip);
  });
  log.record({{"summary", results}});
  return summary;
}

}  // namespace spin
