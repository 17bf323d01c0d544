#include "src/model/recompute.h"

namespace spin {

torch::Tensor backward_with_recompute(const ModelConfig& c, const ModelWeights& w, const torch::Tensor& ids,
                                      const ForwardOptions& opt,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& loss_of_logits) {
  // Stage 0 keeps its (small) graph: embedding rows -> x·R1 when R1 is on the activations.
  const torch::Tensor x0 = embed(w, ids);
  std::vector<torch::Tensor> inputs = {x0.detach()};  // inputs[i]: layer i's input [B, T, hidden]
  {
    torch::NoGradGuard g;
    for (const LayerWeights& L : w.layers) inputs.push_back(decoder_layer(c, L, inputs.back(), opt));
  }
  // Head: final norm, lm_head and the loss, from a leaf standing in for the last layer's output.
  torch::Tensor h = inputs.back().requires_grad_(true);
  torch::Tensor loss = loss_of_logits(lm_logits(w, rms_norm(h, w.norm, c.rms_norm_eps)));
  loss.backward();
  torch::Tensor grad = h.grad();
  for (int64_t i = int64_t(w.layers.size()) - 1; i >= 0; --i) {
    torch::Tensor x = inputs[i].requires_grad_(true);
    torch::autograd::backward({decoder_layer(c, w.layers[i], x, opt)}, {grad});
    grad = x.grad();
    inputs[i + 1] = torch::Tensor();  // done with this layer's output
  }
  if (x0.requires_grad()) torch::autograd::backward({x0}, {grad});
  return loss.detach();
}

}  // namespace spin
