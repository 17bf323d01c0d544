#include "src/train/mode.h"

#include "src/base/check.h"
#include "src/train/adapt.h"
#include "src/train/blockwise.h"
#include "src/train/e2e.h"

namespace spin {

LearnResult learn_mode(const Job& job, Learnables& learnables) {
  switch (job.cfg.mode) {
    case Mode::e2e: return learn_e2e(job, learnables);
    case Mode::blockwise: return learn_blockwise(job, learnables);
    case Mode::adapt: return learn_adapt(job, learnables);
  }
  fail("spintrain: unknown mode");
}

}  // namespace spin
