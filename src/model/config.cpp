#include "src/model/config.h"

#include <cstdint>
#include <fstream>
#include <iterator>

#include "src/base/check.h"
#include "src/base/json_input.h"

namespace spin {
namespace {

// What differs between the four model types, as transformers' config and modeling classes define it
// (configuration_<type>.py defaults, modeling_<type>.py layers).
struct Family {
  const char* model_type;
  const char* architecture;
  int64_t num_key_value_heads;  // default when absent; 0: num_attention_heads
  int64_t head_dim;             // default when absent; 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings;  // default when absent
  bool qkv_bias;                // q/k/v biases regardless of config.json (Qwen2)
  bool attention_bias_field;    // reads attention_bias (biases on q/k/v/o_proj)
  bool mlp_bias_field;          // reads mlp_bias (biases on gate/up/down_proj)
  bool qk_norm;                 // per-head q_norm/k_norm (Qwen3)
  enum Window { none, mistral, qwen } window;  // how sliding_window is read
};

constexpr Family kFamilies[] = {
    {"llama", "LlamaForCausalLM", 0, 0, 2048, false, true, true, false, Family::none},
    {"mistral", "MistralForCausalLM", 8, 0, 4096 * 32, false, false, false, false, Family::mistral},
    {"qwen2", "Qwen2ForCausalLM", 32, 0, 32768, true, false, false, false, Family::qwen},
    {"qwen3", "Qwen3ForCausalLM", 32, 128, 32768, false, true, false, true, Family::qwen},
};

bool present(const nlohmann::json& j, const std::string& key) { return j.contains(key) && !j[key].is_null(); }

int64_t positive_int(const nlohmann::json& j, const std::string& key, const std::string& file) {
  SPIN_CHECK(j.contains(key), file, ": missing field '", key, "'");
  // The upper bound keeps products of sizes (q_size, numel) far from int64 overflow.
  SPIN_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0 && j[key].get<int64_t>() <= INT32_MAX, file,
             ": field '", key, "' must be a positive integer below 2^31, got ", j[key].dump());
  return j[key].get<int64_t>();
}

int64_t positive_int(const nlohmann::json& j, const std::string& key, int64_t fallback, const std::string& file) {
  return present(j, key) ? positive_int(j, key, file) : fallback;
}

double positive_number(const nlohmann::json& j, const std::string& key, double fallback, const std::string& file) {
  if (!present(j, key)) return fallback;
  SPIN_CHECK(j[key].is_number() && j[key].get<double>() > 0, file, ": field '", key,
             "' must be a positive number, got ", j[key].dump());
  return j[key].get<double>();
}

double required_number(const nlohmann::json& j, const std::string& key, const std::string& file) {
  SPIN_CHECK(present(j, key), file, ": missing field '", key, "'");
  return positive_number(j, key, 0, file);
}

bool flag(const nlohmann::json& j, const std::string& key, bool fallback, const std::string& file) {
  if (!present(j, key)) return fallback;
  SPIN_CHECK(j[key].is_boolean(), file, ": field '", key, "' must be true or false");
  return j[key].get<bool>();
}

const Family& family_of(const nlohmann::json& j, const std::string& file) {
  SPIN_CHECK(j.contains("model_type") && j["model_type"].is_string(), file, ": missing field 'model_type'");
  const std::string type = j["model_type"].get<std::string>();
  for (const Family& f : kFamilies) {
    if (type != f.model_type) continue;
    if (j.contains("architectures")) {
      const auto& a = j["architectures"];
      SPIN_CHECK(a.is_array() && !a.empty() && a[0].is_string(), file,
                 ": field 'architectures' must be a non-empty list of names");
      SPIN_CHECK(a[0] == f.architecture, file, ": architecture '", a[0].get<std::string>(),
                 "' is not supported for model_type '", type, "' (supported: ", f.architecture, ")");
    }
    return f;
  }
  fail(file, ": model_type '", type, "' is not supported (supported: llama, mistral, qwen2, qwen3)");
}

// RoPE: rope_theta and rope_scaling (transformers 4.x), or both inside rope_parameters (transformers 5).
void parse_rope(const nlohmann::json& j, ModelConfig& c, const std::string& file) {
  const bool v5 = present(j, "rope_parameters");
  const std::string where = v5 ? "rope_parameters" : "rope_scaling";
  SPIN_CHECK(!present(j, where) || j[where].is_object(), file, ": field '", where, "' must be an object");
  const nlohmann::json r = present(j, where) ? j[where] : nlohmann::json::object();
  const std::string in = file + ": " + where;
  c.rope_theta = v5 ? positive_number(r, "rope_theta", 10000.0, in) : positive_number(j, "rope_theta", 10000.0, file);
  // partial_rotary_factor < 1 rotates only the first head_dim · factor dimensions.
  for (const auto& [obj, name] : {std::pair<const nlohmann::json*, std::string>{&j, file}, {&r, in}})
    SPIN_CHECK(positive_number(*obj, "partial_rotary_factor", 1.0, name) == 1.0, name,
               ": field 'partial_rotary_factor' must be 1 (partial rotary embeddings are not supported)");
  for (const char* key : {"rope_type", "type"})
    SPIN_CHECK(!r.contains(key) || r[key].is_string(), file, ": field '", where, ".", key, "' must be a string");
  const std::string type = r.value("rope_type", r.value("type", std::string("default")));
  if (type == "default") return;
  SPIN_CHECK(type == "linear" || type == "llama3", file, ": ", where, " type '", type,
             "' is not supported (supported: default, linear, llama3)");
  c.rope_scaling.type = type;
  c.rope_scaling.factor = required_number(r, "factor", in);
  if (type == "llama3") {
    c.rope_scaling.low_freq_factor = required_number(r, "low_freq_factor", in);
    c.rope_scaling.high_freq_factor = required_number(r, "high_freq_factor", in);
    SPIN_CHECK(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor, in,
               ": field 'high_freq_factor' must exceed 'low_freq_factor'");
    c.rope_scaling.original_max_position_embeddings = positive_int(r, "original_max_position_embeddings", in);
  }
}

// Mistral: sliding_window on every layer (absent: 4096, null: none). Qwen2/Qwen3: only with
// use_sliding_window, and then on the layers from max_window_layers on (or as layer_types says), which
// is not implemented.
void parse_sliding_window(const nlohmann::json& j, const Family& f, ModelConfig& c, const std::string& file) {
  if (f.window == Family::mistral) {
    c.sliding_window = !j.contains("sliding_window") ? 4096 : positive_int(j, "sliding_window", 0, file);
    return;
  }
  if (f.window == Family::qwen) {
    const bool window = !j.contains("sliding_window") || positive_int(j, "sliding_window", 0, file) > 0;  // absent: 4096
    const bool on = flag(j, "use_sliding_window", false, file) && window &&
                    positive_int(j, "max_window_layers", 28, file) < c.num_hidden_layers;
    SPIN_CHECK(!on, file, ": field 'use_sliding_window' is true: per-layer sliding-window attention (",
               f.model_type, ") is not supported");
  }
  if (present(j, "layer_types")) {
    SPIN_CHECK(j["layer_types"].is_array(), file, ": field 'layer_types' must be a list");
    for (const auto& t : j["layer_types"])
      SPIN_CHECK(t == "full_attention", file, ": field 'layer_types' has ", t.dump(),
                 ": only \"full_attention\" layers are supported");
  }
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& file) {
  SPIN_CHECK(j.is_object(), file, ": not a JSON object");
  const Family& f = family_of(j, file);
  ModelConfig c;
  c.json = j;
  c.model_type = f.model_type;
  c.architecture = f.architecture;
  c.hidden_size = positive_int(j, "hidden_size", file);
  c.intermediate_size = positive_int(j, "intermediate_size", file);
  c.num_hidden_layers = positive_int(j, "num_hidden_layers", file);
  c.num_attention_heads = positive_int(j, "num_attention_heads", file);
  c.num_key_value_heads = positive_int(j, "num_key_value_heads",
                                       f.num_key_value_heads ? f.num_key_value_heads : c.num_attention_heads, file);
  c.vocab_size = positive_int(j, "vocab_size", file);
  c.max_position_embeddings = positive_int(j, "max_position_embeddings", f.max_position_embeddings, file);
  if (present(j, "head_dim") || f.head_dim) {
    c.head_dim = positive_int(j, "head_dim", f.head_dim, file);
  } else {
    SPIN_CHECK(c.hidden_size % c.num_attention_heads == 0, file, ": hidden_size ", c.hidden_size,
               " is not divisible by num_attention_heads ", c.num_attention_heads, " and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  SPIN_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, file, ": num_attention_heads ",
             c.num_attention_heads, " is not a multiple of num_key_value_heads ", c.num_key_value_heads);
  SPIN_CHECK(c.head_dim % 2 == 0, file, ": head_dim ", c.head_dim, " must be even for RoPE");
  c.rms_norm_eps = positive_number(j, "rms_norm_eps", 1e-6, file);
  parse_rope(j, c, file);
  c.tie_word_embeddings = flag(j, "tie_word_embeddings", false, file);
  c.attention_bias = f.qkv_bias;
  c.qk_norm = f.qk_norm;
  SPIN_CHECK(!f.attention_bias_field || !flag(j, "attention_bias", false, file), file,
             ": field 'attention_bias' is true: biases on q/k/v/o_proj (", f.model_type, ") are not supported");
  SPIN_CHECK(!f.mlp_bias_field || !flag(j, "mlp_bias", false, file), file,
             ": field 'mlp_bias' is true: biases on gate/up/down_proj are not supported");
  if (present(j, "hidden_act"))
    SPIN_CHECK(j["hidden_act"] == "silu", file, ": hidden_act ", j["hidden_act"].dump(), " is not supported (silu)");
  parse_sliding_window(j, f, c, file);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  SPIN_CHECK(in.good(), path, ": cannot open");
  return parse_model_config(parse_untrusted_json(std::istreambuf_iterator<char>(in), {}, path), path);
}

}  // namespace spin
