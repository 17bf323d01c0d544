// spin-attention-bench: causal_attention forward + backward, the row kernel side by side with the
// blocked kernel, at the attention shapes of the models spintrain trains. Random inputs, best of
// --reps after one warm-up call; one JSON line per shape and kernel on stdout:
//   {"shape": "stories260K", "B": 8, "heads": 8, "kv_heads": 4, "T": 512, "head_dim": 8, "dtype": "f32",
//    "device": "cpu", "kernel": "rows", "forward_ms": ..., "backward_ms": ..., "total_ms": ..., "gflops": ...}
// GFLOP counts the four products of the causal half (QKᵀ and P·V forward; dP, dQ, dK, dV and the
// recomputed QKᵀ backward) at 2 flops per multiply-add.
//
//   spin-attention-bench --threads 2
//   spin-attention-bench --shapes 8x8x4x512x16,1x32x4x2048x64 --kernels rows
#include <chrono>
#include <iostream>
#include <sstream>

#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/kernels/attention.h"

using namespace spin;
using Clock = std::chrono::steady_clock;

namespace {

struct Shape {
  std::string name;
  int64_t B, heads, kv_heads, T, head_dim;
};

// "B x heads x kv_heads x T x head_dim", or one of the named shapes.
Shape parse_shape(const std::string& text) {
  if (text == "stories260K") return {text, 8, 8, 4, 512, 8};
  if (text == "tinystories656k") return {text, 8, 8, 4, 512, 16};
  Shape s{text, 0, 0, 0, 0, 0};
  char x1, x2, x3, x4;
  std::istringstream in(text);
  SPIN_CHECK((in >> s.B >> x1 >> s.heads >> x2 >> s.kv_heads >> x3 >> s.T >> x4 >> s.head_dim) && x1 == 'x' &&
                 x2 == 'x' && x3 == 'x' && x4 == 'x' && in.peek() == EOF,
             "--shapes: '", text, "' is not BxHEADSxKV_HEADSxTxHEAD_DIM or stories260K / tinystories656k");
  SPIN_CHECK(s.B > 0 && s.kv_heads > 0 && s.heads % s.kv_heads == 0 && s.T > 0 && s.head_dim > 0, "--shapes: '", text,
             "': sizes must be positive and heads a multiple of kv_heads");
  return s;
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

nlohmann::json time_kernel(const Shape& s, AttentionKernel kernel, const cli::RunFlags& run, int reps) {
  auto opts = torch::TensorOptions().dtype(run.dtype).device(run.device);
  const torch::Tensor q = torch::randn({s.B, s.heads, s.T, s.head_dim}, opts).requires_grad_();
  const torch::Tensor k = torch::randn({s.B, s.kv_heads, s.T, s.head_dim}, opts).requires_grad_();
  const torch::Tensor v = torch::randn({s.B, s.kv_heads, s.T, s.head_dim}, opts).requires_grad_();
  const torch::Tensor dout = torch::randn({s.B, s.T, s.heads * s.head_dim}, opts);
  auto sync = [&] {
    if (run.device.is_cuda()) torch::cuda::synchronize();
  };
  double best_fwd = 1e30, best_bwd = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = Clock::now();
    const torch::Tensor out = causal_attention(q, k, v, 0, 0, kernel);
    sync();
    const double fwd = ms_since(t0);
    const auto t1 = Clock::now();
    out.backward(dout);
    sync();
    const double bwd = ms_since(t1);
    if (r == 0) continue;  // warm-up
    best_fwd = std::min(best_fwd, fwd);
    best_bwd = std::min(best_bwd, bwd);
  }
  // Multiply-adds of one QKᵀ (or P·V) over the causal half: heads · T(T+1)/2 · head_dim per row of B.
  const double macs = double(s.B) * s.heads * (s.T * (s.T + 1) / 2.0) * s.head_dim;
  const double gflop = 2 * macs * (2 + 5) / 1e9;
  return {{"shape", s.name}, {"B", s.B}, {"heads", s.heads}, {"kv_heads", s.kv_heads}, {"T", s.T},
          {"head_dim", s.head_dim}, {"device", run.device.str()},
          {"kernel", kernel == AttentionKernel::rows ? "rows" : "blocks"}, {"forward_ms", best_fwd},
          {"backward_ms", best_bwd}, {"total_ms", best_fwd + best_bwd},
          {"gflops", gflop / ((best_fwd + best_bwd) / 1e3)}};
}

}  // namespace

using cli::Type;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-attention-bench", "causal attention forward + backward: row kernel vs blocked kernel, JSON lines out",
      std::vector<cli::Option>{
          {"shapes", Type::text, "stories260K,tinystories656k,8x8x4x512x32,4x8x4x512x64", "",
           "comma list of BxHEADSxKV_HEADSxTxHEAD_DIM or stories260K / tinystories656k"},
          {"kernels", Type::text, "rows,blocks", "", "comma list: rows (CPU only), blocks"},
          {"reps", Type::integer, "3", "", "timed repetitions (the best counts), after one warm-up"},
      } + cli::with_defaults(cli::run_options(), {{"device", "cpu"}})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& a) {
    const cli::RunFlags run = cli::run_flags(a);
    const int reps = int(a.integer("reps"));
    SPIN_CHECK(reps >= 1, "--reps: expected >= 1, got ", reps);
    std::vector<AttentionKernel> kernels;
    std::stringstream kin(a.text("kernels"));
    for (std::string name; std::getline(kin, name, ',');) {
      SPIN_CHECK(name == "rows" || name == "blocks", "--kernels: unknown kernel '", name, "' (expected rows or blocks)");
      SPIN_CHECK(name == "blocks" || run.device.is_cpu(), "--kernels rows: the row kernel runs on CPU only (--device cpu)");
      kernels.push_back(name == "rows" ? AttentionKernel::rows : AttentionKernel::blocks);
    }
    std::stringstream sin(a.text("shapes"));
    for (std::string text; std::getline(sin, text, ',');) {
      const Shape s = parse_shape(text);
      for (AttentionKernel kernel : kernels) {
        nlohmann::json line = time_kernel(s, kernel, run, reps);
        line["dtype"] = a.text("dtype");
        std::cout << line.dump() << std::endl;
      }
    }
    return 0;
  });
}
