// Block-wise causal attention with its hand-written backward (src/kernels/attention.h) against the plain
// full-matrix formula under autograd: repeat K/V per query head, scores over all T×T positions, mask
// the future (and, with a sliding window W, the keys j <= i - W), softmax, times V.
#include <gtest/gtest.h>

#include <cmath>

#include "src/kernels/attention.h"
#include "src/kernels/cpu_bf16.h"

using namespace spin;

namespace {

// q [B, heads, T, hd], k/v [B, kv_heads, T, hd] -> [B, T, heads * hd], the textbook way; window 0: none.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  int64_t window = 0) {
  const int64_t B = q.size(0), nh = q.size(1), T = q.size(2), hd = q.size(3), rep = nh / k.size(1);
  const torch::Tensor kr = k.repeat_interleave(rep, 1), vr = v.repeat_interleave(rep, 1);
  torch::Tensor future = torch::ones({T, T}, torch::kBool).triu(1);  // [T, T], true where masked
  if (window > 0) future = future | torch::ones({T, T}, torch::kBool).tril(-window);  // j <= i - window
  torch::Tensor scores = torch::matmul(q, kr.transpose(-2, -1)).to(torch::kFloat64) / std::sqrt(double(hd));
  torch::Tensor probs = torch::softmax(scores.masked_fill(future, -INFINITY), -1).to(v.scalar_type());
  return torch::matmul(probs, vr).transpose(1, 2).reshape({B, T, nh * hd});
}

struct Inputs {
  torch::Tensor q, k, v;
};

