#include "src/cli/flags.h"

#include <iostream>
#include <thread>

#include "src/base/check.h"

namespace spin::cli {

int guarded_main(const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // c10 errors carry a multi-line backtrace; keep the first line.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    std::cerr << "error: " << msg << std::endl;
    return 1;
  }
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(n);
}

std::string QuantFlags::describe() const {
  auto bits = [](const QuantSpec& s) { return s.enabled() ? std::to_string(s.bits) : std::string("16"); };
  std::string kv = key.bits == value.bits ? "KV" + bits(key) : "K" + bits(key) + "V" + bits(value);
  return cat("W", bits(weight), "A", bits(act), kv, " (w: ", weight.describe(), "; a: ", act.describe(),
             "; k: ", key.describe(), "; v: ", value.describe(), ")");
}

void add_quant_flags(cxxopts::Options& o, const std::string& group) {
  o.add_options(group)
      ("wbits", "weight bits (16 = float)", cxxopts::value<int>()->default_value("16"))
      ("groupsize", "weight group size along the input dim (0 or >= width: per row)", cxxopts::value<int64_t>()->default_value("0"))
      ("w-asym", "asymmetric weight quantization")
      ("w-clip", "weight clip ratio", cxxopts::value<double>()->default_value("1.0"))
      ("abits", "activation bits, per token (16 = float)", cxxopts::value<int>()->default_value("16"))
      ("a-groupsize", "activation group size (0: whole token)", cxxopts::value<int64_t>()->default_value("0"))
      ("a-asym", "asymmetric activation quantization (default true)", cxxopts::value<bool>()->default_value("true"))
      ("a-clip", "activation clip ratio", cxxopts::value<double>()->default_value("1.0"))
      ("kbits", "K-cache bits (16 = float)", cxxopts::value<int>()->default_value("16"))
      ("vbits", "V-cache bits (16 = float)", cxxopts::value<int>()->default_value("16"))
      ("kv-groupsize", "KV group size along head_dim (0: whole head)", cxxopts::value<int64_t>()->default_value("0"))
      ("kv-asym", "asymmetric KV quantization (default true)", cxxopts::value<bool>()->default_value("true"));
}

QuantFlags quant_flags(const cxxopts::ParseResult& r) {
  QuantFlags q;
  q.weight = {r["wbits"].as<int>(), r["groupsize"].as<int64_t>(), r.count("w-asym") > 0, r["w-clip"].as<double>()};
  q.act = {r["abits"].as<int>(), r["a-groupsize"].as<int64_t>(), r["a-asym"].as<bool>(), r["a-clip"].as<double>()};
  q.key = {r["kbits"].as<int>(), r["kv-groupsize"].as<int64_t>(), r["kv-asym"].as<bool>(), 1.0};
  q.value = {r["vbits"].as<int>(), r["kv-groupsize"].as<int64_t>(), r["kv-asym"].as<bool>(), 1.0};
  for (const QuantSpec* s : {&q.weight, &q.act, &q.key, &q.value})
    SPIN_CHECK(s->bits >= 2 && s->bits <= 16, "--*bits: bits must be between 2 and 16, got ", s->bits);
  return q;
}

cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv) {
  options.add_options("help")("h,help", "print this help");
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    fail(options.program(), ": ", e.what(), " (see --help)");
  }
  if (r.count("help")) {
    std::cout << options.help() << std::endl;
    std::exit(0);
  }
  return r;
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
