#include "src/rotation/runnable.h"

namespace spin {

RunnableModel load_runnable(const std::filesystem::path& dir, const QuantSpec& weight, const ForwardOptions& quant,
                            torch::Device device, torch::ScalarType dtype) {
  RunnableModel m{load_model(dir), {}, {}};
  const ModelConfig& c = m.config();
  const ModelWeights computed =
      map_weights(c, m.loaded.checkpoint.weights, [&](const torch::Tensor& t) { return t.to(device, dtype); });
  m.weights = fake_quant_weights(computed, weight, m.loaded.weight_clip);
  m.options = m.loaded.online();
  m.options.act = quant.act;
  m.options.key = quant.key;
  m.options.value = quant.value;
  return m;
}

}  // namespace spin
