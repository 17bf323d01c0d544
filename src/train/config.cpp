#include "src/train/config.h"

#include "src/base/check.h"
#include "src/base/names.h"

namespace spin {
namespace {

using cli::Option;
using cli::Type;

// spintrain's own options. Defaults follow the SpinQuant recipe where it applies, tuned on stories260K
// (docs/RESULTS.md). `result`: the option changes what is learned (a resumed run must match it).
std::vector<Option> train_options() {
  const bool result = true;
  return {
      {"model", Type::text, "", "io", "input HF checkpoint directory", result},
      {"calib", Type::text, "", "io", "calibration HDF5 (dataset input_ids [N, T])", result},
      {"out", Type::text, "", "io", "output directory for the rotated checkpoint"},
      {"eval-data", Type::text, "", "io", "held-out HDF5 for the before/after table (empty: skip)"},
      {"eval-rows", Type::integer, "-1", "io", "rows of --eval-data to use (-1: all)"},
      {"nsamples", Type::integer, "-1", "io", "calibration rows to train on (-1: all)", result},
      {"seq-len", Type::integer, "-1", "io", "tokens per row (-1: as stored)", result},
      {"state-dir", Type::text, "", "io", "training state for --save-every/--resume (default: <out>.state)"},
      {"log", Type::text, "", "io", "JSON-lines log file (default: <out>.log.jsonl)"},
      {"quant-grad", Type::text, "scale", "quantization",
       "gradient of the fake quantizers: ste (straight-through, scale constant) or scale (also through the scale)",
       result},
      {"rotations", Type::text, "r1,r2", "rotation", "learned rotations: subset of r1,r2", result},
      {"r3", Type::boolean, "false", "rotation", "online Hadamard on q/k after RoPE", result},
      {"r4", Type::boolean, "false", "rotation", "online Hadamard on down_proj's input", result},
      {"init", Type::text, "random-hadamard", "rotation",
       "hadamard, random-hadamard, random, identity, or best (of identity, hadamard and random-hadamard, by the "
       "student's KL on the monitor rows)",
       result},
      {"seed", Type::integer, "0", "rotation", "seed of the initial rotations and the data order", result},
      {"mode", Type::text, "e2e", "rotation",
       "e2e (end to end), blockwise (R2 and scales one layer at a time against the float layer's output, R1 fixed) "
       "or adapt (closed-form R1/R2 by polar factors, no backpropagation)",
       result},
      {"r1-from", Type::text, "", "rotation",
       "take R1 from this rotated checkpoint (e.g. an e2e run on a few rows) instead of --init", result},
      {"smooth", Type::boolean, "true", "rotation",
       "learn per-channel smoothing scales (folded into the weights at export; off in --mode adapt)", result},
      {"learn-clip", Type::boolean, "true", "rotation",
       "learn per-row weight clip ratios in [0.5, 1] (saved in weight_clip.safetensors; off at --wbits 16 and in "
       "--mode adapt)", result},
      {"clip-search", Type::boolean, "true", "rotation",
       "--learn-clip starts each row at its RTN-error-minimising ratio (grid search) instead of --w-clip", result},
      {"scale-lr", Type::real, "0.01", "optimization", "Adam learning rate of smoothing log-scales and clip ratios",
       result},
      {"adapt-steps", Type::integer, "100", "rotation", "--mode adapt: alternations (quantize, polar factor) per rotation",
       result},
      {"adapt-block-size", Type::integer, "0", "rotation",
       "--mode adapt: refine within diagonal blocks of this size (0: whole matrix)", result},
      {"adapt-max-samples", Type::integer, "2048", "rotation", "--mode adapt: activation rows (tokens) per term", result},
      {"eval-every", Type::integer, "0", "optimization",
       "every N steps (and before the first), log the student's NLL and KL to the float model on the monitor rows "
       "(0: never)",
       result},
      {"monitor-rows", Type::integer, "8", "optimization",
       "the last N calibration rows, evaluated by --eval-every, --init best and --keep-best", result},
      {"keep-best", Type::boolean, "false", "optimization",
       "export the learnables of the --eval-every evaluation with the lowest KL (the initial ones included)", result},
      {"optimizer", Type::text, "cayley-sgd", "optimization", "cayley-sgd or cayley-adam", result},
      {"lr", Type::real, "1.0", "optimization", "learning rate of the rotations (chosen by sweeps: docs/RESULTS.md)",
       result},
      {"momentum", Type::real, "0.9", "optimization", "Cayley SGD momentum / Cayley Adam beta1", result},
      {"schedule", Type::text, "cosine", "optimization", "constant, linear, cosine or step", result},
      {"reorth-threshold", Type::real, "1e-4", "optimization",
       "re-orthonormalise the rotations (with a logged warning) when max |R^T R - I| exceeds this", result},
      {"warmup", Type::integer, "0", "optimization", "linear warmup steps", result},
      {"steps", Type::integer, "100", "optimization", "optimizer steps (per layer with --mode blockwise)", result},
      {"batch-size", Type::integer, "8", "optimization", "rows per micro-batch", result},
      {"grad-accum", Type::integer, "1", "optimization", "micro-batches per step", result},
      {"loss", Type::text, "kl", "optimization", "ce (next token), kl (to the float model) or kl-top", result},
      {"kl-topk", Type::integer, "64", "optimization", "teacher tokens kept by --loss kl-top", result},
      {"recompute", Type::boolean, "false", "run",
       "keep only each layer's input and recompute the layer in backward (less memory, ~1 more forward)"},
      {"nproc", Type::integer, "1", "run",
       "data-parallel ranks to launch on this machine (or use torchrun's RANK/WORLD_SIZE/...)"},
      {"dist-timeout", Type::integer, "300", "run", "seconds to wait for other ranks before failing"},
      {"save-every", Type::integer, "0", "run", "write a resumable training state every N steps (0: never)"},
      {"resume", Type::boolean, "false", "run", "continue from the training state in --state-dir"},
      {"resource-check", Type::boolean, "true", "run",
       "before training, fail if the export will not fit on disk or the job in memory (estimate)"},
      {"quiet", Type::boolean, "false", "run", "no progress lines"},
      {"skip-baselines", Type::boolean, "false", "run", "evaluate only the learned rotation (no float/RTN/init rows)"},
      {"gptq", Type::boolean, "false", "gptq",
       "after the export, GPTQ of the rotated model with the run's calibration rows, written to --gptq-out"},
      {"gptq-out", Type::text, "", "gptq", "the GPTQ checkpoint (default: <out>-gptq)"},
      {"gptq-format", Type::text, "gptq", "gptq", "gptq (packed, for GPTQ runtimes) or fake (dequantized float32)"},
      {"gptq-wbits", Type::integer, "-1", "gptq", "GPTQ weight bits (-1: --wbits; e.g. learn with --wbits 16, GPTQ at 4)"},
      {"gptq-groupsize", Type::integer, "-1", "gptq", "GPTQ group size (-1: --groupsize)"},
  };
}

const std::pair<const char*, Mode> kModes[] = {{"e2e", Mode::e2e}, {"blockwise", Mode::blockwise}, {"adapt", Mode::adapt}};
const std::pair<const char*, Loss> kLosses[] = {{"ce", Loss::ce}, {"kl", Loss::kl}, {"kl-top", Loss::kl_top}};
const std::pair<const char*, Optimizer> kOptimizers[] = {{"cayley-sgd", Optimizer::cayley_sgd},
                                                         {"cayley-adam", Optimizer::cayley_adam}};

}  // namespace

const char* to_string(Mode mode) { return name_of(kModes, mode); }
const char* to_string(Loss loss) { return name_of(kLosses, loss); }
const char* to_string(Optimizer optimizer) { return name_of(kOptimizers, optimizer); }

ForwardOptions TrainConfig::student() const {
  ForwardOptions o = online_hadamards(rotation.r3, rotation.r4);
  o.act = act;
  o.key = key;
  o.value = value;
  return o;
}

OutputGuard output_guard(TrainConfig& c) {
  OutputGuard guard("spintrain");
  guard.add_input(c.model, "--model");
  guard.add_input(c.calib, "--calib");
  guard.add_input(c.eval_data, "--eval-data");
  guard.add_input(c.r1_from, "--r1-from");
  guard.add_input(c.values.config_file(), "--config");
  c.out = guard.add_output(c.out, OutputKind::checkpoint_dir, "--out").string();
  c.log = guard.add_output(c.log, OutputKind::log_file, "--log").string();
  if (c.gptq) c.gptq_out = guard.add_output(c.gptq_out, OutputKind::checkpoint_dir, "--gptq-out").string();
  if (c.save_every > 0 || c.resume) c.state_dir = guard.add_output(c.state_dir, OutputKind::state_dir, "--state-dir").string();
  return guard;
}

cli::Program train_program() {
  return {"spintrain", "Learn R1/R2 rotations under an RTN fake-quant proxy, fuse them, save a rotated checkpoint",
          train_options() + cli::with_defaults(cli::quant_options(), {{"wbits", "4"}}) + cli::gptq_options() +
              cli::output_options() + cli::run_options(),
          /*config_file=*/true};
}

TrainConfig train_config(const cli::Values& v) {
  const std::string where = "spintrain";
  TrainConfig c;
  c.values = v;
  c.model = v.text("model");
  c.calib = v.text("calib");
  c.out = v.text("out");
  SPIN_CHECK(!c.model.empty() && !c.calib.empty() && !c.out.empty(), where,
             ": --model, --calib and --out are required (see --help)");
  while (c.out.size() > 1 && c.out.back() == '/') c.out.pop_back();  // "out/": the defaults below are beside it
  c.eval_data = v.text("eval-data");
  c.eval_rows = v.integer("eval-rows");
  c.nsamples = v.integer("nsamples");
  c.seq_len = v.integer("seq-len");
  c.state_dir = v.text("state-dir").empty() ? c.out + ".state" : v.text("state-dir");
  c.log = v.text("log").empty() ? c.out + ".log.jsonl" : v.text("log");
  const cli::QuantFlags q = cli::quant_flags(v);
  c.weight = q.weight;
  c.act = q.act;
  c.key = q.key;
  c.value = q.value;
  const std::string quant_grad = v.text("quant-grad");
  SPIN_CHECK(quant_grad == "ste" || quant_grad == "scale", where, ": quant-grad '", quant_grad, "' is not ste or scale");
  for (QuantSpec* s : {&c.weight, &c.act, &c.key, &c.value}) s->scale_grad = quant_grad == "scale";
  c.rotation = RotationConfig::parse_list(v.text("rotations"), where + ": rotations");
  SPIN_CHECK(!c.rotation.r3 && !c.rotation.r4, where, ": r3/r4 are fixed Hadamards: use --r3/--r4, not --rotations");
  c.rotation.r3 = v.flag("r3");
  c.rotation.r4 = v.flag("r4");
  c.init_best = v.text("init") == "best";
  c.rotation.init = c.init_best ? RotationInit::random_hadamard : parse_rotation_init(v.text("init"));
  c.rotation.seed = uint64_t(v.integer("seed"));
  c.rotation.learned = true;
  c.mode = from_name(kModes, v.text("mode"), where, "mode");
  c.r1_from = v.text("r1-from");
  // The learnable scales apply where they mean something: none in --mode adapt (no backpropagation),
  // the clip options only with quantized weights. Set explicitly where they cannot apply, they are
  // an error; left at their defaults there, they are off.
  auto scale_flag = [&](const char* key, bool applies, const char* needs) {
    SPIN_CHECK(applies || !v.given(key) || !v.flag(key), where, ": --", key, " needs ", needs);
    return applies && v.flag(key);
  };
  const bool backprop = c.mode != Mode::adapt;
  c.smooth = scale_flag("smooth", backprop, "backpropagation: use it with --mode e2e or blockwise");
  c.learn_clip = scale_flag("learn-clip", backprop && c.weight.enabled(),
                            "--mode e2e or blockwise and quantized weights (--wbits below 16)");
  c.clip_search = scale_flag("clip-search", c.learn_clip, "--learn-clip (it sets where the ratios start)");
  c.values.set_flag("smooth", c.smooth);
  c.values.set_flag("learn-clip", c.learn_clip);
  c.values.set_flag("clip-search", c.clip_search);
  c.scale_lr = v.real("scale-lr");
  c.adapt_steps = v.integer("adapt-steps");
  c.adapt_block_size = v.integer("adapt-block-size");
  c.adapt_max_samples = v.integer("adapt-max-samples");
  SPIN_CHECK(c.scale_lr > 0 && c.adapt_steps >= 0 && c.adapt_block_size >= 0 && c.adapt_max_samples > 0, where,
             ": scale-lr and adapt-max-samples must be positive, adapt-steps and adapt-block-size not negative");
  c.optimizer = from_name(kOptimizers, v.text("optimizer"), where, "optimizer");
  c.schedule = optim::parse_schedule_kind(v.text("schedule"), "--schedule");
  c.loss = from_name(kLosses, v.text("loss"), where, "loss");
  c.lr = v.real("lr");
  c.momentum = v.real("momentum");
  c.warmup = v.integer("warmup");
  c.steps = v.integer("steps");
  c.batch_size = v.integer("batch-size");
  c.grad_accum = v.integer("grad-accum");
  c.kl_topk = v.integer("kl-topk");
  SPIN_CHECK(c.steps >= 0 && c.batch_size > 0 && c.grad_accum > 0 && c.lr > 0, where,
             ": steps, batch-size, grad-accum and lr must be positive");
  const cli::RunFlags run = cli::run_flags(v);
  c.threads = run.threads;
  c.dtype = run.dtype;
  c.device = run.device;
  c.save_every = v.integer("save-every");
  c.nproc = int(v.integer("nproc"));
  c.dist_timeout = v.integer("dist-timeout");
  c.reorth_threshold = v.real("reorth-threshold");
  SPIN_CHECK(c.nproc >= 1 && c.dist_timeout > 0 && c.reorth_threshold > 0, where,
             ": nproc, dist-timeout and reorth-threshold must be positive");
  c.resume = v.flag("resume");
  c.quiet = v.flag("quiet");
  c.resource_check = v.flag("resource-check");
  c.recompute = v.flag("recompute");
  c.skip_baselines = v.flag("skip-baselines");
  c.eval_every = v.integer("eval-every");
  c.monitor_rows = v.integer("monitor-rows");
  c.keep_best = v.flag("keep-best");
  SPIN_CHECK(c.eval_every >= 0 && c.monitor_rows > 0, where, ": eval-every must not be negative, monitor-rows positive");
  SPIN_CHECK(!c.keep_best || (c.eval_every > 0 && c.mode == Mode::e2e), where,
             ": --keep-best chooses among the --eval-every evaluations of --mode e2e: give --eval-every N");
  c.gptq = v.flag("gptq");
  c.gptq_out = v.text("gptq-out").empty() ? c.out + "-gptq" : v.text("gptq-out");
  const int64_t gptq_bits = v.integer("gptq-wbits"), gptq_group = v.integer("gptq-groupsize");
  c.gptq_export = cli::gptq_flags(v, {gptq_bits < 0 ? c.weight.bits : int(gptq_bits),
                                      gptq_group < 0 ? c.weight.groupsize : gptq_group, c.weight.asym, 1.0});
  c.gptq_export.format = parse_gptq_format(v.text("gptq-format"));
  c.gptq_export.model.batch_size = c.batch_size;
  c.gptq_export.model.r3 = c.rotation.r3;
  c.gptq_export.model.r4 = c.rotation.r4;
  c.gptq_export.quiet = true;
  SPIN_CHECK(c.mode == Mode::e2e || (c.nproc == 1 && !c.resume && c.save_every == 0 && !c.recompute), where,
             ": --mode ", to_string(c.mode),
             " runs in one process without --resume, --save-every or --recompute (those are for --mode e2e)");
  c.overwrite = v.flag("overwrite");
  output_guard(c).check(c.overwrite);  // the paths, once the options are valid: refused before any work
  return c;
}

}  // namespace spin
