#include "src/model/config.h"

#include <cstdint>
#include <fstream>
#include <iterator>

#include "src/base/check.h"
#include "src/base/json_input.h"

namespace spin {
namespace {

int64_t positive_int(const nlohmann::json& j, const std::string& key, const std::string& file) {
  SPIN_CHECK(j.contains(key), file, ": missing field '", key, "'");
  // The upper bound keeps products of sizes (q_size, numel) far from int64 overflow.
  SPIN_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0 && j[key].get<int64_t>() <= INT32_MAX, file,
             ": field '", key, "' must be a positive integer below 2^31, got ", j[key].dump());
  return j[key].get<int64_t>();
}

double positive_number(const nlohmann::json& j, const std::string& key, double fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  SPIN_CHECK(j[key].is_number() && j[key].get<double>() > 0, file, ": field '", key,
             "' must be a positive number, got ", j[key].dump());
  return j[key].get<double>();
}

bool flag(const nlohmann::json& j, const std::string& key, bool fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  SPIN_CHECK(j[key].is_boolean(), file, ": field '", key, "' must be true or false");
  return j[key].get<bool>();
}

RopeScaling parse_rope_scaling(const nlohmann::json& j, const std::string& file) {
  RopeScaling rs;
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return rs;
  const auto& r = j["rope_scaling"];
  SPIN_CHECK(r.is_object(), file, ": field 'rope_scaling' must be an object");
  for (const char* key : {"rope_type", "type"})
    SPIN_CHECK(!r.contains(key) || r[key].is_string(), file, ": field 'rope_scaling.", key, "' must be a string");
  std::string type = r.value("rope_type", r.value("type", std::string("default")));
  if (type == "default") return rs;
  SPIN_CHECK(type == "linear" || type == "llama3", file, ": rope_scaling type '", type,
             "' is not supported (supported: default, linear, llama3)");
  rs.type = type;
  rs.factor = positive_number(r, "factor", 1.0, file + ": rope_scaling");
  if (type == "llama3") {
    rs.low_freq_factor = positive_number(r, "low_freq_factor", 1.0, file + ": rope_scaling");
    rs.high_freq_factor = positive_number(r, "high_freq_factor", 4.0, file + ": rope_scaling");
    rs.original_max_position_embeddings = positive_int(r, "original_max_position_embeddings", file + ": rope_scaling");
  }
  return rs;
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& file) {
  SPIN_CHECK(j.is_object(), file, ": not a JSON object");
  ModelConfig c;
  c.json = j;
  SPIN_CHECK(j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
                 j["architectures"][0].is_string(),
             file, ": missing field 'architectures'");
  c.architecture = j["architectures"][0].get<std::string>();
  static const char* kSupported[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                     "Qwen3ForCausalLM"};
  SPIN_CHECK(std::find(std::begin(kSupported), std::end(kSupported), c.architecture) != std::end(kSupported), file,
             ": architecture '", c.architecture,
             "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  c.hidden_size = positive_int(j, "hidden_size", file);
  c.intermediate_size = positive_int(j, "intermediate_size", file);
  c.num_hidden_layers = positive_int(j, "num_hidden_layers", file);
  c.num_attention_heads = positive_int(j, "num_attention_heads", file);
  c.num_key_value_heads =
      j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
          ? positive_int(j, "num_key_value_heads", file)
          : c.num_attention_heads;
  c.vocab_size = positive_int(j, "vocab_size", file);
  c.max_position_embeddings =
      j.contains("max_position_embeddings") ? positive_int(j, "max_position_embeddings", file) : 2048;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = positive_int(j, "head_dim", file);
  } else {
    SPIN_CHECK(c.hidden_size % c.num_attention_heads == 0, file, ": hidden_size ", c.hidden_size,
               " is not divisible by num_attention_heads ", c.num_attention_heads, " and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  SPIN_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, file, ": num_attention_heads ",
             c.num_attention_heads, " is not a multiple of num_key_value_heads ", c.num_key_value_heads);
  SPIN_CHECK(c.head_dim % 2 == 0, file, ": head_dim ", c.head_dim, " must be even for RoPE");
  c.rms_norm_eps = positive_number(j, "rms_norm_eps", 1e-6, file);
  c.rope_theta = positive_number(j, "rope_theta", 10000.0, file);
  c.rope_scaling = parse_rope_scaling(j, file);
  c.tie_word_embeddings = flag(j, "tie_word_embeddings", false, file);
  c.attention_bias = flag(j, "attention_bias", c.architecture == "Qwen2ForCausalLM", file);
  c.qk_norm = c.architecture == "Qwen3ForCausalLM";
  if (j.contains("hidden_act")) {
    SPIN_CHECK(j["hidden_act"] == "silu", file, ": hidden_act ", j["hidden_act"].dump(), " is not supported (silu)");
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  SPIN_CHECK(in.good(), path, ": cannot open");
  return parse_model_config(parse_untrusted_json(std::istreambuf_iterator<char>(in), {}, path), path);
}

}  // namespace spin
