#include "src/train/config.h"

#include <fstream>

#include "src/base/check.h"

namespace spin {
namespace {

enum class Type { Int, Float, Bool, Text };

struct Option {
  const char* key;
  Type type;
  const char* fallback;  // default, as text
  const char* group;
  const char* help;
};

// Defaults follow the SpinQuant recipe where it applies, tuned on stories260K (docs/RESULTS.md).
const std::vector<Option>& option_table() {
  static const std::vector<Option> table = {
      {"model", Type::Text, "", "io", "input HF checkpoint directory"},
      {"calib", Type::Text, "", "io", "calibration HDF5 (dataset input_ids [N, T])"},
      {"out", Type::Text, "", "io", "output directory for the rotated checkpoint"},
      {"eval-data", Type::Text, "", "io", "held-out HDF5 for the before/after table (empty: skip)"},
      {"eval-rows", Type::Int, "-1", "io", "rows of --eval-data to use (-1: all)"},
      {"nsamples", Type::Int, "-1", "io", "calibration rows to train on (-1: all)"},
      {"seq-len", Type::Int, "-1", "io", "tokens per row (-1: as stored)"},
      {"state-dir", Type::Text, "", "io", "training state for --save-every/--resume (default: <out>.state)"},
      {"log", Type::Text, "", "io", "JSON-lines log file (default: <out>.log.jsonl)"},
      {"wbits", Type::Int, "4", "quantization", "weight bits (16: float)"},
      {"groupsize", Type::Int, "0", "quantization", "weight group size (0 or >= width: per output row)"},
      {"w-asym", Type::Bool, "false", "quantization", "asymmetric weights"},
      {"w-clip", Type::Float, "1.0", "quantization", "weight clip ratio"},
      {"abits", Type::Int, "16", "quantization", "activation bits, per token (16: float)"},
      {"a-asym", Type::Bool, "true", "quantization", "asymmetric activations"},
      {"a-clip", Type::Float, "1.0", "quantization", "activation clip ratio"},
      {"kbits", Type::Int, "16", "quantization", "K-cache bits (16: float)"},
      {"vbits", Type::Int, "16", "quantization", "V-cache bits (16: float)"},
      {"kv-groupsize", Type::Int, "0", "quantization", "KV group size along head_dim (0: whole head)"},
      {"kv-asym", Type::Bool, "true", "quantization", "asymmetric KV"},
      {"quant-grad", Type::Text, "scale", "quantization",
       "gradient of the fake quantizers: ste (straight-through, scale constant) or scale (also through the scale)"},
      {"rotations", Type::Text, "r1,r2", "rotation", "learned rotations: subset of r1,r2"},
      {"r3", Type::Bool, "false", "rotation", "online Hadamard on q/k after RoPE"},
      {"r4", Type::Bool, "false", "rotation", "online Hadamard on down_proj's input"},
      {"init", Type::Text, "random-hadamard", "rotation", "hadamard, random-hadamard, random or identity"},
      {"seed", Type::Int, "0", "rotation", "seed of the initial rotations and the data order"},
      {"mode", Type::Text, "e2e", "rotation",
       "e2e (end to end), blockwise (R2 and scales one layer at a time against the float layer's output, R1 fixed) "
       "or adapt (closed-form R1/R2 by polar factors, no backpropagation)"},
      {"r1-from", Type::Text, "", "rotation", "take R1 from this rotated checkpoint (e.g. an e2e run on a few rows) instead of --init"},
      {"smooth", Type::Bool, "false", "rotation", "learn per-channel smoothing scales (folded into the weights at export)"},
      {"learn-clip", Type::Bool, "false", "rotation", "learn per-row weight clip ratios in [0.5, 1] (saved in weight_clip.safetensors)"},
      {"scale-lr", Type::Float, "0.01", "optimization", "Adam learning rate of smoothing log-scales and clip ratios"},
      {"adapt-steps", Type::Int, "100", "rotation", "--mode adapt: alternations (quantize, polar factor) per rotation"},
      {"adapt-block-size", Type::Int, "0", "rotation", "--mode adapt: refine within diagonal blocks of this size (0: whole matrix)"},
      {"adapt-max-samples", Type::Int, "2048", "rotation", "--mode adapt: activation rows (tokens) per term"},
      {"optimizer", Type::Text, "cayley-sgd", "optimization", "cayley-sgd or cayley-adam"},
      {"lr", Type::Float, "0.1", "optimization", "learning rate of the rotations (chosen by sweeps: docs/RESULTS.md)"},
      {"momentum", Type::Float, "0.9", "optimization", "Cayley SGD momentum / Cayley Adam beta1"},
      {"schedule", Type::Text, "cosine", "optimization", "constant, linear, cosine or step"},
      {"reorth-threshold", Type::Float, "1e-4", "optimization",
       "re-orthonormalise the rotations (with a logged warning) when max |R^T R - I| exceeds this"},
      {"warmup", Type::Int, "0", "optimization", "linear warmup steps"},
      {"steps", Type::Int, "100", "optimization", "optimizer steps (per layer with --mode blockwise)"},
      {"batch-size", Type::Int, "8", "optimization", "rows per micro-batch"},
      {"grad-accum", Type::Int, "1", "optimization", "micro-batches per step"},
      {"loss", Type::Text, "kl", "optimization", "ce (next token), kl (to the float model) or kl-top"},
      {"kl-topk", Type::Int, "64", "optimization", "teacher tokens kept by --loss kl-top"},
      {"recompute", Type::Bool, "false", "run",
       "keep only each layer's input and recompute the layer in backward (less memory, ~1 more forward)"},
      {"threads", Type::Int, "0", "run", "CPU threads (0: all cores)"},
      {"dtype", Type::Text, "f32", "run", "training dtype: f32 or bf16 (export fuses in f64)"},
      {"device", Type::Text, "auto", "run", "cpu, cuda or auto"},
      {"nproc", Type::Int, "1", "run", "data-parallel ranks to launch on this machine (or use torchrun's RANK/WORLD_SIZE/...)"},
      {"dist-timeout", Type::Int, "300", "run", "seconds to wait for other ranks before failing"},
      {"save-every", Type::Int, "0", "run", "write a resumable training state every N steps (0: never)"},
      {"resume", Type::Bool, "false", "run", "continue from the training state in --state-dir"},
      {"resource-check", Type::Bool, "true", "run",
       "before training, fail if the export will not fit on disk or the job in memory (estimate)"},
      {"quiet", Type::Bool, "false", "run", "no progress lines"},
      {"skip-baselines", Type::Bool, "false", "run", "evaluate only the learned rotation (no float/RTN/init rows)"},
  };
  return table;
}

nlohmann::json parse_value(const Option& o, const std::string& text, const std::string& where) {
  try {
    switch (o.type) {
      case Type::Int: {
        size_t used = 0;
        int64_t v = std::stoll(text, &used);
        SPIN_CHECK(used == text.size(), "");
        return v;
      }
      case Type::Float: {
        size_t used = 0;
        double v = std::stod(text, &used);
        SPIN_CHECK(used == text.size(), "");
        return v;
      }
      case Type::Bool:
        SPIN_CHECK(text == "true" || text == "false", "");
        return text == "true";
      case Type::Text:
        return text;
    }
  } catch (const std::exception&) {
  }
  fail(where, ": '", o.key, "' has invalid value '", text, "'");
}

// Checks a JSON value from a config file against the option's type.
nlohmann::json checked(const Option& o, const nlohmann::json& v, const std::string& where) {
  const bool ok = (o.type == Type::Int && v.is_number_integer()) || (o.type == Type::Float && v.is_number()) ||
                  (o.type == Type::Bool && v.is_boolean()) || (o.type == Type::Text && v.is_string());
  SPIN_CHECK(ok, where, ": '", o.key, "' has the wrong type (", v.dump(), ")");
  return v;
}

}  // namespace

cxxopts::Options train_options() {
  cxxopts::Options o("spintrain",
                     "Learn R1/R2 rotations under an RTN fake-quant proxy, fuse them, save a rotated checkpoint");
  o.add_options("io")("config", "JSON file with any of the options below (flags override it)",
                      cxxopts::value<std::string>());
  for (const Option& opt : option_table()) {
    std::string help = std::string(opt.help) + (opt.type == Type::Bool ? "" : cat(" [", opt.fallback, "]"));
    if (opt.type == Type::Bool)
      o.add_options(opt.group)(opt.key, help, cxxopts::value<std::string>()->implicit_value("true"));
    else
      o.add_options(opt.group)(opt.key, help, cxxopts::value<std::string>());
  }
  return o;
}

TrainConfig resolve_train_config(const cxxopts::ParseResult& flags) {
  nlohmann::json values = nlohmann::json::object();
  std::string where = "spintrain";
  if (flags.count("config")) {
    where = flags["config"].as<std::string>();
    std::ifstream in(where);
    SPIN_CHECK(in.good(), where, ": cannot open");
    try {
      values = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(where, ": not valid JSON (", e.what(), ")");
    }
    SPIN_CHECK(values.is_object(), where, ": must be a JSON object");
  }
  for (const Option& o : option_table())
    if (flags.count(o.key)) values[o.key] = parse_value(o, flags[o.key].as<std::string>(), "command line");
  return train_config_from_json(values, where);
}

TrainConfig train_config_from_json(const nlohmann::json& in, const std::string& where) {
  nlohmann::json v = nlohmann::json::object();
  for (const Option& o : option_table())
    v[o.key] = in.contains(o.key) ? checked(o, in[o.key], where) : parse_value(o, o.fallback, "default");
  for (const auto& [key, _] : in.items())
    SPIN_CHECK(v.contains(key), where, ": unknown option '", key, "'");

  TrainConfig c;
  c.resolved = v;
  c.model = v["model"];
  c.calib = v["calib"];
  c.out = v["out"];
  SPIN_CHECK(!c.model.empty() && !c.calib.empty() && !c.out.empty(), where,
             ": --model, --calib and --out are required (see --help)");
  c.eval_data = v["eval-data"];
  c.eval_rows = v["eval-rows"];
  c.nsamples = v["nsamples"];
  c.seq_len = v["seq-len"];
  c.state_dir = v["state-dir"].get<std::string>().empty() ? c.out + ".state" : v["state-dir"].get<std::string>();
  c.log = v["log"].get<std::string>().empty() ? c.out + ".log.jsonl" : v["log"].get<std::string>();
  c.weight = {v["wbits"], v["groupsize"], v["w-asym"], v["w-clip"]};
  c.act = {v["abits"], 0, v["a-asym"], v["a-clip"]};
  c.key = {v["kbits"], v["kv-groupsize"], v["kv-asym"], 1.0};
  c.value = {v["vbits"], v["kv-groupsize"], v["kv-asym"], 1.0};
  const std::string quant_grad = v["quant-grad"];
  SPIN_CHECK(quant_grad == "ste" || quant_grad == "scale", where, ": quant-grad '", quant_grad, "' is not ste or scale");
  for (QuantSpec* s : {&c.weight, &c.act, &c.key, &c.value}) {
    SPIN_CHECK(s->bits >= 2 && s->bits <= 16, where, ": bits must be between 2 and 16, got ", s->bits);
    s->scale_grad = quant_grad == "scale";
  }
  c.rotation = RotationConfig::parse_list(v["rotations"], where + ": rotations");
  SPIN_CHECK(!c.rotation.r3 && !c.rotation.r4, where, ": r3/r4 are fixed Hadamards: use --r3/--r4, not --rotations");
  c.rotation.r3 = v["r3"];
  c.rotation.r4 = v["r4"];
  c.rotation.init = v["init"];
  c.rotation.seed = v["seed"].get<uint64_t>();
  c.rotation.learned = true;
  c.mode = v["mode"];
  SPIN_CHECK(c.mode == "e2e" || c.mode == "blockwise" || c.mode == "adapt", where, ": mode '", c.mode,
             "' is not e2e, blockwise or adapt");
  c.r1_from = v["r1-from"];
  c.smooth = v["smooth"];
  c.learn_clip = v["learn-clip"];
  c.scale_lr = v["scale-lr"];
  c.adapt_steps = v["adapt-steps"];
  c.adapt_block_size = v["adapt-block-size"];
  c.adapt_max_samples = v["adapt-max-samples"];
  SPIN_CHECK(c.scale_lr > 0 && c.adapt_steps >= 0 && c.adapt_block_size >= 0 && c.adapt_max_samples > 0, where,
             ": scale-lr and adapt-max-samples must be positive, adapt-steps and adapt-block-size not negative");
  SPIN_CHECK(c.mode != "adapt" || (!c.smooth && !c.learn_clip), where,
             ": --smooth and --learn-clip are learned by backpropagation: use them with --mode e2e or blockwise");
  c.optimizer = v["optimizer"];
  SPIN_CHECK(c.optimizer == "cayley-sgd" || c.optimizer == "cayley-adam", where, ": optimizer '", c.optimizer,
             "' is not cayley-sgd or cayley-adam");
  c.schedule = v["schedule"];
  c.loss = v["loss"];
  SPIN_CHECK(c.loss == "ce" || c.loss == "kl" || c.loss == "kl-top", where, ": loss '", c.loss,
             "' is not ce, kl or kl-top");
  c.lr = v["lr"];
  c.momentum = v["momentum"];
  c.warmup = v["warmup"];
  c.steps = v["steps"];
  c.batch_size = v["batch-size"];
  c.grad_accum = v["grad-accum"];
  c.kl_topk = v["kl-topk"];
  SPIN_CHECK(c.steps >= 0 && c.batch_size > 0 && c.grad_accum > 0 && c.lr > 0, where,
             ": steps, batch-size, grad-accum and lr must be positive");
  c.threads = v["threads"];
  c.dtype = cli::parse_dtype(v["dtype"]);
  c.device = cli::parse_device(v["device"]);
  c.save_every = v["save-every"];
  c.nproc = v["nproc"];
  c.dist_timeout = v["dist-timeout"];
  c.reorth_threshold = v["reorth-threshold"];
  SPIN_CHECK(c.nproc >= 1 && c.dist_timeout > 0 && c.reorth_threshold > 0, where,
             ": nproc, dist-timeout and reorth-threshold must be positive");
  c.resume = v["resume"];
  c.quiet = v["quiet"];
  c.resource_check = v["resource-check"];
  c.recompute = v["recompute"];
  c.skip_baselines = v["skip-baselines"];
  SPIN_CHECK(c.mode == "e2e" || (c.nproc == 1 && !c.resume && c.save_every == 0 && !c.recompute), where, ": --mode ",
             c.mode, " runs in one process without --resume, --save-every or --recompute (those are for --mode e2e)");
  return c;
}

}  // namespace spin