Inputs random_inputs(int64_t B, int64_t nh, int64_t nkv, int64_t T, int64_t hd, torch::ScalarType dtype) {
  torch::manual_seed(3);
  auto leaf = [&](int64_t heads) { return (2 * torch::randn({B, heads, T, hd}, torch::kFloat64)).to(dtype).requires_grad_(); };
  return {leaf(nh), leaf(nkv), leaf(nkv)};
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

// Values and gradients (q, k, v) equal the reference in float64 for every block size, including blocks
// that do not divide T, one row per block, and one block for everything; GQA with 3 query heads per
// K/V head and plain multi-head attention.
TEST(CausalAttention, MatchesFullMatrixInFloat64) {
  for (auto [nh, nkv] : {std::pair<int64_t, int64_t>{6, 2}, {4, 4}}) {
    const Inputs in = random_inputs(2, nh, nkv, 37, 8, torch::kFloat64);
    const torch::Tensor upstream = torch::randn({2, 37, nh * 8}, torch::kFloat64);
    const torch::Tensor ref = reference_attention(in.q, in.k, in.v);
    const auto ref_grads = torch::autograd::grad({ref}, {in.q, in.k, in.v}, {upstream});
    for (int64_t rows : {1, 5, 16, 37, 100, 0}) {
      SCOPED_TRACE(testing::Message() << "heads " << nh << "/" << nkv << ", block_rows " << rows);
      const torch::Tensor out = causal_attention(in.q, in.k, in.v, rows);
      EXPECT_LT(max_abs(out, ref), 1e-12);
      const auto grads = torch::autograd::grad({out}, {in.q, in.k, in.v}, {upstream});
      for (size_t i = 0; i < grads.size(); ++i) EXPECT_LT(max_abs(grads[i], ref_grads[i]), 1e-11) << "gradient " << i;
    }
  }
}

// With a sliding window, values and gradients equal the reference in float64 for windows of one key,
// narrower and wider than a block, and as wide as T or wider (the same as no window), for every block
// size; the window really cuts: a window narrower than T changes the output.
TEST(CausalAttention, SlidingWindowMatchesFullMatrixInFloat64) {
  const int64_t T = 37;
  const Inputs in = random_inputs(2, 6, 2, T, 8, torch::kFloat64);
  const torch::Tensor upstream = torch::randn({2, T, 6 * 8}, torch::kFloat64);
  const torch::Tensor full = reference_attention(in.q, in.k, in.v);
  for (int64_t window : {1, 4, 9, 36, 37, 50}) {
    const torch::Tensor ref = reference_attention(in.q, in.k, in.v, window);
    if (window < T) {
      EXPECT_GT(max_abs(ref, full), 1e-3) << "window " << window;
    }
    const auto ref_grads = torch::autograd::grad({ref}, {in.q, in.k, in.v}, {upstream});
    for (int64_t rows : {1, 5, 16, 37, 0}) {
      SCOPED_TRACE(testing::Message() << "window " << window << ", block_rows " << rows);
      const torch::Tensor out = causal_attention(in.q, in.k, in.v, rows, window);
      EXPECT_LT(max_abs(out, ref), 1e-12);
      const auto grads = torch::autograd::grad({out}, {in.q, in.k, in.v}, {upstream});
      for (size_t i = 0; i < grads.size(); ++i) EXPECT_LT(max_abs(grads[i], ref_grads[i]), 1e-11) << "gradient " << i;
    }
  }
}

// A window of W keys: position i reads keys i - W + 1 .. i exactly, so changing key i - W changes
// nothing at position i while changing key i - W + 1 does.
TEST(CausalAttention, SlidingWindowBoundary) {
  const Inputs in = random_inputs(1, 2, 1, 20, 4, torch::kFloat64);
  torch::NoGradGuard g;
  const int64_t W = 5, i = 12;
  const torch::Tensor out = causal_attention(in.q, in.k, in.v, 3, W);
  for (auto [j, changes] : {std::pair<int64_t, bool>{i - W, false}, {i - W + 1, true}}) {
    torch::Tensor k2 = in.k.clone(), v2 = in.v.clone();
    k2.narrow(2, j, 1).normal_();
    v2.narrow(2, j, 1).normal_();
    const double d = max_abs(out.narrow(1, i, 1), causal_attention(in.q, k2, v2, 3, W).narrow(1, i, 1));
    if (changes) {
      EXPECT_GT(d, 1e-6) << "key " << j;
    } else {
      EXPECT_EQ(d, 0) << "key " << j;
    }
  }
}

// The causal structure itself: changing a future key or value leaves earlier outputs unchanged, and
// the first position attends to itself only (its output is v[0] of its K/V head).
TEST(CausalAttention, FutureDoesNotLeakAndFirstRowIsV0) {
  const Inputs in = random_inputs(1, 4, 2, 20, 4, torch::kFloat64);
  torch::NoGradGuard g;
  const torch::Tensor out = causal_attention(in.q, in.k, in.v, 7);
  torch::Tensor k2 = in.k.clone(), v2 = in.v.clone();
  k2.narrow(2, 12, 8).normal_();
  v2.narrow(2, 12, 8).normal_();
  const torch::Tensor out2 = causal_attention(in.q, k2, v2, 7);
  EXPECT_LT(max_abs(out.narrow(1, 0, 12), out2.narrow(1, 0, 12)), 1e-15);
  EXPECT_GT(max_abs(out.narrow(1, 12, 8), out2.narrow(1, 12, 8)), 1e-3);
  // Query head h uses K/V head h / 2.
  for (int64_t h = 0; h < 4; ++h)
    EXPECT_LT(max_abs(out[0][0].narrow(0, h * 4, 4), in.v[0][h / 2][0]), 1e-15) << "head " << h;
}

// In float32 and bfloat16 the blocked kernel's values and q/k/v gradients stay within the dtype's
// rounding of the float64 reference (scores and softmax run in float32 for bfloat16 inputs).
namespace {
void expect_blocks_near_float64(torch::ScalarType dtype, double tol) {
  const Inputs in = random_inputs(1, 8, 2, 64, 16, torch::kFloat64);
  const torch::Tensor upstream = torch::randn({1, 64, 8 * 16}, torch::kFloat64);
  const torch::Tensor ref = reference_attention(in.q, in.k, in.v);
  const auto ref_grads = torch::autograd::grad({ref}, {in.q, in.k, in.v}, {upstream});
  const torch::Tensor q = in.q.detach().to(dtype).requires_grad_(), k = in.k.detach().to(dtype).requires_grad_(),
                      v = in.v.detach().to(dtype).requires_grad_();
  const torch::Tensor out = causal_attention(q, k, v, 10);
  EXPECT_EQ(out.scalar_type(), dtype);
  EXPECT_LT(max_abs(out, ref), tol);
  const auto grads = torch::autograd::grad({out}, {q, k, v}, {upstream.to(dtype)});
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_EQ(grads[i].scalar_type(), dtype);
    EXPECT_LT(max_abs(grads[i], ref_grads[i]), tol * ref_grads[i].abs().max().item<double>()) << "gradient " << i;
  }
}
}  // namespace

