// The Llama-family layouts as transformers loads them (src/model/config.h, src/model/weights.h):
// config.json defaults and refusals per model_type, the three stored layouts of tied embeddings, and
// the forward of each model type (Mistral's sliding window, Qwen2's q/k/v biases, Qwen3's q/k norms,
// RoPE scaling) against the independent reference tests/reference/llama_forward.py, with the rotated
// float model computing the original's logits, and spintrain / spin-gptq / spin-eval on each type.
#include <gtest/gtest.h>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "src/base/check.h"
#include "src/io/checkpoint.h"
#include "src/io/safetensors.h"
#include "src/model/forward.h"
#include "src/rotation/format.h"
#include "src/rotation/fusion.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

// The sizes every config below shares: hidden 32, 4 heads / 2 KV heads, 2 layers, vocab 64.
nlohmann::json base_config(const std::string& model_type) {
  const std::map<std::string, std::string> arch = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                                   {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
  return {{"model_type", model_type}, {"architectures", {arch.at(model_type)}}, {"hidden_size", 32},
          {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 64}};
}

// The one-line error parse_model_config throws for `j` ("" when it accepts it).
std::string config_error(const nlohmann::json& j) {
  try {
    parse_model_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Absent fields take the model type's transformers defaults.
TEST(Config, DefaultsPerModelType) {
  struct Expect {
    std::string type;
    int64_t kv_heads, head_dim, window;
    bool bias, qk_norm;
  };
  for (const Expect& e : {Expect{"llama", 32, 8, 0, false, false}, Expect{"mistral", 8, 8, 4096, false, false},
                          Expect{"qwen2", 32, 8, 0, true, false}, Expect{"qwen3", 32, 128, 0, false, true}}) {
    SCOPED_TRACE(e.type);
    nlohmann::json j = base_config(e.type);
    j["num_attention_heads"] = 32;  // divisible by every default KV head count
    j["hidden_size"] = 256;
    const ModelConfig c = parse_model_config(j, "config.json");
    EXPECT_EQ(c.model_type, e.type);
    EXPECT_EQ(c.num_key_value_heads, e.kv_heads);
    EXPECT_EQ(c.head_dim, e.head_dim);
    EXPECT_EQ(c.sliding_window, e.window);
    EXPECT_EQ(c.attention_bias, e.bias);
    EXPECT_EQ(c.qk_norm, e.qk_norm);
    EXPECT_EQ(c.rope_theta, 10000.0);
    EXPECT_EQ(c.rms_norm_eps, 1e-6);
    EXPECT_EQ(c.rope_scaling.type, "none");
    EXPECT_FALSE(c.tie_word_embeddings);
  }
  // Explicit values win; a null sliding_window means none; Qwen2's biases do not depend on attention_bias;
  // architectures may be absent (transformers picks the class by model_type).
  nlohmann::json m = base_config("mistral");
  m["sliding_window"] = nullptr;
  m["num_key_value_heads"] = 2;
  m["head_dim"] = 16;
  EXPECT_EQ(parse_model_config(m, "config.json").sliding_window, 0);
  EXPECT_EQ(parse_model_config(m, "config.json").head_dim, 16);
  m["sliding_window"] = 5;
  EXPECT_EQ(parse_model_config(m, "config.json").sliding_window, 5);
  nlohmann::json q = base_config("qwen2");
  q["num_key_value_heads"] = 2;
  q["attention_bias"] = false;
  q.erase("architectures");
  EXPECT_TRUE(parse_model_config(q, "config.json").attention_bias);
  // Qwen sliding windows only exist with use_sliding_window and from layer max_window_layers on.
  q["use_sliding_window"] = true;
  q["max_window_layers"] = 2;
  EXPECT_EQ(config_error(q), "");
}

// RoPE: rope_theta + rope_scaling (transformers 4) or rope_parameters (transformers 5).
TEST(Config, RopeScalingAndParameters) {
  nlohmann::json j = base_config("llama");
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_model_config(j, "config.json").rope_scaling.type, "linear");
  nlohmann::json v5 = base_config("qwen3");
  v5["num_key_value_heads"] = 2;
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  c = parse_model_config(v5, "config.json");
  EXPECT_EQ(c.rope_theta, 1000000.0);
  EXPECT_EQ(c.rope_scaling.type, "none");
}

// Every field that would change the forward in a way not implemented is a one-line error naming
// config.json and the field.
TEST(Config, RefusesWhatItDoesNotImplement) {
  struct Case {
    std::string type, fragment;
    std::function<void(nlohmann::json&)> edit;
  };
  const std::vector<Case> cases = {
      {"llama", "field 'attention_bias' is true", [](nlohmann::json& j) { j["attention_bias"] = true; }},
      {"qwen3", "field 'attention_bias' is true", [](nlohmann::json& j) { j["attention_bias"] = true; }},
      {"llama", "field 'mlp_bias' is true", [](nlohmann::json& j) { j["mlp_bias"] = true; }},
      {"llama", "field 'partial_rotary_factor' must be 1", [](nlohmann::json& j) { j["partial_rotary_factor"] = 0.5; }},
      {"llama", "rope_parameters: field 'partial_rotary_factor' must be 1",
       [](nlohmann::json& j) { j["rope_parameters"] = {{"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}}; }},
      {"llama", "rope_scaling type 'yarn' is not supported",
       [](nlohmann::json& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }},
      {"mistral", "rope_scaling type 'dynamic' is not supported",
       [](nlohmann::json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; }},
      {"qwen2", "rope_parameters type 'longrope' is not supported",
       [](nlohmann::json& j) { j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1e4}}; }},
      {"llama", "rope_scaling: missing field 'factor'", [](nlohmann::json& j) { j["rope_scaling"] = {{"rope_type", "linear"}}; }},
      {"llama", "hidden_act \"gelu\" is not supported", [](nlohmann::json& j) { j["hidden_act"] = "gelu"; }},
      {"qwen2", "field 'use_sliding_window' is true",
       [](nlohmann::json& j) { j["use_sliding_window"] = true; j["max_window_layers"] = 1; }},
      {"qwen3", "field 'use_sliding_window' is true", [](nlohmann::json& j) { j["use_sliding_window"] = true; j["max_window_layers"] = 1; }},
      {"llama", "field 'layer_types' has \"sliding_attention\"",
       [](nlohmann::json& j) { j["layer_types"] = {"full_attention", "sliding_attention"}; }},
      {"llama", "model_type 'gemma' is not supported", [](nlohmann::json& j) { j["model_type"] = "gemma"; }},
      {"llama", "architecture 'LlamaForSequenceClassification' is not supported for model_type 'llama'",
       [](nlohmann::json& j) { j["architectures"] = {"LlamaForSequenceClassification"}; }},
      {"mistral", "field 'sliding_window' must be a positive integer", [](nlohmann::json& j) { j["sliding_window"] = 0; }},
  };
  for (const Case& c : cases) {
    nlohmann::json j = base_config(c.type);
    j["num_key_value_heads"] = 2;
    c.edit(j);
    const std::string error = config_error(j);
    EXPECT_EQ(error.rfind("config.json: ", 0), 0u) << error;
    EXPECT_NE(error.find(c.fragment), std::string::npos) << c.type << ": " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

// ---------------------------------------------------------------------------------------------------
// Tied embeddings: the three layouts transformers loads, and the one it cannot mean.

// Writes stories260K's config and `tensors` as a checkpoint directory.
fs::path write_model(const fs::path& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const fs::path& config_from = test::asset("models/stories260K/config.json")) {
  fs::create_directories(dir);
  fs::copy_file(config_from, dir / "config.json", fs::copy_options::overwrite_existing);
  save_safetensors((dir / "model.safetensors").string(), tensors);
  return dir;
}

TEST(TiedEmbeddings, EveryStoredLayoutLoadsAsOneMatrix) {
  const fs::path dir = test::scratch("tied_layouts");
  const Checkpoint ref = load_checkpoint(test::asset("models/stories260K"));
  const torch::Tensor embed = ref.weights.embed_tokens;  // [vocab, hidden]
  std::vector<std::pair<std::string, torch::Tensor>> rest;
  for (const auto& [name, t] : named_tensors(ref.config, ref.weights))
    if (name != "model.embed_tokens.weight") rest.emplace_back(name, t);
  auto with = [&](std::vector<std::pair<std::string, torch::Tensor>> extra) {
    extra.insert(extra.end(), rest.begin(), rest.end());
    return extra;
  };
  const std::vector<std::pair<std::string, std::vector<std::pair<std::string, torch::Tensor>>>> layouts = {
      {"embed_only", with({{"model.embed_tokens.weight", embed}})},
      {"lm_head_only", with({{"lm_head.weight", embed}})},
      {"both_equal", with({{"model.embed_tokens.weight", embed}, {"lm_head.weight", embed.clone()}})},
  };
  for (const auto& [name, tensors] : layouts) {
    const Checkpoint ck = load_checkpoint(write_model(dir / name, tensors));
    EXPECT_TRUE(ck.weights.lm_head.is_same(ck.weights.embed_tokens)) << name;
    EXPECT_TRUE(torch::equal(ck.weights.embed_tokens, embed)) << name;
    // Saved again: one matrix, stored once.
    const auto names = named_tensors(ck.config, ck.weights);
    EXPECT_EQ(std::count_if(names.begin(), names.end(), [](const auto& p) { return p.first == "lm_head.weight"; }), 0)
        << name;
  }
  torch::Tensor other = embed.clone();
  other[3][5] += 1e-3;
  const fs::path unequal = write_model(dir / "both_unequal", with({{"model.embed_tokens.weight", embed}, {"lm_head.weight", other}}));
  try {
    load_checkpoint(unequal);
    ADD_FAILURE() << "unequal tied halves were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tie_word_embeddings is true but the stored 'lm_head.weight' and "
                                         "'model.embed_tokens.weight' differ"),
              std::string::npos)
        << e.what();
  }
  const fs::path neither = write_model(dir / "neither", rest);
  EXPECT_THROW(load_checkpoint(neither), Error);
}

// ---------------------------------------------------------------------------------------------------
// Each model type's forward against the Python reference, and rotated float models unchanged.

// A random checkpoint for config `j` in `dir` (weights ~0.1·N(0, 1), norms 1 + 0.1·N(0, 1)), float32.
Checkpoint random_checkpoint(const nlohmann::json& j, const fs::path& dir) {
  const ModelConfig c = parse_model_config(j, "config.json");
  ModelWeights w;
  torch::manual_seed(11);
  for_each_slot(c, w, [&](const std::string& name, torch::Tensor& slot) {
    const bool norm = name.find("norm") != std::string::npos;
    slot = (norm ? 1.0 : 0.0) + 0.1 * torch::randn(expected_shape(c, name), torch::kFloat64);
    slot = slot.to(torch::kFloat32);
  });
  if (c.tie_word_embeddings) w.lm_head = w.embed_tokens;
  SaveOptions o;
  o.config_json = j;
  save_checkpoint(dir, c, w, o);
  return load_checkpoint(dir);
}

torch::Tensor logits_f64(const ModelConfig& c, const ModelWeights& weights, const torch::Tensor& ids,
                         const ForwardOptions& o = {}) {
  torch::NoGradGuard g;
  const ModelWeights w = map_weights(c, weights, [](const torch::Tensor& t) { return t.to(torch::kFloat64); });
  return lm_logits(w, forward_hidden(c, w, ids, o));
}

// Exit status of llama_forward.py comparing `logits` [B, T, V] of `ids` with its own float64 forward.
int python_reference(const fs::path& model, const torch::Tensor& ids, const torch::Tensor& logits, double tol,
                     const fs::path& dir) {
  save_safetensors((dir / "io.safetensors").string(), {{"ids", ids}, {"logits", logits}});
  return test::run("/usr/bin/python3 " + (test::root() / "tests/reference/llama_forward.py").string() + " " +
                       model.string() + " " + (dir / "io.safetensors").string() + " " + cat(tol) + " f64",
                   dir / "reference.log");
}

TEST(ModelTypes, ForwardMatchesPythonReferenceAndRotationKeepsIt) {
  struct Variant {
    std::string name, type;
    std::function<void(nlohmann::json&)> edit;
  };
  const std::vector<Variant> variants = {
      {"mistral_window5", "mistral", [](nlohmann::json& j) { j["sliding_window"] = 5; }},
      {"mistral_default_window", "mistral", [](nlohmann::json&) {}},
      {"qwen2_bias", "qwen2", [](nlohmann::json&) {}},
      {"qwen3_qk_norm", "qwen3", [](nlohmann::json& j) { j["head_dim"] = 12; j["tie_word_embeddings"] = true; }},
      {"llama_rope_llama3", "llama",
       [](nlohmann::json& j) {  // wavelengths 6.3 (kept), 63 (blended), 628 and 6283 (slowed)
         j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
       }},
      {"llama_rope_linear", "llama", [](nlohmann::json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}}; }},
  };
  const fs::path root = test::scratch("model_types");
  torch::manual_seed(5);
  const torch::Tensor ids = torch::randint(0, 64, {2, 16}, torch::kInt64);
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    nlohmann::json j = base_config(v.type);
    j["num_key_value_heads"] = 2;
    v.edit(j);
    const fs::path dir = root / v.name;
    const Checkpoint ck = random_checkpoint(j, dir / "model");
    const torch::Tensor logits = logits_f64(ck.config, ck.weights, ids);
    EXPECT_EQ(python_reference(dir / "model", ids, logits, 1e-9, dir), 0) << test::read_text(dir / "reference.log");
    // R1, R2, R3 and R4 from random Hadamards on the norm-folded model: the same float function.
    RotationConfig rc = RotationConfig::parse_list("r1,r2,r3,r4", "test");
    const ModelWeights rotated =
        rotate_weights(ck.config, fold_norms(ck.config, ck.weights, /*r4=*/true), init_rotations(ck.config, rc));
    EXPECT_LT((logits_f64(ck.config, rotated, ids, online_hadamards(true, true)) - logits).abs().max().item<double>(), 1e-9);
  }
  // The window is real: with 5 keys the logits differ from the default (4096 > T: full causal).
  const Checkpoint w5 = load_checkpoint(root / "mistral_window5" / "model");
  const Checkpoint full = load_checkpoint(root / "mistral_default_window" / "model");
  EXPECT_GT((logits_f64(w5.config, w5.weights, ids) - logits_f64(full.config, full.weights, ids)).abs().max().item<double>(),
            1e-4);
}

// spintrain (R1..R4, --smooth) exports a checkpoint of each model type that computes the original's
// float logits, spin-gptq quantizes it (--format fake: the toy K/V widths of 16 or 24 are below the
// packed format's multiples of 32; tests/test_real_models.cpp packs a real model) and spin-eval loads it.
TEST(ModelTypes, ToolsRunOnEveryModelType) {
  const fs::path root = test::suite_scratch("model_type_tools");
  torch::manual_seed(6);
  const fs::path calib = root / "calib.h5";
  data::write_token_ids(calib.string(), torch::randint(0, 64, {8, 16}, torch::kInt64), {});
  const torch::Tensor ids = torch::randint(0, 64, {2, 16}, torch::kInt64);
  for (const auto& [type, edit] : std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>>{
           {"mistral", [](nlohmann::json& j) { j["sliding_window"] = 5; }},
           {"qwen2", [](nlohmann::json&) {}},
           {"qwen3", [](nlohmann::json& j) { j["head_dim"] = 12; j["tie_word_embeddings"] = true; }}}) {
    SCOPED_TRACE(type);
    nlohmann::json j = base_config(type);
    j["num_key_value_heads"] = 2;
    edit(j);
    const fs::path dir = root / type;
    const Checkpoint ck = random_checkpoint(j, dir / "model");
    const std::string common = " --calib " + calib.string() + " --nsamples 4 --seq-len 16 --threads 1 --quiet";
    const std::string train = test::bin("spintrain").string() + " --model " + (dir / "model").string() + " --out " +
                              (dir / "trained").string() + common +
                              " --batch-size 2 --steps 2 --r3 --r4 --smooth --skip-baselines";
    ASSERT_EQ(test::run(train, dir / "train.log"), 0) << test::read_text(dir / "train.log");
    const LoadedModel m = load_model(dir / "trained");
    const torch::Tensor a = logits_f64(ck.config, ck.weights, ids);
    EXPECT_LT((logits_f64(m.checkpoint.config, m.checkpoint.weights, ids, m.online()) - a).abs().max().item<double>(),
              1e-4);  // float32 storage of the fused weights
    const std::string gptq = test::bin("spin-gptq").string() + " --model " + (dir / "trained").string() + " --out " +
                             (dir / "gptq").string() + common + " --wbits 4 --groupsize 16 --format fake";
    ASSERT_EQ(test::run(gptq, dir / "gptq.log"), 0) << test::read_text(dir / "gptq.log");
    const std::string eval = test::bin("spin-eval").string() + " --model " + (dir / "gptq").string() + " --data " +
                             calib.string() + " --threads 1";
    EXPECT_EQ(test::run(eval, dir / "eval.log"), 0) << test::read_text(dir / "eval.log");
  }
}

}  // namespace
