#include "src/quant/gptq_model.h"

#include "src/base/check.h"
#include "src/model/forward.h"

namespace spin {

ModelWeights gptq_model(const ModelConfig& c, const ModelWeights& weights, const torch::Tensor& ids,
                        const GptqModelOptions& opt, const OnQuantized& on_quantized) {
  torch::NoGradGuard no_grad;
  SPIN_CHECK(ids.dim() == 2 && ids.size(0) > 0, "gptq: calibration ids must be [rows, seq] with rows > 0, got ",
             ids.sizes());
  SPIN_CHECK(opt.batch_size > 0, "gptq: batch size must be positive, got ", opt.batch_size);
  ModelWeights w = weights;
  const ForwardOptions fo = online_hadamards(opt.r3, opt.r4);  // GPTQ calibrates on float activations
  // Hidden states at the current layer boundary, in batches of rows [batch, T, hidden].
  const torch::Tensor x = embed(w, ids);
  std::vector<torch::Tensor> batches;
  for (int64_t b = 0; b < x.size(0); b += opt.batch_size)
    batches.push_back(x.narrow(0, b, std::min(opt.batch_size, x.size(0) - b)));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& L = w.layers[i];
    for (LinearInput input : {LinearInput::attn_in, LinearInput::attn_heads, LinearInput::mlp_in, LinearInput::mlp_hidden}) {
      std::vector<const Linear*> readers;
      for (const Linear& l : layer_linears())
        if (l.input == input) readers.push_back(&l);
      HessianAccumulator acc(size_of(c, readers.front()->in));
      for (const torch::Tensor& xb : batches)
        decoder_layer(c, L, xb, fo, [&](LinearInput seen, const torch::Tensor& t) {
          if (seen != input) return true;
          acc.add(t);
          return false;
        });
      const torch::Tensor H = acc.hessian();
      for (const Linear* l : readers) {
        torch::Tensor& slot = L.*(l->weight);
        const std::string name = l->hf_name(int64_t(i));
        QuantizedWeight q = gptq_quantize(slot, H, opt.gptq, name);
        if (on_quantized) on_quantized(name, q);
        slot = q.dequantize().to(slot.device(), slot.scalar_type());
      }
    }
    for (torch::Tensor& xb : batches) xb = decoder_layer(c, L, xb, fo);
  }
  return w;
}

}  // namespace spin
