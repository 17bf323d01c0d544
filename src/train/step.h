// The end of an optimizer step, the same in every mode that steps: the loss must be finite, the
// optimizer steps at the scheduled lr, clip ratios go back into [kMinClip, 1], and the rotations are
// re-orthonormalised (with a logged warning) if they drifted past --reorth-threshold.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "optim/hybrid.h"
#include "optim/lr_schedule.h"
#include "src/train/config.h"
#include "src/train/learnables.h"

namespace spin {

// Optimizer step `step` (0-based) with the gradients in place and `loss` its mean loss; `failure`
// starts the error for a non-finite loss ("spintrain: step 3"), `hint` ends it. `stiefel` are the
// rotations `opt` steps. Returns the record's {"step", "loss", "lr", "orth_err"} (+ "warning").
nlohmann::json take_step(optim::HybridOptimizer& opt, const optim::LrSchedule& schedule, Learnables& learnables,
                         const std::vector<torch::Tensor>& stiefel, const TrainConfig& cfg, int64_t step, double loss,
                         const std::string& failure, const std::string& hint = "");

// The timing fields of the step records of a loop over steps (first, total]: {"tokens_per_s",
// "step_seconds", "eta_seconds"}.
class StepTimer {
 public:
  StepTimer(int64_t first, int64_t total, int64_t tokens_per_step);
  void start();  // at the start of each step
  nlohmann::json done(int64_t steps_done) const;  // at its end; steps_done counts from 0, not from first

 private:
  using Clock = std::chrono::steady_clock;
  int64_t first_, total_, tokens_;
  Clock::time_point loop_start_, step_start_;
};

}  // namespace spin
