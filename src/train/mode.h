// The three ways spintrain learns (--mode), behind one interface: each takes the same Job and updates
// the Learnables in place.
//   e2e        src/train/e2e.h        the whole fake-quantized model, forward and backward, every step
//   blockwise  src/train/blockwise.h  one decoder layer at a time against the float layer's output
//   adapt      src/train/adapt.h      closed-form polar-factor refinement, no backpropagation
#pragma once

#include "data/batch_stream.h"
#include "src/dist/group.h"
#include "src/train/config.h"
#include "src/train/learnables.h"
#include "src/train/log.h"

namespace spin {

// What every mode reads.
struct Job {
  const TrainConfig& cfg;
  const ModelConfig& config;
  const ModelWeights& base;  // norm-folded (+ R4's weight half) frozen weights, training dtype and device
  const Rotations& init;     // float64 initial rotations (R1 from --r1-from when given)
  data::BatchStream& data;   // the calibration rows, in the seeded order
  dist::Group& group;        // the data-parallel ranks (one outside e2e)
  TrainLog& log;             // rank 0's log; inactive on the other ranks
};

struct LearnResult {
  double final_loss = 0;  // the last step's loss (0 for adapt)
  int64_t steps_run = 0;  // optimizer steps this run took (over all layers for blockwise)
};

// Runs job.cfg.mode.
LearnResult learn_mode(const Job& job, Learnables& learnables);

}  // namespace spin
