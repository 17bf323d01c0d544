#include "src/train/trainer.h"

#include <chrono>
#include <iomanip>
#include <iostream>

#include "data/batch_stream.h"
#include "data/calib_dataset.h"
#include "optim/stiefel.h"
#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/dist/group.h"
#include "src/io/atomic_file.h"
#include "src/io/output_guard.h"
#include "src/io/resources.h"
#include "src/kernels/attention.h"
#include "src/model/evaluate.h"
#include "src/quant/gptq_export.h"
#include "src/rotation/format.h"
#include "src/train/learnables.h"
#include "src/train/log.h"
#include "src/train/mode.h"
#include "src/train/monitor.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

using Clock = std::chrono::steady_clock;

// The input checkpoint: a plain (not yet rotated) HF model.
LoadedModel load_input(const TrainConfig& cfg) {
  LoadedModel m = load_model(cfg.model);
  SPIN_CHECK(!m.rotation.any(), cfg.model, ": is already a rotated checkpoint (config.json has a rotation section)");
  return m;
}

// `rc`'s initial rotations, with R1 from --r1-from when given.
Rotations initial_rotations(const TrainConfig& cfg, const ModelConfig& mc, const RotationConfig& rc) {
  Rotations init = init_rotations(mc, rc);
  if (cfg.r1_from.empty()) return init;
  SPIN_CHECK(cfg.rotation.r1, "spintrain: --r1-from needs r1 in --rotations");
  const Rotations from = load_model(cfg.r1_from).rotations;
  SPIN_CHECK(from.r1.defined(), cfg.r1_from, ": has no R1 (config.json rotation.fused does not list r1)");
  SPIN_CHECK(from.r1.size(0) == mc.hidden_size, cfg.r1_from, ": R1 is ", from.r1.size(0), " x ", from.r1.size(1),
             " but ", cfg.model, " has hidden_size ", mc.hidden_size);
  init.r1 = from.r1;
  return init;
}

// --init best: of identity, Hadamard and random Hadamard, the start whose student has the lowest KL to
// the float model on the monitor rows. Returns the chosen config and one record per candidate.
std::pair<RotationConfig, nlohmann::json> best_init(const TrainConfig& cfg, const ModelConfig& mc,
                                                    const ModelWeights& base, const torch::Tensor& calib_rows) {
  const Monitor monitor(cfg, mc, base, calib_rows, cfg.monitor_rows);
  RotationConfig best = cfg.rotation;
  double best_kl = INFINITY;
  nlohmann::json records = nlohmann::json::array();
  for (RotationInit candidate : {RotationInit::identity, RotationInit::hadamard, RotationInit::random_hadamard}) {
    RotationConfig rc = cfg.rotation;
    rc.init = candidate;
    const EvalResult r = monitor.evaluate(Learnables::create(cfg, mc, initial_rotations(cfg, mc, rc), false));
    records.push_back({{"init_candidate", to_string(candidate)}, {"monitor_nll", r.nll}, {"monitor_kl", r.kl}});
    if (!cfg.quiet)
      std::cerr << "init " << to_string(candidate) << ": monitor kl " << r.kl << "  nll " << r.nll << std::endl;
    if (r.kl < best_kl) {
      best_kl = r.kl;
      best = rc;
    }
  }
  return {best, records};
}

// Elements of every tensor the export will hold (`base`: norm-folded, lm_head untied).
int64_t parameter_count(const ModelConfig& mc, const ModelWeights& base) {
  int64_t numel = 0;
  for (const auto& [name, t] : named_tensors(mc, base)) numel += t.numel();
  return numel;
}

