#include "src/train/step.h"

#include <cmath>
#include <optional>

#include "optim/stiefel.h"
#include "src/base/check.h"

namespace spin {
namespace {

// max |RᵀR − I| over `opt`'s Stiefel parameters after a step. Above `threshold` every matrix of
// `stiefel` is first replaced by its nearest orthogonal matrix (polar factor, float64) and
// `repaired_from` receives the error before the repair.
double repair_orthogonality(const optim::HybridOptimizer& opt, const std::vector<torch::Tensor>& stiefel,
                            double threshold, std::optional<double>& repaired_from) {
  const double err = opt.max_orthogonality_error();
  if (err <= threshold) return err;
  torch::NoGradGuard g;
  for (torch::Tensor p : stiefel) p.copy_(optim::nearest_orthogonal(p));
  repaired_from = err;
  return opt.max_orthogonality_error();
}

}  // namespace

nlohmann::json take_step(optim::HybridOptimizer& opt, const optim::LrSchedule& schedule, Learnables& learnables,
                         const std::vector<torch::Tensor>& stiefel, const TrainConfig& cfg, int64_t step, double loss,
                         const std::string& failure, const std::string& hint) {
  SPIN_CHECK(std::isfinite(loss), failure, ": loss is ", loss, "; stopping", hint);
  opt.set_lr_factor(schedule.factor(step));
  opt.step();
  learnables.project();
  std::optional<double> drift;
  const double orth = repair_orthogonality(opt, stiefel, cfg.reorth_threshold, drift);
  nlohmann::json rec = {{"step", step + 1}, {"loss", loss}, {"lr", cfg.lr * schedule.factor(step)}, {"orth_err", orth}};
  if (drift)
    rec["warning"] = cat("orthogonality error ", *drift, " exceeded --reorth-threshold ", cfg.reorth_threshold,
                         "; rotations re-orthonormalised (polar factor)");
  return rec;
}

StepTimer::StepTimer(int64_t first, int64_t total, int64_t tokens_per_step)
    : first_(first), total_(total), tokens_(tokens_per_step), loop_start_(Clock::now()), step_start_(loop_start_) {}

void StepTimer::start() { step_start_ = Clock::now(); }

nlohmann::json StepTimer::done(int64_t steps_done) const {
  const auto now = Clock::now();
  const double dt = std::chrono::duration<double>(now - step_start_).count();
  const double elapsed = std::chrono::duration<double>(now - loop_start_).count();
  return {{"tokens_per_s", tokens_ / dt},
          {"step_seconds", dt},
          {"eta_seconds", elapsed / double(steps_done - first_) * double(total_ - steps_done)}};
}

}  // namespace spin
