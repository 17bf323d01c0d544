// Learning-rate schedules as a factor on each group's base lr: constant, linear decay, cosine
// decay or step decay, each optionally preceded by a linear warmup.
#pragma once

#include <cstdint>
#include <string>

namespace spin::optim {

struct LrSchedule {
  enum class Kind { constant, linear, cosine, step };
  Kind kind = Kind::constant;
  int64_t warmup_steps = 0;  // factor rises linearly (step+1)/warmup_steps over the first steps
  int64_t total_steps = 0;   // linear/cosine: decay from 1 to min_factor over [warmup_steps, total_steps)
  double min_factor = 0.0;
  int64_t step_size = 1;     // step: factor gamma^floor((step - warmup_steps) / step_size)
  double gamma = 0.1;

  // Factor for the 0-based optimizer step `step` (before that step is taken).
  double factor(int64_t step) const;
  // Throws spin::Error if the fields are inconsistent (e.g. cosine without total_steps).
  void validate() const;
};

// "constant", "linear", "cosine" or "step"; throws spin::Error naming `what` otherwise.
LrSchedule::Kind parse_schedule_kind(const std::string& name, const std::string& what);

}  // namespace spin::optim
