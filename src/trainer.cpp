#include "src/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>

#include "data/calib_dataset.h"
#include "losses/next_token.h"
#include "optim/hybrid.h"
#include "src/atomic_file.h"
#include "src/check.h"
#include "src/distributed.h"
#include "src/evaluate.h"
#include "src/grad_leaves.h"
#include "src/quantize_weights.h"
#include "src/recompute.h"
#include "src/resources.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

using Clock = std::chrono::steady_clock;

// Options whose change alters the learned rotations; a resumed run must match them.
const char* kResultKeys[] = {"model", "calib", "nsamples", "seq-len", "wbits", "groupsize", "w-asym", "w-clip",
                             "abits", "a-asym", "a-clip", "kbits", "vbits", "kv-groupsize", "kv-asym", "rotations",
                             "r3", "r4", "init", "seed", "optimizer", "lr", "momentum", "schedule", "warmup",
                             "steps", "batch-size", "grad-accum", "loss", "kl-topk", "dtype", "reorth-threshold"};

// Rows of the calibration set in a seeded order, reshuffled every epoch; micro-batch j is a pure
// function of (seed, j), so a resumed run sees the same data.
class BatchStream {
 public:
  BatchStream(torch::Tensor rows, int64_t batch_size, uint64_t seed)
      : rows_(std::move(rows)), batch_size_(batch_size), seed_(seed) {}

  int64_t seq_len() const { return rows_.size(1); }

  torch::Tensor batch(int64_t j) {
    const int64_t n = rows_.size(0);
    std::vector<int64_t> idx;
    for (int64_t p = j * batch_size_; p < (j + 1) * batch_size_; ++p) {
      const int64_t epoch = p / n;
      if (epoch != epoch_) {
        perm_ = data::seeded_permutation(n, seed_ + 1000003ull * epoch);
        epoch_ = epoch;
      }
      idx.push_back(perm_[p % n]);
    }
    return rows_.index_select(0, torch::tensor(idx));
  }

 private:
  torch::Tensor rows_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

std::string format_seconds(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 60 ? cat(t / 60, "m", std::setw(2), std::setfill('0'), t % 60, "s") : cat(t, "s");
}

struct Trainer {
  const TrainConfig& cfg;
  dist::Group& group;
  LoadedModel model;
  const ModelConfig& mc;
  ModelWeights base;  // folded (+R4) frozen weights in the training dtype/device
  Rotations init;     // float64 initial rotations
  Rotations params;   // trainable leaves
  std::vector<torch::Tensor> trainable;  // params.r1 (if learned), then params.r2
  std::unique_ptr<optim::HybridOptimizer> opt;
  optim::LrSchedule schedule;
  int64_t start_step = 0;

  Trainer(const TrainConfig& c, dist::Group& g)
      : cfg(c), group(g), model(load_model(c.model)), mc(model.checkpoint.config) {
    SPIN_CHECK(cfg.batch_size % group.world_size() == 0, "spintrain: --batch-size ", cfg.batch_size,
               " is not divisible by the ", group.world_size(), " ranks (each rank takes an equal slice)");
    SPIN_CHECK(!model.rotation.any(), c.model, ": is already a rotated checkpoint (config.json has a rotation section)");
    init = init_rotations(mc, cfg.rotation);
    base = map_weights(mc, rotation_base(mc, model.checkpoint.weights, cfg.rotation),
                       [&](const torch::Tensor& t) { return t.to(cfg.device, cfg.dtype); });
    const auto param_dtype = cfg.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    auto leaf = [&](const torch::Tensor& r) { return r.to(cfg.device, param_dtype).clone().requires_grad_(true); };
    if (init.r1.defined()) trainable.push_back(params.r1 = leaf(init.r1));
    for (const auto& r : init.r2) trainable.push_back(params.r2.emplace_back(leaf(r)));
    SPIN_CHECK(!trainable.empty(), "spintrain: --rotations names nothing to learn (use r1, r2 or both)");
    std::vector<torch::optim::OptimizerParamGroup> groups;
    if (cfg.optimizer == "cayley-sgd") {
      optim::CayleySGDOptions o;
      o.lr = cfg.lr;
      o.momentum = cfg.momentum;
      groups.push_back(optim::stiefel_group(trainable, o));
    } else {
      optim::CayleyAdamOptions o;
      o.lr = cfg.lr;
      o.beta1 = cfg.momentum;
      groups.push_back(optim::stiefel_group(trainable, o));
    }
    opt = std::make_unique<optim::HybridOptimizer>(std::move(groups));
    schedule.kind = optim::parse_schedule_kind(cfg.schedule, "--schedule");
    schedule.warmup_steps = cfg.warmup;
    schedule.total_steps = std::max<int64_t>(cfg.steps, 1);
    schedule.validate();
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
    if (params.r1.defined()) a.write("r1", params.r1.detach());
    for (size_t i = 0; i < params.r2.size(); ++i) a.write(cat("r2.", i), params.r2[i].detach());
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
    if (params.r1.defined()) params.r1.copy_(read("r1"));
    for (size_t i = 0; i < params.r2.size(); ++i) params.r2[i].copy_(read(cat("r2.", i)));
    a.read("optimizer", o);
    opt->load(o);
  }