// The export's size: every tensor of `base` in the stored dtype, plus the float64 rotations and the
// clip ratios.
uint64_t export_bytes(const ModelConfig& mc, const ModelWeights& base, const Learnables& learn,
                      torch::ScalarType stored) {
  int64_t bytes = parameter_count(mc, base) * int64_t(torch::elementSize(stored));
  for (const auto& p : learn.all()) bytes += p.numel() * 8;
  return uint64_t(bytes);
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
uint64_t extra_memory_estimate(const TrainConfig& cfg, const ModelConfig& mc, const ModelWeights& base,
                               const dist::Group& group, int64_t seq_len, torch::ScalarType stored) {
  const int64_t numel = parameter_count(mc, base);
  const int64_t weight_bytes = numel * int64_t(torch::elementSize(cfg.dtype));
  const int64_t rows = cfg.batch_size / group.world_size(), T = seq_len;
  const int64_t per_layer = rows * T * (12 * mc.hidden_size + 4 * mc.intermediate_size) * 4;
  // Attention keeps nothing of size T² (src/kernels/attention.h); one call's score scratch is transient.
  const int64_t attention = 2 * std::min(kAttentionBlockBytes, rows * mc.num_attention_heads * T * T * 4);
  const int64_t logits = rows * T * mc.vocab_size * 4 * (cfg.loss == Loss::ce ? 4 : 7);
  const int64_t layer_inputs = (mc.num_hidden_layers + 1) * rows * T * mc.hidden_size * 4;
  const int64_t activations = (cfg.recompute ? layer_inputs + per_layer : mc.num_hidden_layers * per_layer) + attention;
  const int64_t training = 3 * weight_bytes + activations + logits;
  const int64_t exporting = group.is_main() ? numel * (16 + int64_t(torch::elementSize(stored))) : 0;
  return uint64_t(std::max(training, exporting));
}

// The stored weights again (training ran without them), folded in float64; they must be the ones
// that were trained on.
ModelWeights reload_base64(const TrainConfig& cfg, LoadedModel& input, const ModelWeights& base) {
  input.checkpoint.weights = load_model(cfg.model).checkpoint.weights;
  const ModelConfig& mc = input.checkpoint.config;
  ModelWeights base64 = fold_norms(mc, input.checkpoint.weights, cfg.rotation.r4);
  const auto trained = named_tensors(mc, base), stored = named_tensors(mc, base64);
  for (size_t i = 0; i < trained.size(); ++i)
    SPIN_CHECK(stored[i].second.to(cfg.dtype).equal(trained[i].second.cpu()), cfg.model, ": ", stored[i].first,
               " changed on disk during training; nothing was exported");
  return base64;
}

// The held-out rows of --eval-data [rows, T] on the training device (undefined without it), read and
// checked before any training.
torch::Tensor load_eval_rows(const TrainConfig& cfg, const ModelConfig& mc) {
  if (cfg.eval_data.empty()) return {};
  data::CalibOptions eopt;
  eopt.rows = cfg.eval_rows;
  eopt.seq_len = cfg.seq_len;
  const torch::Tensor ids = data::load_calib(cfg.eval_data, mc.vocab_size, eopt);
  SPIN_CHECK(ids.size(1) >= 2, cfg.eval_data, ": rows of ", ids.size(1),
             " token predict nothing (the NLL needs at least 2 tokens per row; see --seq-len)");
  return ids.to(cfg.device);
}

// The before/after table on the eval rows: each model's NLL, ppl and KL to the float model, one row per
// add(); nothing without eval rows.
struct EvalTable {
  const TrainConfig& cfg;
  const ModelConfig& mc;
  const torch::Tensor& ids;  // [rows, T], or undefined
  const ModelWeights& base;  // the float model (with `teacher` options)
  nlohmann::json rows = nlohmann::json::array();

  // `w` in the training dtype and device, RTN-quantized (`weight`, with learned `clip` ratios if any).
  ModelWeights rtn(const ModelWeights& w, const std::vector<LayerClip>& clip = {}) const {
    return fake_quant_weights(compute(w), cfg.weight, clip);
  }
  ModelWeights compute(const ModelWeights& w) const {
    return map_weights(mc, w, [&](const torch::Tensor& t) { return t.detach().to(cfg.device, cfg.dtype); });
  }
  void add(const std::string& name, const ModelWeights& w, const ForwardOptions& fo) {
    if (!ids.defined()) return;
    torch::NoGradGuard g;
    const ModelRef reference{&mc, &base, cfg.teacher()}, m{&mc, &w, fo};
    EvalResult r = evaluate(m, ids, cfg.batch_size, &reference);
    nlohmann::json j = r.to_json();
    j["name"] = name;
    rows.push_back(j);
    std::cerr << std::left << std::setw(28) << name << std::fixed << " nll " << std::setprecision(4) << r.nll << "  ppl "
              << std::setprecision(3) << r.ppl << "  kl " << std::setprecision(4) << r.kl << std::endl;
  }
};

// --gptq: GPTQ of the exported model exactly as spin-gptq would run it on cfg.out (its stored weights,
// the run's calibration rows), written to cfg.gptq_out; returns the dequantized weights.
ModelWeights gptq_export(const TrainConfig& cfg, const torch::Tensor& calib_rows) {
  const LoadedModel exported = load_model(cfg.out);
  const ModelConfig& mc = exported.checkpoint.config;
  GptqSource source{&exported.checkpoint, map_weights(mc, exported.checkpoint.weights, [&](const torch::Tensor& t) {
                      return t.to(cfg.device, cfg.dtype);
                    }),
                    mc.json};
  if (nlohmann::json clip = drop_learned_clip(source.config_json); !clip.is_null())
    source.notes["learned_weight_clip"] = clip;
  source.extra_files = [&](const fs::path& tmp) {
    copy_rotations_file(mc.json, cfg.out, tmp);
    write_dir_marker(tmp, OutputKind::checkpoint_dir, "spintrain");
  };
  return export_gptq(cfg.gptq_out, source, calib_rows.cpu(), cfg.gptq_export);
}

// The rotated checkpoint with what spintrain adds to it: the training section, folded scales, the clip
// ratios, the resolved configuration and the results.
// `rotation` is the run's, with the init --init best chose.
void export_run(const TrainConfig& cfg, const RotationConfig& rotation, const Checkpoint& source,
                const ModelWeights& fused, const Rotations& rotations, const Learnables& learn,
                const nlohmann::json& results) {
  nlohmann::json train_section = {{"mode", to_string(cfg.mode)}, {"steps", cfg.steps},
                                  {"optimizer", to_string(cfg.optimizer)}, {"loss", to_string(cfg.loss)},
                                  {"lr", cfg.lr}, {"quant_proxy", cfg.quant().describe()}};
  if (cfg.init_best) train_section["init"] = "best";
  nlohmann::json section = {{"training", train_section}};
  if (cfg.smooth)  // folded: the norm weights hold 1/s, the linears W·diag(s)
    section["smoothing_folded"] = cfg.rotation.r4 ? nlohmann::json{"attn_in", "mlp_in", "v_out"}
                                                  : nlohmann::json{"attn_in", "mlp_in", "v_out", "up_out"};
  if (cfg.learn_clip) section["weight_clip_file"] = kWeightClipFile;
  export_rotated(cfg.out, source, fused, rotation, rotations, section, [&](const fs::path& dir) {
    write_text_atomic(dir / "spintrain_config.json", cfg.values.json().dump(2) + "\n");
    write_text_atomic(dir / "spintrain_results.json", results.dump(2) + "\n");
    if (cfg.learn_clip) save_weight_clip(dir / kWeightClipFile, learn.clip);
    write_dir_marker(dir, OutputKind::checkpoint_dir, "spintrain");
  });
}

}  // namespace

