#include "src/model/evaluate.h"

#include <chrono>
#include <cmath>

#include "losses/next_token.h"
#include "src/base/check.h"

namespace spin {

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j = {{"nll", nll}, {"ppl", ppl}, {"tokens", tokens}, {"seconds", seconds}, {"tokens_per_s", tokens_per_s}};
  if (kl >= 0) j["kl"] = kl;
  return j;
}

EvalResult evaluate(const ModelRef& model, const torch::Tensor& ids, int64_t batch_size, const ModelRef* reference) {
  torch::NoGradGuard no_grad;
  EvalResult r;
  double nll_sum = 0, kl_sum = 0;
  using clock = std::chrono::steady_clock;
  for (int64_t start = 0; start < ids.size(0); start += batch_size) {
    torch::Tensor batch = ids.narrow(0, start, std::min(batch_size, ids.size(0) - start));
    const int64_t n = batch.size(0) * (batch.size(1) - 1);
    const auto t0 = clock::now();
    torch::Tensor logits =
        lm_logits(*model.weights, forward_hidden(*model.config, *model.weights, batch, model.options));
    nll_sum += losses::next_token_nll(logits, batch).item<double>() * n;  // item() waits for the device
    r.seconds += std::chrono::duration<double>(clock::now() - t0).count();
    if (reference) {
      torch::Tensor ref = lm_logits(*reference->weights,
                                    forward_hidden(*reference->config, *reference->weights, batch, reference->options));
      torch::Tensor ref_logp = torch::log_softmax(ref.narrow(1, 0, ref.size(1) - 1), -1);
      kl_sum += losses::kl_to_teacher(logits.narrow(1, 0, logits.size(1) - 1), ref_logp).item<double>() * n;
    }
    r.tokens += n;
  }
  SPIN_CHECK(r.tokens > 0, "evaluate: nothing to predict in ", ids.size(0), " rows of ", ids.size(1),
             " tokens (each row needs at least 2)");
  r.nll = nll_sum / r.tokens;
  r.ppl = std::exp(r.nll);
  r.tokens_per_s = static_cast<double>(ids.numel()) / r.seconds;
  if (reference) r.kl = kl_sum / r.tokens;
  return r;
}

}  // namespace spin
