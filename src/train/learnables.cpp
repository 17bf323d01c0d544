#include "src/train/learnables.h"

#include "optim/stiefel.h"
#include "src/base/check.h"

namespace spin {

Learnables Learnables::create(const TrainConfig& cfg, const ModelConfig& c, const Rotations& init, bool learn_r1) {
  const auto dtype = cfg.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto leaf = [&](const torch::Tensor& r) { return r.to(cfg.device, dtype).clone().requires_grad_(true); };
  Learnables l;
  if (init.r1.defined()) l.rotations.r1 = learn_r1 ? leaf(init.r1) : init.r1.to(cfg.device, dtype);
  for (const auto& r : init.r2) l.rotations.r2.push_back(leaf(r));
  if (cfg.smooth) l.smoothing = init_smoothing(c, cfg.rotation.r4, cfg.device);
  if (cfg.learn_clip) l.clip = init_clip(c, cfg.weight.clip, cfg.device);
  return l;
}

std::vector<torch::Tensor> Learnables::stiefel() const {
  std::vector<torch::Tensor> p;
  if (rotations.r1.defined() && rotations.r1.requires_grad()) p.push_back(rotations.r1);
  p.insert(p.end(), rotations.r2.begin(), rotations.r2.end());
  return p;
}

std::vector<torch::Tensor> Learnables::euclidean() const {
  std::vector<torch::Tensor> p;
  for (size_t i = 0; i < std::max(smoothing.size(), clip.size()); ++i) {
    auto layer = layer_euclidean(int64_t(i));
    p.insert(p.end(), layer.begin(), layer.end());
  }
  return p;
}

std::vector<torch::Tensor> Learnables::layer_stiefel(int64_t i) const {
  return rotations.r2.empty() ? std::vector<torch::Tensor>{} : std::vector<torch::Tensor>{rotations.r2.at(i)};
}

std::vector<torch::Tensor> Learnables::layer_euclidean(int64_t i) const {
  std::vector<torch::Tensor> p;
  if (!smoothing.empty()) p = smoothing.at(i).parameters();
  if (!clip.empty()) p.insert(p.end(), clip.at(i).ratio.begin(), clip.at(i).ratio.end());
  return p;
}

std::vector<torch::Tensor> Learnables::all() const {
  std::vector<torch::Tensor> p = stiefel(), e = euclidean();
  p.insert(p.end(), e.begin(), e.end());
  return p;
}

double Learnables::orthogonality_error() const {
  double err = rotations.r1.defined() ? optim::orthogonality_error(rotations.r1) : 0;
  for (const auto& r : rotations.r2) err = std::max(err, optim::orthogonality_error(r));
  return err;
}

void Learnables::project() { clamp_clip(clip); }

namespace {

// Layer i rotated and smoothed, before weight quantization.
LayerWeights unquantized_layer(const ModelConfig& c, const LayerWeights& base_layer, const Learnables& l, int64_t i) {
  LayerWeights L = rotate_layer(c, base_layer, l.rotations.r1, l.rotations.r2.empty() ? torch::Tensor() : l.rotations.r2[i]);
  return l.smoothing.empty() ? L : smooth_layer(c, L, l.smoothing[i]);
}

}  // namespace

void Learnables::search_clip(const ModelConfig& c, const ModelWeights& base, const QuantSpec& weight) {
  torch::NoGradGuard g;
  for (size_t i = 0; i < clip.size(); ++i)
    search_layer_clip(unquantized_layer(c, base.layers[i], *this, int64_t(i)), weight, clip[i]);
}

LayerWeights student_layer(const ModelConfig& c, const LayerWeights& base_layer, const Learnables& l, int64_t i,
                           const QuantSpec& weight) {
  return fake_quant_layer(unquantized_layer(c, base_layer, l, i), weight, l.clip.empty() ? nullptr : &l.clip[i]);
}

ModelWeights student_weights(const ModelConfig& c, const ModelWeights& base, const Learnables& l,
                             const QuantSpec& weight, EmbeddingR1 embedding) {
  return fake_quant_weights(smooth_weights(c, rotate_weights(c, base, l.rotations, embedding), l.smoothing), weight,
                            l.clip);
}

ModelWeights fused_weights(const ModelConfig& c, const ModelWeights& base, const Rotations& rotations,
                           const std::vector<LayerSmoothing>& smoothing) {
  return smooth_weights(c, rotate_weights(c, base, rotations), smoothing);
}

std::unique_ptr<optim::HybridOptimizer> make_optimizer(const TrainConfig& cfg, std::vector<torch::Tensor> stiefel,
                                                       std::vector<torch::Tensor> euclidean) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!stiefel.empty()) {
    if (cfg.optimizer == Optimizer::cayley_sgd) {
      optim::CayleySGDOptions o;
      o.lr = cfg.lr;
      o.momentum = cfg.momentum;
      groups.push_back(optim::stiefel_group(std::move(stiefel), o));
    } else {
      optim::CayleyAdamOptions o;
      o.lr = cfg.lr;
      o.beta1 = cfg.momentum;
      groups.push_back(optim::stiefel_group(std::move(stiefel), o));
    }
  }
  if (!euclidean.empty()) {
    optim::AdamOptions o;
    o.lr = cfg.scale_lr;
    groups.push_back(optim::euclidean_group(std::move(euclidean), o));
  }
  SPIN_CHECK(!groups.empty(), "spintrain: nothing to learn (--rotations names nothing and --smooth/--learn-clip are off)");
  return std::make_unique<optim::HybridOptimizer>(std::move(groups));
}

optim::LrSchedule make_schedule(const TrainConfig& cfg) {
  optim::LrSchedule schedule;
  schedule.kind = cfg.schedule;
  schedule.warmup_steps = cfg.warmup;
  schedule.total_steps = std::max<int64_t>(cfg.steps, 1);
  schedule.validate();
  return schedule;
}

}  // namespace spin