  // Estimated bytes this job still needs on top of what is resident after loading (the checkpoint and
  // `base`), the larger of two phases, per rank:
  //   training: rotated, fake-quantized and leaf-gradient copies of every weight (3 x base) plus
  //             activations saved for backward (with --recompute: every layer's input and one
  //             layer's intermediates) and the float32 logits at the loss;
  //   export:   the stored weights folded and fused in float64 (2 x 8 bytes per parameter).
  // A rough model (docs/SCALING.md works it through for 7B-70B), meant to catch a job that cannot fit.
  uint64_t extra_memory_estimate(int64_t seq_len) const {
    const int64_t numel = parameter_count();
    const int64_t weight_bytes = numel * int64_t(torch::elementSize(cfg.dtype));
    const int64_t rows = cfg.batch_size / group.world_size(), T = seq_len;
    const int64_t per_layer = rows * T * (12 * mc.hidden_size + 4 * mc.intermediate_size) * 4 +
                              rows * mc.num_attention_heads * T * T * 4 * 2;
    const int64_t logits = rows * T * mc.vocab_size * 4 * (cfg.loss == "ce" ? 4 : 7);
    const int64_t layer_inputs = (mc.num_hidden_layers + 1) * rows * T * mc.hidden_size * 4;
    const int64_t activations = cfg.recompute ? layer_inputs + per_layer : mc.num_hidden_layers * per_layer;
    const int64_t training = 3 * weight_bytes + activations + logits;
    const int64_t exporting = group.is_main() ? numel * 16 : 0;
    return uint64_t(std::max(training, exporting));
  }

  // The export's size: every tensor of `base` (norm-folded, untied) in the stored dtype, plus the
  // float64 rotations.
  uint64_t export_bytes() const {
    int64_t bytes = parameter_count() * int64_t(torch::elementSize(model.checkpoint.dtype));
    for (const auto& p : trainable) bytes += p.numel() * 8;
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
    ModelWeights wq = fake_quant_weights(rotate_weights(mc, base, params, EmbeddingR1::online), cfg.weight);
    // Detached leaves: every micro-batch's backward stops here, so the rotation and quantization of the
    // weights run once per step whatever grad_accum is.
    ModelWeights leaves = grad_leaves(mc, wq);
    torch::Tensor loss_sum = torch::zeros({1}, trainable.at(0).scalar_type());
    for (int64_t m = 0; m < cfg.grad_accum; ++m) {
      torch::Tensor batch = rank_slice(data.batch(step_index * cfg.grad_accum + m)).to(cfg.device);
      loss_sum += forward_backward(leaves, batch, 1.0 / double(cfg.grad_accum)).to(torch::kCPU, loss_sum.scalar_type());
    }
    backward_from_leaves(mc, wq, leaves);
    // Every rank averages the same buffer, so every rank sees the same loss and takes the same step.
    std::vector<torch::Tensor> reduced = {loss_sum};
    for (const auto& p : trainable) reduced.push_back(p.grad());
    group.average(reduced);
    const double value = loss_sum.item<double>();
    SPIN_CHECK(std::isfinite(value), "spintrain: step ", step_index + 1, ": loss is ", value,
               "; stopping (the last good training state, if any, is in ", cfg.state_dir, ")");
    opt->set_lr_factor(schedule.factor(step_index));
    opt->step();
    return value;
  }

  // max |R^T R - I| over the rotations after a step. Above --reorth-threshold every rotation is first
  // projected onto the nearest orthogonal matrix (polar factor, float64) and `repaired_from` receives
  // the error before the projection.
  double repair_orthogonality(std::optional<double>& repaired_from) {
    const double err = opt->max_orthogonality_error();
    if (err <= cfg.reorth_threshold) return err;
    torch::NoGradGuard g;
    for (auto& p : trainable) p.copy_(nearest_orthogonal(p));
    repaired_from = err;
    return opt->max_orthogonality_error();
  }

