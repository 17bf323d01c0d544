// The tensors of a Llama-family decoder, by role, and their Hugging Face names.
//
// Shapes (W is out x in, as in torch.nn.Linear):
//   embed_tokens [vocab, hidden]          lm_head [vocab, hidden] (may share storage with embed_tokens)
//   q_proj [q_size, hidden]   k_proj, v_proj [kv_size, hidden]   o_proj [hidden, q_size]
//   gate_proj, up_proj [intermediate, hidden]   down_proj [hidden, intermediate]
//   norms [hidden]; q_norm, k_norm [head_dim] (Qwen3); q/k/v biases [q_size]/[kv_size] (Qwen2)
#pragma once

#include <array>
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

// The input a linear of a decoder layer reads (decoder_layer's tap sees each one, src/model/forward.h).
enum class LinearInput {
  attn_in,     // the normed residual stream before attention [.., hidden]: q/k/v_proj
  attn_heads,  // the attention output of every head [.., q_size]: o_proj
  mlp_in,      // the normed residual stream before the MLP [.., hidden]: gate/up_proj
  mlp_hidden,  // silu(gate)·up (times H with R4) [.., intermediate]: down_proj
};

// The sizes a linear's shape is made of.
enum class Dim { hidden, q_size, kv_size, intermediate };
int64_t size_of(const ModelConfig& config, Dim dim);

// One linear of a decoder layer. layer_linears() lists the seven, and every per-linear list in
// spintrain (quantized weights, clip ratios, GPTQ's order, the GPTQ format) follows it.
struct Linear {
  const char* name;                     // "q_proj": its key in per-linear files (weight clip ratios)
  const char* path;                     // "self_attn.q_proj": the HF name is model.layers.<i>.<path>.weight
  torch::Tensor LayerWeights::*weight;  // [out, in]
  torch::Tensor LayerWeights::*bias;    // [out] where config.attention_bias; nullptr: never
  LinearInput input;
  Dim out, in;

  std::vector<int64_t> shape(const ModelConfig& config) const { return {size_of(config, out), size_of(config, in)}; }
  // "model.layers.3.self_attn.q_proj.weight"
  std::string hf_name(int64_t layer) const;
  // q/k/v/gate/up read the residual stream (a rotation R1 becomes W·R1); o/down write to it (R1ᵀ·W).
  bool reads_residual() const { return input == LinearInput::attn_in || input == LinearInput::mlp_in; }
};

// q, k, v, o, gate, up, down.
const std::array<Linear, 7>& layer_linears();

// The linear whose HF weight name is `hf_name` ("model.layers.3.mlp.down_proj.weight"); nullptr for
// any other tensor.
const Linear* find_linear(const std::string& hf_name);

// Every tensor slot the config calls for, with its HF name ("model.layers.3.mlp.down_proj.weight").
// Slots that are undefined (e.g. a tied lm_head before loading) are visited too.
void for_each_slot(const ModelConfig& config, ModelWeights& weights,
                   const std::function<void(const std::string& name, torch::Tensor& slot)>& fn);

// Tied embeddings (config.tie_word_embeddings), loaded as Hugging Face transformers loads them: the file
// may hold embed_tokens only, lm_head only, or both (then they must be equal). is_tied_half says which
// names a loader may find missing; tie_embeddings then makes lm_head and embed_tokens one tensor, or
// throws spin::Error naming `where` when neither was stored or the two differ.
bool is_tied_half(const ModelConfig& config, const std::string& name);
void tie_embeddings(ModelWeights& weights, const std::string& where);

// The HF shape expected for the tensor `name` under `config`.
std::vector<int64_t> expected_shape(const ModelConfig& config, const std::string& name);

// A copy with fn applied to every defined tensor (e.g. a dtype or device change).
ModelWeights map_weights(const ModelConfig& config, const ModelWeights& weights,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn);

// (name, tensor) pairs in HF order; the tied lm_head is left out when it shares embed_tokens' storage.
std::vector<std::pair<std::string, torch::Tensor>> named_tensors(const ModelConfig& config,
                                                                 const ModelWeights& weights);

}  // namespace spin