TEST(CausalAttention, Float32NearFloat64) { expect_blocks_near_float64(torch::kFloat32, 1e-5); }

// The blocked kernel's P·V, dS·K and dSᵀ·Q products are LibTorch bfloat16 GEMMs: on a CPU where those
// sum in bfloat16 (cpu_bf16.h; spintrain refuses --dtype bf16 there) the test does not apply.
TEST(CausalAttention, Bfloat16NearFloat64) {
  if (!cpu_bf16_matmul_accumulates_in_float32())
    GTEST_SKIP() << "LibTorch's bfloat16 matrix products on this CPU accumulate in bfloat16";
  expect_blocks_near_float64(torch::kBFloat16, 0.1);
}

// The row kernel (attention_rows.h) in float32 and bfloat16, where it runs its own vectorised exp and
// reductions: values and gradients against the float64 reference at T = 1, 16 and 100 (one key, one
// whole block of 16 keys, rows longer and shorter than a block and ending inside one), with and without
// a window, for head_dim 8 and 32, and equal to the blocked kernel in float32. (The float64 tests above
// run it too: block_rows 0 at head_dim 8 picks it.)
TEST(CausalAttention, RowKernelInFloat32AndBfloat16MatchesFloat64) {
  for (int64_t T : {1, 16, 100}) {
    for (int64_t hd : {8, 32}) {
      for (int64_t window : {0, 21}) {
        const Inputs ref_in = random_inputs(2, 6, 2, T, hd, torch::kFloat64);
        const torch::Tensor upstream = torch::randn({2, T, 6 * hd}, torch::kFloat64);
        const torch::Tensor ref = reference_attention(ref_in.q, ref_in.k, ref_in.v, window);
        const auto ref_grads = torch::autograd::grad({ref}, {ref_in.q, ref_in.k, ref_in.v}, {upstream});
        // Tolerances relative to the largest reference value: float32 rounding, and bfloat16's 8-bit
        // mantissa (the inputs themselves are rounded to it).
        for (auto [dtype, rel] : {std::pair{torch::kFloat32, 2e-6}, {torch::kBFloat16, 0.02}}) {
          SCOPED_TRACE(testing::Message() << "T " << T << ", head_dim " << hd << ", window " << window << ", "
                                          << dtype);
          const double tol = rel * ref.abs().max().item<double>();
          const Inputs in = random_inputs(2, 6, 2, T, hd, dtype);
          const torch::Tensor out = causal_attention(in.q, in.k, in.v, 0, window, AttentionKernel::rows);
          EXPECT_EQ(out.scalar_type(), dtype);
          EXPECT_LT(max_abs(out, ref), tol);
          const auto grads = torch::autograd::grad({out}, {in.q, in.k, in.v}, {upstream.to(dtype)});
          // Relative to the largest gradient entry of the three (at T = 1, dQ and dK are exactly zero).
          double grad_scale = 0;
          for (const torch::Tensor& g : ref_grads) grad_scale = std::max(grad_scale, g.abs().max().item<double>());
          for (size_t i = 0; i < grads.size(); ++i) {
            EXPECT_EQ(grads[i].scalar_type(), dtype);
            EXPECT_LT(max_abs(grads[i], ref_grads[i]), 4 * rel * grad_scale) << "gradient " << i;
          }
          // The blocked kernel agrees in float32 (in bfloat16 it rounds P to bfloat16 for its GEMMs, the
          // row kernel keeps it in float32).
          if (dtype == torch::kFloat32) {
            EXPECT_LT(max_abs(out, causal_attention(in.q, in.k, in.v, 0, window, AttentionKernel::blocks)), tol);
          }
        }
      }
    }
  }
}
