// Command-line options of spintrain and the tools, each defined once: its key, type, default, help and
// whether it changes what a run computes. A tool lists the options it takes (shared lists below plus
// its own), parses argv against them and reads typed values back. spintrain also reads a JSON file of
// the same keys (--config): defaults < config file < flags given on the command line.
#pragma once

#include <cxxopts.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/kernels/fake_quant.h"
#include "src/model/forward.h"
#include "src/quant/gptq_export.h"

namespace spin::cli {

enum class Type { integer, real, boolean, text, list };  // list: the positional arguments (strings)

struct Option {
  std::string key;       // the flag without dashes and the JSON key: "wbits"
  Type type;
  std::string fallback;  // default, as text ("" for a list)
  std::string group;     // --help section
  std::string help;
  bool affects_result = false;  // changes what spintrain learns: a resumed run must match it
};

// The quantizer options: --wbits --groupsize --w-asym --w-clip (weights), --abits --a-groupsize --a-asym
// --a-clip (activations, per token), --kbits --vbits --kv-groupsize --kv-asym (K/V cache); bits 16 = off.
std::vector<Option> quant_options();
// --threads --dtype --device.
std::vector<Option> run_options();
// --overwrite: let an output replace a path that is not this tool's previous output (src/io/output_guard.h).
std::vector<Option> output_options();
// --bos --no-bos: BOS in front of a tokenized text (the default is the tokenizer's; see bos_flag).
std::vector<Option> bos_options();
// GPTQ's own settings: --act-order --damp --gptq-block-size --pad-intermediate (the grid comes from the
// weight options).
std::vector<Option> gptq_options();
// `options` with some defaults replaced, for a tool whose natural default differs (spintrain --wbits 4).
std::vector<Option> with_defaults(std::vector<Option> options, const std::map<std::string, std::string>& defaults);
// The options of `options` named in `keys`, in that order (a tool that takes only some of a list).
std::vector<Option> select(const std::vector<Option>& options, const std::vector<std::string>& keys);
// a followed by b.
std::vector<Option> operator+(std::vector<Option> a, const std::vector<Option>& b);

// Resolved option values keyed like the options. Reading a key that was not declared, or with the
// wrong type, is a spin::Error (a programming error, caught by any test that runs the tool).
class Values {
 public:
  Values() = default;
  // `given`: the keys set by the command line or a config file (the others hold their defaults).
  Values(std::vector<Option> options, nlohmann::json values, std::vector<std::string> given);

  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;
  bool flag(const std::string& key) const;
  std::string text(const std::string& key) const;
  std::vector<std::string> list(const std::string& key) const;  // empty when none were given
  // Whether the key was given on the command line or in the config file (not just defaulted).
  bool given(const std::string& key) const;
  // Records the value a flag took in effect (a default that does not apply turned off), so that the
  // saved configuration reruns as this run ran.
  void set_flag(const std::string& key, bool value);
  // The --config file the values were read from ("" without one).
  const std::string& config_file() const { return config_file_; }
  void set_config_file(const std::string& file) { config_file_ = file; }

  const std::vector<Option>& options() const { return options_; }
  const nlohmann::json& json() const { return json_; }  // every key with its value
  // The values of the options that affect the result, as one JSON object.
  nlohmann::json result_affecting() const;

 private:
  const nlohmann::json& at(const std::string& key, Type type) const;
  std::vector<Option> options_;
  nlohmann::json json_;
  std::vector<std::string> given_;
  std::string config_file_;
};

struct Program {
  std::string name;         // "spin-eval"
  std::string description;  // one line for --help
  std::vector<Option> options;
  bool config_file = false;  // accepts --config FILE.json with any of the options
};

// Parses argv: --help prints the usage and exits 0; an unknown flag, a bad value, an unknown key in the
// config file are a spin::Error naming the flag or the file.
Values parse(const Program& program, int argc, char** argv);
// The same from JSON alone (missing keys take their defaults); `where` names the source in errors.
Values from_json(const std::vector<Option>& options, const nlohmann::json& values, const std::string& where);

// The quantizers of quant_options(); bits must be 2..16.
struct QuantFlags {
  QuantSpec weight, act, key, value;
  std::string describe() const;  // "W4A4KV4 (w: 4-bit sym per-row, a: ..., k: ..., v: ...)"
  // act, key and value as forward options (no online Hadamards: those come from the checkpoint).
  ForwardOptions forward() const;
};
QuantFlags quant_flags(const Values& values);

// gptq_options() with `grid` as the quantization grid (GptqExportOptions::format and the model's online
// Hadamards are the caller's).
GptqExportOptions gptq_flags(const Values& values, const QuantSpec& grid);

// What --bos / --no-bos ask for: true, false, or nothing (neither given: the tokenizer's default,
// data::Tokenizer::use_bos). Both given is a spin::Error.
std::optional<bool> bos_flag(const Values& values);

// The settings of run_options().
struct RunFlags {
  int threads = 0;  // <= 0: all cores
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};
RunFlags run_flags(const Values& values);

// "f32" / "bf16" / "f64" -> dtype.
torch::ScalarType parse_dtype(const std::string& name);
// "cpu", "cuda", or "auto" (cuda when LibTorch has it).
torch::Device parse_device(const std::string& name);
// Refuses --dtype bf16 on a CPU whose LibTorch bfloat16 GEMMs accumulate in bfloat16 (kernels/cpu_bf16.h);
// run_flags() calls it.
void check_dtype_on_device(torch::ScalarType dtype, const torch::Device& device);

}  // namespace spin::cli
