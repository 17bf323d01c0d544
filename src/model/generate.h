// Token generation with a causal LM: greedy, or sampling seeded for reproducibility.
//
// Every new token recomputes the whole forward (src/model/forward.h) over the prompt and the tokens
// generated so far, then reads the logits of the last position: there is no KV cache, which costs
// O(T^2) forwards' worth of work for T tokens and is fine for the tiny models this project runs. The
// result equals what a cache would give under every quantizer of ForwardOptions, since activations
// are quantized per token and K/V per token and head group, so earlier positions never depend on
// later ones.
#pragma once

#include <cstdint>
#include <vector>

#include "src/model/evaluate.h"

namespace spin {

struct GenerateOptions {
  int64_t tokens = 0;       // new tokens, > 0 (spin-generate --tokens)
  double temperature = 0;   // 0: greedy, the largest logit (the lowest id on ties); > 0: sample from
                            // softmax(logits / temperature)
  int64_t top_k = 0;        // sampling only: > 0 keeps the k largest logits (and any tied with the k-th)
  uint64_t seed = 0;        // sampling: std::mt19937_64(seed), the same draws on every platform and device
};

// prompt: token ids [P], P > 0, each in [0, vocab_size); prompt + tokens must fit in
// max_position_embeddings (when the config sets it). Returns the new ids [tokens]. Bad inputs are a
// spin::Error naming the option.
std::vector<int64_t> generate(const ModelRef& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options);

}  // namespace spin
