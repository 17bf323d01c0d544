// Learning-rate schedules; see lr_schedule.h.
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "src/base/check.h"
#include "src/base/names.h"

namespace spin::optim {

double LrSchedule::factor(int64_t step) const {
  if (step < warmup_steps) return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  int64_t t = step - warmup_steps;
  double progress = 0;
  if (kind == Kind::linear || kind == Kind::cosine) {
    int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
    progress = std::min(1.0, static_cast<double>(t) / static_cast<double>(span));
  }
  switch (kind) {
    case Kind::constant: return 1.0;
    case Kind::linear: return 1.0 - (1.0 - min_factor) * progress;
    case Kind::cosine: return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(M_PI * progress));
    case Kind::step: return std::pow(gamma, static_cast<double>(t / step_size));
  }
  return 1.0;
}

void LrSchedule::validate() const {
  SPIN_CHECK(warmup_steps >= 0, "lr schedule: warmup_steps must be >= 0, got ", warmup_steps);
  if (kind == Kind::linear || kind == Kind::cosine)
    SPIN_CHECK(total_steps > warmup_steps, "lr schedule: total_steps (", total_steps,
               ") must exceed warmup_steps (", warmup_steps, ") for a decaying schedule");
  if (kind == Kind::step) SPIN_CHECK(step_size >= 1, "lr schedule: step_size must be >= 1, got ", step_size);
  SPIN_CHECK(min_factor >= 0 && min_factor <= 1, "lr schedule: min_factor must be in [0, 1], got ", min_factor);
}

LrSchedule::Kind parse_schedule_kind(const std::string& name, const std::string& what) {
  using K = LrSchedule::Kind;
  static const std::pair<const char*, K> kinds[] = {
      {"constant", K::constant}, {"linear", K::linear}, {"cosine", K::cosine}, {"step", K::step}};
  return from_name(kinds, name, what, "lr schedule");
}

}  // namespace spin::optim
