#include "src/model/generate.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "src/base/check.h"

namespace spin {
namespace {

// The next id from the last position's logits [V] (float64): greedy or a seeded draw.
int64_t pick(const std::vector<double>& logits, const GenerateOptions& o, std::mt19937_64& rng) {
  if (o.temperature == 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  double threshold = -INFINITY;  // logits below it are out (top-k)
  if (o.top_k > 0 && o.top_k < int64_t(logits.size())) {
    std::vector<double> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<double>());
    threshold = sorted[o.top_k - 1];
  }
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> weight(logits.size());  // unnormalised softmax(logits / T) over the kept ids
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    weight[i] = logits[i] >= threshold ? std::exp((logits[i] - top) / o.temperature) : 0.0;
    total += weight[i];
  }
  const double u = double(rng() >> 11) * 0x1.0p-53 * total;  // uniform in [0, total)
  double cumulative = 0;
  int64_t last_kept = 0;
  for (size_t i = 0; i < weight.size(); ++i) {
    if (weight[i] == 0) continue;
    cumulative += weight[i];
    last_kept = int64_t(i);
    if (u < cumulative) return last_kept;
  }
  return last_kept;  // u within rounding of total
}

}  // namespace

std::vector<int64_t> generate(const ModelRef& model, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  const ModelConfig& c = *model.config;
  SPIN_CHECK(!prompt.empty(), "generate: the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i)
    SPIN_CHECK(prompt[i] >= 0 && prompt[i] < c.vocab_size, "generate: prompt id ", prompt[i], " at position ", i,
               " is outside the model's vocabulary [0, ", c.vocab_size, ")");
  SPIN_CHECK(o.tokens > 0, "generate: --tokens must be positive, got ", o.tokens);
  SPIN_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, "generate: --temperature must be >= 0, got ",
             o.temperature);
  SPIN_CHECK(o.top_k >= 0, "generate: --top-k must be >= 0, got ", o.top_k);
  const int64_t length = int64_t(prompt.size()) + o.tokens;
  SPIN_CHECK(c.max_position_embeddings <= 0 || length <= c.max_position_embeddings, "generate: the prompt (",
             prompt.size(), " tokens) and --tokens ", o.tokens, " make ", length,
             " positions, more than max_position_embeddings ", c.max_position_embeddings);

  torch::NoGradGuard no_grad;
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> ids = prompt;  // prompt, then the new ids
  const torch::Device device = model.weights->embed_tokens.device();
  while (int64_t(ids.size()) < length) {
    const int64_t t = int64_t(ids.size());
    const torch::Tensor input = torch::tensor(ids, torch::kInt64).view({1, t}).to(device);  // [1, t]
    const torch::Tensor hidden = forward_hidden(c, *model.weights, input, model.options);    // [1, t, hidden]
    const torch::Tensor last = lm_logits(*model.weights, hidden.narrow(1, t - 1, 1))           // [1, 1, vocab]
                                   .reshape({-1})
                                   .to(torch::kCPU, torch::kFloat64)
                                   .contiguous();  // [vocab]
    ids.push_back(pick(std::vector<double>(last.data_ptr<double>(), last.data_ptr<double>() + last.numel()), o, rng));
  }
  return {ids.begin() + int64_t(prompt.size()), ids.end()};
}

}  // namespace spin
