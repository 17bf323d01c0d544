#include "src/quant/quantize_weights.h"

#include <limits>

#include "src/base/check.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

std::string clip_name(int64_t layer, size_t linear) { return cat("layers.", layer, ".", layer_linears()[linear].name); }

}  // namespace

std::vector<LayerClip> init_clip(const ModelConfig& c, double initial, torch::Device device) {
  std::vector<LayerClip> clip(c.num_hidden_layers);
  for (LayerClip& l : clip)
    for (size_t j = 0; j < layer_linears().size(); ++j)
      l.ratio[j] = torch::full({size_of(c, layer_linears()[j].out)}, initial, torch::TensorOptions().dtype(torch::kFloat32).device(device))
                       .requires_grad_(true);
  return clip;
}

void clamp_clip(std::vector<LayerClip>& clip) {
  torch::NoGradGuard g;
  for (LayerClip& l : clip)
    for (torch::Tensor& r : l.ratio) r.clamp_(kMinClip, 1.0);
}

torch::Tensor search_clip(const torch::Tensor& w, const QuantSpec& spec, int steps) {
  torch::NoGradGuard g;
  const torch::Tensor w32 = w.to(torch::kFloat32);  // [out, in]
  const auto opts = w32.options();
  torch::Tensor best = torch::ones({w32.size(0)}, opts);
  torch::Tensor best_err = torch::full({w32.size(0)}, std::numeric_limits<float>::infinity(), opts);
  for (int k = 0; k <= steps; ++k) {
    const double r = 1.0 - (1.0 - kMinClip) * k / steps;
    const torch::Tensor ratio = torch::full({w32.size(0)}, r, opts);
    const torch::Tensor err = (fake_quant(w32, spec, ratio) - w32).pow(2).sum(1);  // [out]
    const torch::Tensor better = err < best_err;
    best = torch::where(better, ratio, best);
    best_err = torch::where(better, err, best_err);
  }
  return best;
}

void search_layer_clip(const LayerWeights& layer, const QuantSpec& spec, LayerClip& clip) {
  torch::NoGradGuard g;
  for (size_t j = 0; j < layer_linears().size(); ++j)
    clip.ratio[j].copy_(search_clip(layer.*layer_linears()[j].weight, spec));
}

LayerWeights fake_quant_layer(const LayerWeights& layer, const QuantSpec& spec, const LayerClip* clip) {
  LayerWeights L = layer;
  if (!spec.enabled()) return L;
  for (size_t j = 0; j < layer_linears().size(); ++j) {
    torch::Tensor& w = L.*layer_linears()[j].weight;
    w = clip ? fake_quant(w, spec, clip->ratio[j]) : fake_quant(w, spec);
  }
  return L;
}

ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec, const std::vector<LayerClip>& clip) {
  if (!spec.enabled()) return weights;
  SPIN_CHECK(clip.empty() || clip.size() == weights.layers.size(), "weight clip: ", clip.size(),
             " layers of ratios for ", weights.layers.size(), " layers");
  ModelWeights w = weights;
  for (size_t i = 0; i < w.layers.size(); ++i)
    w.layers[i] = fake_quant_layer(weights.layers[i], spec, clip.empty() ? nullptr : &clip[i]);
  return w;
}

const char* const kWeightClipFile = "weight_clip.safetensors";

void save_weight_clip(const fs::path& file, const std::vector<LayerClip>& clip) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (size_t i = 0; i < clip.size(); ++i)
    for (size_t j = 0; j < layer_linears().size(); ++j)
      tensors.emplace_back(clip_name(int64_t(i), j), clip[i].ratio[j].detach().to(torch::kCPU, torch::kFloat32));
  save_safetensors(file.string(), tensors, {{"format", "spintrain-weight-clip/1"}});
}

std::vector<LayerClip> load_weight_clip(const fs::path& path, const ModelConfig& c) {
  SPIN_CHECK(fs::exists(path), path.string(), ": weight clip file named in config.json is missing");
  SafetensorsFile file(path.string());
  std::vector<LayerClip> clip = init_clip(c, 1.0, torch::kCPU);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    for (size_t j = 0; j < layer_linears().size(); ++j) {
      const std::string name = clip_name(i, j);
      SPIN_CHECK(file.contains(name), path.string(), ": tensor '", name, "' is missing");
      torch::Tensor r = file.get(name).to(torch::kFloat32);
      SPIN_CHECK(r.sizes() == clip[i].ratio[j].sizes(), path.string(), ": tensor '", name, "' has shape ", r.sizes(),
                 " but the model needs ", clip[i].ratio[j].sizes());
      SPIN_CHECK(r.ge(kMinClip).all().item<bool>() && r.le(1.0).all().item<bool>(), path.string(), ": tensor '", name,
                 "' has clip ratios outside [", kMinClip, ", 1]");
      clip[i].ratio[j] = r;
    }
  return clip;
}

}  // namespace spin
