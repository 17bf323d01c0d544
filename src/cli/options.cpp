#include "src/cli/options.h"

#include <algorithm>
#include <fstream>
#include <iostream>

#include "src/base/check.h"
#include "src/kernels/cpu_bf16.h"

namespace spin::cli {
namespace {

const char* type_name(Type t) {
  switch (t) {
    case Type::integer: return "an integer";
    case Type::real: return "a number";
    case Type::boolean: return "true or false";
    case Type::text: return "a string";
    case Type::list: return "a list of strings";
  }
  return "?";
}

// The value of `o` written as `text` (a flag's argument or a default); `where` starts the error.
nlohmann::json parse_value(const Option& o, const std::string& text, const std::string& where) {
  try {
    switch (o.type) {
      case Type::integer: {
        size_t used = 0;
        const int64_t v = std::stoll(text, &used);
        if (used == text.size()) return v;
        break;
      }
      case Type::real: {
        size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size()) return v;
        break;
      }
      case Type::boolean:
        if (text == "true" || text == "false") return text == "true";
        break;
      case Type::text: return text;
      case Type::list: return nlohmann::json::array();
    }
  } catch (const std::exception&) {
  }
  fail(where, ": '", o.key, "' has invalid value '", text, "'");
}

// A value from a config file, checked against the option's type.
nlohmann::json checked(const Option& o, const nlohmann::json& v, const std::string& where) {
  const bool ok = (o.type == Type::integer && v.is_number_integer()) || (o.type == Type::real && v.is_number()) ||
                  (o.type == Type::boolean && v.is_boolean()) || (o.type == Type::text && v.is_string()) ||
                  (o.type == Type::list && v.is_array() &&
                   std::all_of(v.begin(), v.end(), [](const nlohmann::json& e) { return e.is_string(); }));
  SPIN_CHECK(ok, where, ": '", o.key, "' has the wrong type (", v.dump(), ")");
  return v;
}

const Option* find(const std::vector<Option>& options, const std::string& key) {
  for (const Option& o : options)
    if (o.key == key) return &o;
  return nullptr;
}

nlohmann::json read_config(const std::string& path) {
  std::ifstream in(path);
  SPIN_CHECK(in.good(), path, ": cannot open");
  nlohmann::json values;
  try {
    values = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
  SPIN_CHECK(values.is_object(), path, ": must be a JSON object");
  return values;
}

// Every option with its default, overridden by `given` (already checked).
Values resolve(const std::vector<Option>& options, const nlohmann::json& given, const std::string& where) {
  nlohmann::json v = nlohmann::json::object();
  for (const auto& [key, value] : given.items()) SPIN_CHECK(find(options, key), where, ": unknown option '", key, "'");
  std::vector<std::string> keys;
  for (const Option& o : options) {
    if (given.contains(o.key)) {
      v[o.key] = given[o.key];
      keys.push_back(o.key);
    } else {
      v[o.key] = parse_value(o, o.fallback, "default");
    }
  }
  return Values(options, v, keys);
}

}  // namespace

std::vector<Option> quant_options() {
  const bool result = true;
  return {
      {"wbits", Type::integer, "16", "quantization", "weight bits (16: float)", result},
      {"groupsize", Type::integer, "0", "quantization", "weight group size along the input dim (0 or >= width: per output row)", result},
      {"w-asym", Type::boolean, "false", "quantization", "asymmetric weights", result},
      {"w-clip", Type::real, "1.0", "quantization", "weight clip ratio", result},
      {"abits", Type::integer, "16", "quantization", "activation bits, per token (16: float)", result},
      {"a-groupsize", Type::integer, "0", "quantization", "activation group size along the token (0: whole token)", result},
      {"a-asym", Type::boolean, "true", "quantization", "asymmetric activations", result},
      {"a-clip", Type::real, "1.0", "quantization", "activation clip ratio", result},
      {"kbits", Type::integer, "16", "quantization", "K-cache bits (16: float)", result},
      {"vbits", Type::integer, "16", "quantization", "V-cache bits (16: float)", result},
      {"kv-groupsize", Type::integer, "0", "quantization", "KV group size along head_dim (0: whole head)", result},
      {"kv-asym", Type::boolean, "true", "quantization", "asymmetric KV", result},
  };
}

std::vector<Option> run_options() {
  return {
      {"threads", Type::integer, "0", "run", "CPU threads (0: all cores)"},
      {"dtype", Type::text, "f32", "run", "compute dtype: f32, bf16 or f64", true},
      {"device", Type::text, "auto", "run", "cpu, cuda or auto"},
  };
}

std::vector<Option> output_options() {
  return {{"overwrite", Type::boolean, "false", "io",
           "replace an output path that holds something other than this tool's previous output (never an input "
           "and never a directory tree; docs/RELIABILITY.md)"}};
}

std::vector<Option> bos_options() {
  return {
      {"bos", Type::boolean, "false", "tokens",
       "put BOS in front of each text (default: as tokenizer_config.json add_bos_token says, else when the tokenizer "
       "has a BOS)"},
      {"no-bos", Type::boolean, "false", "tokens", "no BOS"},
  };
}

std::vector<Option> gptq_options() {
  const bool result = true;
  return {
      {"act-order", Type::boolean, "false", "gptq", "quantize columns in decreasing Hessian-diagonal order (desc_act)",
       result},
      {"damp", Type::real, "0.01", "gptq", "dampening, fraction of mean(diag H)", result},
      {"gptq-block-size", Type::integer, "128", "gptq", "lazy-batch block width", result},
      {"pad-intermediate", Type::boolean, "false", "gptq",
       "zero-pad intermediate_size to the next multiple of 32 so gate/up/down pack in the GPTQ format (zero "
       "gate/up rows and down columns: the model's output is unchanged; not with the R4 online Hadamard)",
       result},
  };
}

GptqExportOptions gptq_flags(const Values& v, const QuantSpec& grid) {
  GptqExportOptions o;
  o.model.gptq.grid = grid;
  o.model.gptq.act_order = v.flag("act-order");
  o.model.gptq.damp = v.real("damp");
  o.model.gptq.block_size = v.integer("gptq-block-size");
  o.pad_intermediate = v.flag("pad-intermediate");
  return o;
}

std::vector<Option> with_defaults(std::vector<Option> options, const std::map<std::string, std::string>& defaults) {
  for (const auto& [key, value] : defaults) {
    auto it = std::find_if(options.begin(), options.end(), [&](const Option& o) { return o.key == key; });
    SPIN_CHECK(it != options.end(), "with_defaults: no option '", key, "'");
    it->fallback = value;
  }
  return options;
}

std::vector<Option> select(const std::vector<Option>& options, const std::vector<std::string>& keys) {
  std::vector<Option> out;
  for (const std::string& key : keys) {
    const Option* o = find(options, key);
    SPIN_CHECK(o, "select: no option '", key, "'");
    out.push_back(*o);
  }
  return out;
}

std::vector<Option> operator+(std::vector<Option> a, const std::vector<Option>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Values::Values(std::vector<Option> options, nlohmann::json values, std::vector<std::string> given)
    : options_(std::move(options)), json_(std::move(values)), given_(std::move(given)) {}

const nlohmann::json& Values::at(const std::string& key, Type type) const {
  const Option* o = find(options_, key);
  SPIN_CHECK(o, "option '", key, "' is not declared");
  SPIN_CHECK(o->type == type, "option '", key, "' is not ", type_name(type));
  return json_.at(key);
}

int64_t Values::integer(const std::string& key) const { return at(key, Type::integer).get<int64_t>(); }
double Values::real(const std::string& key) const { return at(key, Type::real).get<double>(); }
bool Values::flag(const std::string& key) const { return at(key, Type::boolean).get<bool>(); }
std::string Values::text(const std::string& key) const { return at(key, Type::text).get<std::string>(); }
std::vector<std::string> Values::list(const std::string& key) const {
  return at(key, Type::list).get<std::vector<std::string>>();
}
void Values::set_flag(const std::string& key, bool value) {
  at(key, Type::boolean);
  json_[key] = value;
}
bool Values::given(const std::string& key) const {
  return std::find(given_.begin(), given_.end(), key) != given_.end();
}

nlohmann::json Values::result_affecting() const {
  nlohmann::json j = nlohmann::json::object();
  for (const Option& o : options_)
    if (o.affects_result) j[o.key] = json_.at(o.key);
  return j;
}

Values parse(const Program& p, int argc, char** argv) {
  cxxopts::Options o(p.name, p.description);
  if (p.config_file)
    o.add_options("io")("config", "JSON file with any of the options below (flags override it)",
                        cxxopts::value<std::string>());
  std::string positional;
  for (const Option& opt : p.options) {
    const bool show_default = opt.type != Type::boolean && opt.type != Type::list;
    const std::string help = opt.help + (show_default ? cat(" [", opt.fallback, "]") : std::string());
    if (opt.type == Type::list) {
      o.add_options(opt.group)(opt.key, help, cxxopts::value<std::vector<std::string>>());
      positional = opt.key;
    } else if (opt.type == Type::boolean) {
      o.add_options(opt.group)(opt.key, help, cxxopts::value<std::string>()->implicit_value("true"));
    } else {
      o.add_options(opt.group)(opt.key, help, cxxopts::value<std::string>());
    }
  }
  if (!positional.empty()) o.parse_positional({positional});
  o.add_options("help")("h,help", "print this help");
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    fail(p.name, ": ", e.what(), " (see --help)");
  }
  if (r.count("help")) {
    std::cout << o.help() << std::endl;
    std::exit(0);
  }

  nlohmann::json given = nlohmann::json::object();
  std::string where = p.name;
  if (p.config_file && r.count("config")) {
    where = r["config"].as<std::string>();
    given = read_config(where);
    for (const auto& [key, value] : given.items()) {
      const Option* opt = find(p.options, key);
      SPIN_CHECK(opt, where, ": unknown option '", key, "'");
      checked(*opt, value, where);
    }
  }
  for (const Option& opt : p.options) {
    if (!r.count(opt.key)) continue;
    given[opt.key] = opt.type == Type::list ? nlohmann::json(r[opt.key].as<std::vector<std::string>>())
                                            : parse_value(opt, r[opt.key].as<std::string>(), "command line");
  }
  Values values = resolve(p.options, given, where);
  if (p.config_file && r.count("config")) values.set_config_file(where);
  return values;
}

Values from_json(const std::vector<Option>& options, const nlohmann::json& values, const std::string& where) {
  SPIN_CHECK(values.is_object(), where, ": must be a JSON object");
  for (const auto& [key, value] : values.items())
    if (const Option* o = find(options, key)) checked(*o, value, where);
  return resolve(options, values, where);
}

ForwardOptions QuantFlags::forward() const {
  ForwardOptions o;
  o.act = act;
  o.key = key;
  o.value = value;
  return o;
}

std::string QuantFlags::describe() const {
  auto bits = [](const QuantSpec& s) { return s.enabled() ? std::to_string(s.bits) : std::string("16"); };
  std::string kv = key.bits == value.bits ? "KV" + bits(key) : "K" + bits(key) + "V" + bits(value);
  return cat("W", bits(weight), "A", bits(act), kv, " (w: ", weight.describe(), "; a: ", act.describe(),
             "; k: ", key.describe(), "; v: ", value.describe(), ")");
}

QuantFlags quant_flags(const Values& v) {
  QuantFlags q;
  q.weight = {int(v.integer("wbits")), v.integer("groupsize"), v.flag("w-asym"), v.real("w-clip")};
  q.act = {int(v.integer("abits")), v.integer("a-groupsize"), v.flag("a-asym"), v.real("a-clip")};
  q.key = {int(v.integer("kbits")), v.integer("kv-groupsize"), v.flag("kv-asym"), 1.0};
  q.value = {int(v.integer("vbits")), v.integer("kv-groupsize"), v.flag("kv-asym"), 1.0};
  for (const QuantSpec* s : {&q.weight, &q.act, &q.key, &q.value})
    SPIN_CHECK(s->bits >= 2 && s->bits <= 16, "--*bits: bits must be between 2 and 16, got ", s->bits);
  return q;
}

std::optional<bool> bos_flag(const Values& v) {
  if (v.flag("no-bos")) {
    SPIN_CHECK(!v.flag("bos"), "--bos and --no-bos contradict each other");
    return false;
  }
  if (v.given("bos")) return v.flag("bos");
  return std::nullopt;
}

RunFlags run_flags(const Values& v) {
  const RunFlags run{int(v.integer("threads")), parse_dtype(v.text("dtype")), parse_device(v.text("device"))};
  check_dtype_on_device(run.dtype, run.device);
  return run;
}

void check_dtype_on_device(torch::ScalarType dtype, const torch::Device& device) {
  SPIN_CHECK(dtype != torch::kBFloat16 || !device.is_cpu() || cpu_bf16_matmul_accumulates_in_float32(),
             "--dtype bf16: LibTorch's bfloat16 matrix products on this CPU sum in bfloat16 (512 ones add up "
             "to 256), too coarse for training or evaluation; use --dtype f32");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "f64" || name == "float64") return torch::kFloat64;
  fail("--dtype: unknown dtype '", name, "' (choose f32, bf16 or f64)");
}

torch::Device parse_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    SPIN_CHECK(torch::cuda::is_available(), "--device cuda: LibTorch has no CUDA device here");
    return torch::kCUDA;
  }
  fail("--device: unknown device '", name, "' (choose cpu, cuda or auto)");
}

}  // namespace spin::cli
