// Pieces shared by the command-line tools: error handling, threads, quantization flags.
#pragma once

#include <cxxopts.hpp>
#include <functional>
#include <string>

#include "src/kernels/fake_quant.h"

namespace spin::cli {

// Runs body(); a spin::Error or other exception prints "error: <message>" on stderr and returns 1.
int guarded_main(const std::function<int()>& body);

// threads <= 0: all cores. Sets LibTorch's intra-op pool (it defaults to 1 thread).
void set_threads(int threads);

struct QuantFlags {
  QuantSpec weight, act, key, value;
  std::string describe() const;  // "W4A4KV4 (w: 4-bit sym per-row, a: ..., k: ..., v: ...)"
};

// --wbits --groupsize --w-asym --w-clip --abits --a-groupsize --a-asym --a-clip
// --kbits --vbits --kv-groupsize --kv-asym   (bits 16 = off)
void add_quant_flags(cxxopts::Options& options, const std::string& group = "quantization");
QuantFlags quant_flags(const cxxopts::ParseResult& result);

// Parses argv; --help prints usage and exits 0; an unknown flag is a spin::Error.
cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv);

// "f32" / "bf16" / "f64" -> dtype.
torch::ScalarType parse_dtype(const std::string& name);

// "cpu", "cuda", or "auto" (cuda when LibTorch has it).
torch::Device parse_device(const std::string& name);

}  // namespace spin::cli