  Rotations learned_f64() const {
    Rotations r;
    if (params.r1.defined()) r.r1 = nearest_orthogonal(params.r1);
    for (const auto& p : params.r2) r.r2.push_back(nearest_orthogonal(p));
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
  std::ofstream log;
  if (main_rank) {
    log.open(cfg.log, cfg.resume ? std::ios::app : std::ios::trunc);
    SPIN_CHECK(log.good(), cfg.log, ": cannot open log file");
  }
  const int64_t tokens_per_step = cfg.batch_size * cfg.grad_accum * seq_len;
  TrainSummary summary;
  const auto t0 = Clock::now();
  for (int64_t s = tr.start_step; s < cfg.steps; ++s) {
    const auto ts = Clock::now();
    const double loss = tr.step(data, s);
    std::optional<double> drift;
    const double orth = tr.repair_orthogonality(drift);
    const std::string checksum = group.check_identical(tr.trainable, "the rotations");
    const double dt = std::chrono::duration<double>(Clock::now() - ts).count();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double eta = elapsed / (s + 1 - tr.start_step) * (cfg.steps - s - 1);
    const double lr = cfg.lr * tr.schedule.factor(s);
    summary.final_loss = loss;
    summary.steps_run++;
    if (!main_rank) continue;
    nlohmann::json rec = {{"step", s + 1}, {"loss", loss}, {"lr", lr}, {"orth_err", orth},
                          {"tokens_per_s", tokens_per_step / dt}, {"step_seconds", dt}, {"eta_seconds", eta},
                          {"world_size", group.world_size()}, {"rot_checksum", checksum}};
    if (drift) {
      const std::string warning = cat("orthogonality error ", *drift, " exceeded --reorth-threshold ",
                                      cfg.reorth_threshold, "; rotations re-orthonormalised (polar factor)");
      rec["warning"] = warning;
      std::cerr << "warning: step " << s + 1 << ": " << warning << std::endl;
    }
    log << rec.dump() << "\n" << std::flush;
    if (!cfg.quiet)
      std::cerr << "step " << s + 1 << "/" << cfg.steps << "  loss " << std::fixed << std::setprecision(4) << loss
                << "  lr " << std::setprecision(4) << lr << "  orth " << std::scientific << std::setprecision(1)
                << orth << std::fixed << "  tok/s " << std::setprecision(0) << tokens_per_step / dt << "  eta "
                << format_seconds(eta) << std::endl;
    if (cfg.save_every > 0 && ((s + 1) % cfg.save_every == 0 || s + 1 == cfg.steps)) tr.save_state(s + 1);
  }
  summary.max_orthogonality_error = tr.opt->max_orthogonality_error();
  if (!main_rank) return summary;

  // Fuse in float64 from the stored weights, not from the training-dtype copy.
  const Rotations learned = tr.learned_f64();
  const ModelWeights base64 = rotation_base(mc, tr.model.checkpoint.weights, cfg.rotation);

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
      std::cerr << std::left << std::setw(28) << name << " nll " << std::setprecision(4) << r.nll << "  ppl "
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
    row("rtn + learned", fake_quant_weights(compute(rotate_weights(mc, base64, learned)), cfg.weight), quant);
  }
  summary.eval_table = table;

  nlohmann::json results = {{"eval", table},
                            {"final_loss", summary.final_loss},
                            {"orth_err", summary.max_orthogonality_error},
                            {"config", cfg.resolved}};
  nlohmann::json train_section = {{"steps", cfg.steps}, {"optimizer", cfg.optimizer}, {"loss", cfg.loss},
                                  {"lr", cfg.lr}, {"quant_proxy", cli::QuantFlags{cfg.weight, cfg.act, cfg.key, cfg.value}.describe()}};
  export_rotated(cfg.out, tr.model.checkpoint, rotate_weights(mc, base64, learned), cfg.rotation, learned,
                 {{"training", train_section}}, [&](const fs::path& dir) {
                   write_text_atomic(dir / "spintrain_config.json", cfg.resolved.dump(2) + "\n");
                   write_text_atomic(dir / "spintrain_results.json", results.dump(2) + "\n");
                 });
  log << nlohmann::json({{"summary", results}}).dump() << "\n";
  return summary;
}

}  // namespace spin
