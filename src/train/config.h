// spintrain's configuration: one table of options shared by the command line and --config FILE.json.
//
// Every option has a key (the flag name without dashes, e.g. "wbits", "lr"), a type, a default and a
// help text. Resolution: defaults < config file < flags given on the command line. The resolved JSON
// is saved next to the results so a run can be repeated exactly (spintrain --config resolved.json).
#pragma once

#include <string>

#include "src/cli/flags.h"
#include "src/kernels/fake_quant.h"
#include "src/rotation/format.h"

namespace spin {

struct TrainConfig {
  // inputs and outputs
  std::string model, calib, out, eval_data, state_dir, log;
  int64_t nsamples = 0, seq_len = 0, eval_rows = 0;
  // quantization proxy
  QuantSpec weight, act, key, value;
  // rotations
  RotationConfig rotation;
  // what is learned, and how: "e2e" (end to end), "blockwise" (R2 + scales one layer at a time against
  // the float layer, R1 fixed) or "adapt" (closed-form R1/R2, no backpropagation)
  std::string mode;
  bool smooth = false, learn_clip = false;  // learnable smoothing scales / weight clip ratios (Adam)
  double scale_lr = 0;
  std::string r1_from;  // take R1 from this rotated checkpoint instead of --init
  int64_t adapt_steps = 0, adapt_block_size = 0, adapt_max_samples = 0;
  // optimization
  std::string optimizer, schedule, loss;
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

  nlohmann::json resolved;  // every key with its final value
};

// Builds the cxxopts parser from the option table.
cxxopts::Options train_options();

// Resolves defaults < --config file < explicit flags into a validated TrainConfig.
TrainConfig resolve_train_config(const cxxopts::ParseResult& flags);

// Same, from JSON alone (keys as in the table; missing keys take their defaults).
TrainConfig train_config_from_json(const nlohmann::json& values, const std::string& where);

}  // namespace spin
