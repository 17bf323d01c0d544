// The spintrain job, top to bottom:
//   load       the input checkpoint (config.json + safetensors) and the calibration rows
//   fold       norms folded into the linears, lm_head untied, R4's weight half: `base`, frozen, in the
//              training dtype; the stored weights are dropped until the export
//   learnables the initial rotations (--init, or R1 from --r1-from), smoothing scales, clip ratios
//   learn      --mode e2e / blockwise / adapt (src/train/mode.h), logging every step
//   fuse       the learned rotations snapped to the orthogonal group and fused in float64 into the
//              stored weights, reloaded from --model (refused if they changed on disk meanwhile)
//   evaluate   float / RTN / RTN + initial rotation / RTN + learned on --eval-data
//   export     a plain HF checkpoint + rotation section + rotations.safetensors (+ clip ratios), atomically
// Before learning, the export's disk space and the job's memory are checked (--resource-check).
#pragma once

#include "src/train/config.h"

namespace spin {

struct TrainSummary {
  nlohmann::json eval_table;  // rows: {name, nll, ppl, kl}
  double final_loss = 0;
  double max_orthogonality_error = 0;
  int64_t steps_run = 0;
};

// Runs the whole job described by `config`; ranks other than 0 only learn.
TrainSummary run_spintrain(const TrainConfig& config);

}  // namespace spin
