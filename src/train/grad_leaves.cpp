#include "src/train/grad_leaves.h"

namespace spin {

ModelWeights grad_leaves(const ModelConfig& config, const ModelWeights& w) {
  return map_weights(config, w, [](const torch::Tensor& t) {
    return t.requires_grad() ? t.detach().requires_grad_(true) : t;
  });
}

void backward_from_leaves(const ModelConfig& config, ModelWeights& w, ModelWeights& leaves) {
  std::vector<torch::Tensor*> outs = {&w.r1_online}, ins = {&leaves.r1_online};
  for_each_slot(config, w, [&](const std::string&, torch::Tensor& t) { outs.push_back(&t); });
  for_each_slot(config, leaves, [&](const std::string&, torch::Tensor& t) { ins.push_back(&t); });
  std::vector<torch::Tensor> tensors, grads;
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i]->defined() && outs[i]->requires_grad() && ins[i]->grad().defined()) {
      tensors.push_back(*outs[i]);
      grads.push_back(ins[i]->grad());
    }
  if (!tensors.empty()) torch::autograd::backward(tensors, grads);
}

}  // namespace spin
