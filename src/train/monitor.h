// Watching the student during training on a fixed slice of calibration rows (the per-step loss of a
// random micro-batch is too noisy to read): --eval-every logs its NLL and KL to the float model, and
// --init best picks the initial rotations by it.
#pragma once

#include "src/model/evaluate.h"
#include "src/train/learnables.h"

namespace spin {

class Monitor {
 public:
  Monitor() = default;  // evaluates nothing
  // The last `rows` of the calibration rows [N, T] (all of them when there are fewer).
  Monitor(const TrainConfig& cfg, const ModelConfig& config, const ModelWeights& base, const torch::Tensor& calib_rows,
          int64_t rows);

  bool active() const { return ids_.defined(); }
  // The student of `learnables` (rotated, smoothed, fake-quantized as in training; no autograd) on the
  // slice: NLL, and KL to the float model (`base` with the teacher's options).
  EvalResult evaluate(const Learnables& learnables) const;

 private:
  const TrainConfig* cfg_ = nullptr;
  const ModelConfig* config_ = nullptr;
  const ModelWeights* base_ = nullptr;
  torch::Tensor ids_;  // [rows, T] on the training device
};

}  // namespace spin
