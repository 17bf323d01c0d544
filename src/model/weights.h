// The tensors of a Llama-family decoder, by role, and their Hugging Face names.
//
// Shapes (W is out x in, as in torch.nn.Linear):
//   embed_tokens [vocab, hidden]          lm_head [vocab, hidden] (may share storage with embed_tokens)
//   q_proj [q_size, hidden]   k_proj, v_proj [kv_size, hidden]   o_proj [hidden, q_size]
//   gate_proj, up_proj [intermediate, hidden]   down_proj [hidden, intermediate]
//   norms [hidden]; q_norm, k_norm [head_dim] (Qwen3); q/k/v biases [q_size]/[kv_size] (Qwen2)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "src/model/config.h"

namespace spin {

struct LayerWeights {
  torch::Tensor input_layernorm;
  torch::Tensor q_proj, k_proj, v_proj, o_proj;
  torch::Tensor q_bias, k_bias, v_bias;  // undefined unless config.attention_bias
  torch::Tensor q_norm, k_norm;          // undefined unless config.qk_norm
  torch::Tensor post_attention_layernorm;
  torch::Tensor gate_proj, up_proj, down_proj;
};

struct ModelWeights {
  torch::Tensor embed_tokens;
  std::vector<LayerWeights> layers;
  torch::Tensor norm;
  torch::Tensor lm_head;
  // Training only. When defined ([hidden, hidden]), embed_tokens and lm_head are unrotated and R1 acts
  // on the activations instead: x·R1 after the embedding, x·R1ᵀ before lm_head. Same function as
  // fusing R1 into them, without rotating two vocab-sized matrices every step. Not an HF tensor:
  // for_each_slot skips it, map_weights carries it, save_checkpoint refuses it.
  torch::Tensor r1_online;
};

// Every tensor slot the config calls for, with its HF name ("model.layers.3.mlp.down_proj.weight").
// Slots that are undefined (e.g. a tied lm_head before loading) are visited too.
void for_each_slot(const ModelConfig& config, ModelWeights& weights,
                   const std::function<void(const std::string& name, torch::Tensor& slot)>& fn);

// The HF shape expected for the tensor `name` under `config`.
std::vector<int64_t> expected_shape(const ModelConfig& config, const std::string& name);

// A copy with fn applied to every defined tensor (e.g. a dtype or device change).
ModelWeights map_weights(const ModelConfig& config, const ModelWeights& weights,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn);

// (name, tensor) pairs in HF order; the tied lm_head is left out when it shares embed_tokens' storage.
std::vector<std::pair<std::string, torch::Tensor>> named_tensors(const ModelConfig& config,
                                                                 const ModelWeights& weights);

}  // namespace spin
