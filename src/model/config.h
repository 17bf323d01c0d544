// config.json of a Hugging Face Llama-family causal LM -> ModelConfig, read as transformers reads it.
//
// Supported model types (config.json "model_type"; "architectures", when present, must name the
// matching causal LM): llama (LlamaForCausalLM), mistral (MistralForCausalLM: sliding-window
// attention), qwen2 (Qwen2ForCausalLM: q/k/v biases always), qwen3 (Qwen3ForCausalLM: per-head
// q_norm/k_norm). Every field transformers' forward reads is read, with that model type's transformers
// default when absent; a value that changes the forward in a way not implemented here is refused
// naming the file and the field (README, "Model layouts and config fields"). The original JSON is kept
// in `json` so a re-saved checkpoint carries every field through unchanged.
#pragma once

#include <string>

namespace spin {

struct RopeScaling {
  std::string type = "none";  // "none", "linear" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;        // llama3
  int64_t original_max_position_embeddings = 8192;            // llama3
};

struct ModelConfig {
  std::string model_type;    // "llama", "mistral", "qwen2" or "qwen3"
  std::string architecture;  // the matching causal LM class, e.g. "LlamaForCausalLM"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // explicit in config.json or hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)
  int64_t sliding_window = 0;   // Mistral: query i attends to keys j with i - sliding_window < j <= i; 0: all j <= i
  nlohmann::json json;          // the full original config.json

  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
};

// Parses and validates; `file` names the source in error messages.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& file);
ModelConfig load_model_config(const std::string& path);

}  // namespace spin