TrainSummary run_spintrain(const TrainConfig& cfg) {
  cli::set_threads(cfg.threads);
  dist::Group group(dist::env_from_environment(), std::chrono::seconds(cfg.dist_timeout));
  SPIN_CHECK(cfg.batch_size % group.world_size() == 0, "spintrain: --batch-size ", cfg.batch_size,
             " is not divisible by the ", group.world_size(), " ranks (each rank takes an equal slice)");

  // ------------------------------------------------------------------ load
  LoadedModel input = load_input(cfg);
  const ModelConfig& mc = input.checkpoint.config;
  const torch::ScalarType stored_dtype = input.checkpoint.dtype;
  data::CalibOptions dopt;
  dopt.rows = cfg.nsamples;
  dopt.seq_len = cfg.seq_len;
  data::BatchStream calib(data::load_calib(cfg.calib, mc.vocab_size, dopt), cfg.batch_size, cfg.rotation.seed);
  const torch::Tensor eval_rows = group.is_main() ? load_eval_rows(cfg, mc) : torch::Tensor();

  // ------------------------------------------------------------------ fold norms
  const ModelWeights base = map_weights(mc, fold_norms(mc, input.checkpoint.weights, cfg.rotation.r4, cfg.dtype),
                                        [&](const torch::Tensor& t) { return t.to(cfg.device); });
  // The stored weights are needed again only for the float64 fusion and export: drop them for the
  // training phase (one model-sized copy less at its peak) and reload them from disk afterwards.
  input.checkpoint.weights = ModelWeights{};

  // ------------------------------------------------------------------ learnables
  nlohmann::json init_records = nlohmann::json::array();
  RotationConfig rotation = cfg.rotation;
  if (cfg.init_best) std::tie(rotation, init_records) = best_init(cfg, mc, base, calib.rows());
  const Rotations init = initial_rotations(cfg, mc, rotation);
  // Only end-to-end training sees R1's effect on every layer at once; the other modes keep it fixed.
  Learnables learn = Learnables::create(cfg, mc, init, cfg.mode == Mode::e2e);
  // A resumed run reads its clip ratios, like every learnable, from its training state.
  if (cfg.clip_search && !cfg.resume) learn.search_clip(mc, base, cfg.weight);
  SPIN_CHECK(!learn.all().empty() || cfg.mode == Mode::adapt,
             "spintrain: nothing to learn: --rotations names nothing and --smooth/--learn-clip are off");
  if (cfg.gptq) check_gptq_export(mc, cfg.gptq_export, cfg.model);  // refusals before any training
  if (cfg.resource_check) {
    if (group.is_main()) require_disk(cfg.out, export_bytes(mc, base, learn, stored_dtype), "spintrain: the export");
    if (group.is_main() && cfg.gptq)  // at most the rotated export's size (packed weights are smaller)
      require_disk(cfg.gptq_out, export_bytes(mc, base, learn, stored_dtype), "spintrain: the GPTQ export");
    if (cfg.device.is_cpu())
      require_memory(extra_memory_estimate(cfg, mc, base, group, calib.seq_len(), stored_dtype),
                     cat("spintrain (rank ", group.rank(), ")"));
  }

  // ------------------------------------------------------------------ learn
  // Rank 0 alone writes the log, the training state and the export; the others only train.
  TrainLog log = group.is_main() ? TrainLog(cfg.log, cfg.resume, cfg.quiet) : TrainLog();
  for (const nlohmann::json& r : init_records) log.record(r);
  const auto t0 = Clock::now();
  const LearnResult learned = learn_mode(Job{cfg, mc, base, init, calib, group, log}, learn);
  const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t train_peak_rss = peak_rss_bytes();  // before evaluation and the float64 export
  TrainSummary summary;
  summary.final_loss = learned.final_loss;
  summary.steps_run = learned.steps_run;
  summary.max_orthogonality_error = learn.orthogonality_error();
  if (!group.is_main()) return summary;

  // ------------------------------------------------------------------ fuse (float64)
  Rotations rotations;  // the learned rotations snapped to the nearest orthogonal matrices
  if (learn.rotations.r1.defined()) rotations.r1 = optim::nearest_orthogonal(learn.rotations.r1);
  for (const auto& p : learn.rotations.r2) rotations.r2.push_back(optim::nearest_orthogonal(p));
  const ModelWeights base64 = reload_base64(cfg, input, base);
  const ModelWeights fused = fused_weights(mc, base64, rotations, learn.smoothing);

  // ------------------------------------------------------------------ evaluate
  EvalTable table{cfg, mc, eval_rows, base};
  const ForwardOptions quant = cfg.student();
  if (!cfg.skip_baselines) {
    table.add("float", base, cfg.teacher());
    ForwardOptions plain = quant;
    plain.r3 = plain.r4 = false;
    table.add("rtn (no rotation)", table.rtn(input.checkpoint.weights), plain);
    table.add(cat("rtn + ", to_string(rotation.init), " init"), table.rtn(rotate_weights(mc, base64, init)), quant);
  }
  table.add("rtn + learned", table.rtn(fused, learn.clip), quant);

  // ------------------------------------------------------------------ export
  nlohmann::json results = {{"final_loss", summary.final_loss},
                            {"orth_err", summary.max_orthogonality_error},
                            {"mode", to_string(cfg.mode)},
                            {"train_seconds", train_seconds},
                            {"train_peak_rss_bytes", train_peak_rss},
                            {"config", cfg.values.json()}};
  auto finish = [&] {
    results["eval"] = summary.eval_table = table.rows;
    results["peak_rss_bytes"] = peak_rss_bytes();
  };
  finish();
  {  // training may have run for hours: the outputs must still be ours to replace
    TrainConfig now = cfg;
    output_guard(now).check(cfg.overwrite);
  }
  export_run(cfg, rotation, input.checkpoint, fused, rotations, learn, results);

  // ------------------------------------------------------------------ GPTQ (--gptq)
  if (cfg.gptq) {
    table.add("gptq + learned", gptq_export(cfg, calib.rows()), quant);
    if (!cfg.skip_baselines && eval_rows.defined()) {
      const GptqModelOptions& o = cfg.gptq_export.model;
      table.add(cat("gptq + ", to_string(rotation.init), " init"),
                gptq_model(mc, table.compute(rotate_weights(mc, base64, init)), calib.rows().cpu(), o), quant);
    }
    finish();
    results["gptq_out"] = cfg.gptq_out;
    write_text_atomic(fs::path(cfg.out) / "spintrain_results.json", results.dump(2) + "\n");
  }
  log.record({{"summary", results}});
  return summary;
}

}  // namespace spin
