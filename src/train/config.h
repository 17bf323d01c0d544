// spintrain's configuration: its options (src/cli/options.h: the shared quantizer and run options plus
// spintrain's own), resolved from defaults < --config FILE.json < flags into a validated TrainConfig.
// The resolved values are saved next to the results so a run can be repeated exactly
// (spintrain --config OUT/spintrain_config.json).
#pragma once

#include <string>

#include "optim/lr_schedule.h"
#include "src/cli/options.h"
#include "src/io/output_guard.h"
#include "src/kernels/fake_quant.h"
#include "src/model/forward.h"
#include "src/quant/gptq_export.h"
#include "src/rotation/init.h"

namespace spin {

// What is learned, and how (src/train/mode.h).
enum class Mode {
  e2e,        // end to end: R1, R2 and the scales through the whole quantized model (SpinQuant)
  blockwise,  // R2 and the scales one layer at a time against the float layer's output; R1 fixed
  adapt,      // closed-form R1/R2 by polar factors, no backpropagation
};
enum class Loss { ce, kl, kl_top };  // next-token CE, KL to the float model, KL on the teacher's top-k
enum class Optimizer { cayley_sgd, cayley_adam };

const char* to_string(Mode mode);
const char* to_string(Loss loss);
const char* to_string(Optimizer optimizer);

struct TrainConfig {
  // inputs and outputs
  std::string model, calib, out, eval_data, state_dir, log;
  int64_t nsamples = 0, seq_len = 0, eval_rows = 0;
  // quantization proxy
  QuantSpec weight, act, key, value;
  // rotations
  RotationConfig rotation;
  Mode mode = Mode::e2e;
  bool smooth = false, learn_clip = false;  // learnable smoothing scales / weight clip ratios (Adam)
  bool clip_search = false;                 // start the clip ratios at search_clip()'s
  double scale_lr = 0;
  std::string r1_from;  // take R1 from this rotated checkpoint instead of --init
  int64_t adapt_steps = 0, adapt_block_size = 0, adapt_max_samples = 0;
  // optimization
  Optimizer optimizer = Optimizer::cayley_sgd;
  optim::LrSchedule::Kind schedule = optim::LrSchedule::Kind::cosine;
  Loss loss = Loss::kl;
  double lr = 0, momentum = 0;
  int64_t warmup = 0, steps = 0, batch_size = 0, grad_accum = 1, kl_topk = 0;
  // run control
  int threads = 0;
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  int64_t save_every = 0;
  int nproc = 1;                  // local ranks to launch (torchrun-style environment overrides)
  int64_t dist_timeout = 0;       // seconds a collective may wait for the other ranks
  double reorth_threshold = 0;    // re-orthonormalise when max |R^T R - I| exceeds this
  bool resume = false, quiet = false, skip_baselines = false, resource_check = true, recompute = false;
  // watching the student on the last monitor_rows calibration rows (src/train/monitor.h)
  int64_t eval_every = 0, monitor_rows = 0;
  bool init_best = false;  // --init best: the candidate init with the lowest monitored KL
  bool keep_best = false;  // export the learnables of the evaluation with the lowest monitored KL
  // --gptq: GPTQ of the exported model with the run's calibration rows, written to gptq_out
  bool gptq = false;
  std::string gptq_out;
  GptqExportOptions gptq_export;  // grid (--gptq-wbits/--gptq-groupsize, else the weight quantizer's), format, ...
  bool overwrite = false;         // --overwrite (src/io/output_guard.h)

  cli::Values values;  // every option with its final value (and the --config file they came from)

  cli::QuantFlags quant() const { return {weight, act, key, value}; }
  // The quantized student's forward: the activation/KV quantizers and the online Hadamards R3/R4.
  ForwardOptions student() const;
  // The float model's forward on the folded base weights: R4's online half only (they hold down_proj·H).
  ForwardOptions teacher() const { return online_hadamards(false, rotation.r4); }
};

// spintrain's command line: every option, --config FILE.json, --help.
cli::Program train_program();

// The guard of every path the run reads and writes: --model, --calib, --eval-data, --r1-from, --config;
// --out, --log, --gptq-out, and --state-dir when the run saves or resumes a state. Replaces cfg's
// output paths by the resolved ones the guard examines (write there).
OutputGuard output_guard(TrainConfig& cfg);

// A validated TrainConfig from resolved option values (cli::parse(train_program(), ...) or
// cli::from_json(train_program().options, ...)).
TrainConfig train_config(const cli::Values& values);

}  // namespace spin
