#include "src/quantize_weights.h"

namespace spin {

ModelWeights fake_quant_weights(const ModelWeights& weights, const QuantSpec& spec) {
  if (!spec.enabled()) return weights;
  ModelWeights w = weights;
  for (LayerWeights& L : w.layers)
    for (torch::Tensor* t : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj})
      *t = fake_quant(*t, spec);
  return w;
}

}  // namespace spin
