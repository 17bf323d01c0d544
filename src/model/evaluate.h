// Held-out evaluation: mean next-token NLL / perplexity, and KL to a reference model.
#pragma once

#include "src/model/forward.h"

namespace spin {

struct EvalResult {
  double nll = 0;      // nats per predicted token
  double ppl = 0;      // exp(nll)
  double kl = -1;      // mean KL(reference || model) per token; -1 when no reference
  int64_t tokens = 0;  // predicted tokens (rows × (T − 1))
  double seconds = 0;  // wall time of the model's forwards and NLL (not the reference's)
  double tokens_per_s = 0;  // forward throughput: input tokens (rows × T) / seconds
  nlohmann::json to_json() const;
};

// A model ready to run: weights in the compute dtype/device plus its online rotations and quantizers.
struct ModelRef {
  const ModelConfig* config;
  const ModelWeights* weights;
  ForwardOptions options;
};

// Evaluates `model` on ids [N, T] in batches of `batch_size` rows; `reference` (optional) gives KL.
// Rows of fewer than 2 tokens predict nothing: spin::Error when no token is predicted at all.
EvalResult evaluate(const ModelRef& model, const torch::Tensor& ids, int64_t batch_size,
                    const ModelRef* reference = nullptr);

}  // namespace spin
