#include "src/train/monitor.h"

namespace spin {

Monitor::Monitor(const TrainConfig& cfg, const ModelConfig& config, const ModelWeights& base,
                 const torch::Tensor& calib_rows, int64_t rows)
    : cfg_(&cfg), config_(&config), base_(&base) {
  const int64_t n = std::min(rows, calib_rows.size(0));
  ids_ = calib_rows.narrow(0, calib_rows.size(0) - n, n).to(cfg.device);
}

EvalResult Monitor::evaluate(const Learnables& learnables) const {
  torch::NoGradGuard g;
  const ModelWeights w = student_weights(*config_, *base_, learnables, cfg_->weight, EmbeddingR1::online);
  const ModelRef student{config_, &w, cfg_->student()}, teacher{config_, base_, cfg_->teacher()};
  return spin::evaluate(student, ids_, cfg_->batch_size, &teacher);
}

}  // namespace spin
