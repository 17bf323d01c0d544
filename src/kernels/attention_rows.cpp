#include "src/kernels/attention_rows.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace spin {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The loops below are written so that the compiler vectorises them (no reassociation needed: the
// reductions keep kLanes independent partial results). On x86 each entry point is compiled for AVX-512,
// AVX2 and the baseline, and the loader picks the best the CPU has.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPIN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPIN_VECTOR_CLONES
#endif
#define SPIN_INLINE inline __attribute__((always_inline))

constexpr int kLanes = 16;

// y[0, n) += a · x[0, n)
template <typename S>
SPIN_INLINE void axpy(S* __restrict y, S a, const S* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

template <typename S>
SPIN_INLINE S dot(const S* __restrict a, const S* __restrict b, int64_t n) {
  S acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int u = 0; u < kLanes; ++u) acc[u] += a[j + u] * b[j + u];
  S total = 0;
  for (; j < n; ++j) total += a[j] * b[j];
  for (int u = 0; u < kLanes; ++u) total += acc[u];
  return total;
}

template <typename S>
SPIN_INLINE S sum(const S* __restrict a, int64_t n) {
  S acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int u = 0; u < kLanes; ++u) acc[u] += a[j + u];
  S total = 0;
  for (; j < n; ++j) total += a[j];
  for (int u = 0; u < kLanes; ++u) total += acc[u];
  return total;
}

// max(a[0, n)), n >= 1.
template <typename S>
SPIN_INLINE S max_of(const S* __restrict a, int64_t n) {
  S m = a[0];
  int64_t j = 0;
  if (n >= kLanes) {
    S acc[kLanes];
    for (int u = 0; u < kLanes; ++u) acc[u] = a[u];
    for (j = kLanes; j + kLanes <= n; j += kLanes)
      for (int u = 0; u < kLanes; ++u) acc[u] = a[j + u] > acc[u] ? a[j + u] : acc[u];
    for (int u = 0; u < kLanes; ++u) m = acc[u] > m ? acc[u] : m;
  }
  for (; j < n; ++j) m = a[j] > m ? a[j] : m;
  return m;
}

// e^x for x <= 0 in float32 (Cephes expf: x = n·ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial for
// e^r, times 2^n built in the exponent bits; within 2 ulp). Below −87 the result would leave float's
// normal range: clamped there (e^−87 ≈ 1.6e−38, nothing next to a softmax's largest term 1).
SPIN_INLINE float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const int32_t n = int32_t(x * 1.44269504088896341f - 0.5f);  // round(x / ln2) for x <= 0
  const float nf = float(n);
  const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}
SPIN_INLINE double exp_nonpositive(double x) { return std::exp(x); }

// a[j] = e^(a[j] − shift) for j < n (every a[j] <= shift).
template <typename S>
SPIN_INLINE void exp_shifted(S* __restrict a, S shift, int64_t n) {
  for (int64_t j = 0; j < n; ++j) a[j] = exp_nonpositive(a[j] - shift);
}

// Layout (all contiguous): q, out, dout [G, rep, T, hd]; kT, vT, dkT, dvT [G, hd, T] (keys along the
// last dimension, so a row's scores are hd axpys over contiguous keys); lse [G, rep, T].
struct Shape {
  int64_t G, rep, T, hd, window;
  int64_t first_key(int64_t i) const { return window ? std::max<int64_t>(0, i - window + 1) : 0; }
};

// s[0, n) = the scores of query row q against keys [j0, j0 + n) of kT (one K/V head).
template <typename S>
SPIN_INLINE void scores(const Shape& sh, const S* q, const S* kT, int64_t j0, int64_t n, S* s) {
  std::fill(s, s + n, S(0));
  for (int64_t d = 0; d < sh.hd; ++d) axpy(s, q[d], kT + d * sh.T + j0, n);
}

// Rows [begin, end) of the flattened [G, rep, T]: out and lse. s: T scratch values.
template <typename S>
SPIN_INLINE void forward_rows(const Shape& sh, const S* q, const S* kT, const S* vT, S* out, S* lse, int64_t begin,
                              int64_t end, S* s) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t g = row / (sh.rep * sh.T), i = row % sh.T, j0 = sh.first_key(i), n = i + 1 - j0;
    const S* kg = kT + g * sh.hd * sh.T;
    const S* vg = vT + g * sh.hd * sh.T;
    scores(sh, q + row * sh.hd, kg, j0, n, s);
    const S m = max_of(s, n);
    exp_shifted(s, m, n);
    const S l = sum(s, n);
    for (int64_t d = 0; d < sh.hd; ++d) out[row * sh.hd + d] = dot(s, vg + d * sh.T + j0, n) / l;
    lse[row] = m + std::log(l);
  }
}

// K/V heads [begin, end): dq for their query rows, dkT and dvT (zero on entry). With P = softmax(S),
// O = P·V and D = rowsum(dO ⊙ O): dS = P ⊙ (dO·Vᵀ − D), dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO.
// p, dp: T scratch values each.
template <typename S>
SPIN_INLINE void backward_heads(const Shape& sh, const S* q, const S* kT, const S* vT, const S* out, const S* lse,
                                const S* dout, S* dq, S* dkT, S* dvT, int64_t begin, int64_t end, S* p, S* dp) {
  for (int64_t g = begin; g < end; ++g) {
    const int64_t off = g * sh.hd * sh.T;
    for (int64_t row = g * sh.rep * sh.T; row < (g + 1) * sh.rep * sh.T; ++row) {
      const int64_t i = row % sh.T, j0 = sh.first_key(i), n = i + 1 - j0;
      const S* qr = q + row * sh.hd;
      const S* dor = dout + row * sh.hd;
      scores(sh, qr, kT + off, j0, n, p);
      exp_shifted(p, lse[row], n);
      std::fill(dp, dp + n, S(0));
      S D = 0;
      for (int64_t d = 0; d < sh.hd; ++d) {
        axpy(dp, dor[d], vT + off + d * sh.T + j0, n);
        D += dor[d] * out[row * sh.hd + d];
      }
      for (int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - D);  // dS
      for (int64_t d = 0; d < sh.hd; ++d) {
        dq[row * sh.hd + d] = dot(dp, kT + off + d * sh.T + j0, n);
        axpy(dkT + off + d * sh.T + j0, qr[d], dp, n);
        axpy(dvT + off + d * sh.T + j0, dor[d], p, n);
      }
    }
  }
}

SPIN_VECTOR_CLONES void forward_rows_f32(const Shape& sh, const float* q, const float* kT, const float* vT, float* out,
                                         float* lse, int64_t begin, int64_t end, float* s) {
  forward_rows(sh, q, kT, vT, out, lse, begin, end, s);
}
void forward_rows_f64(const Shape& sh, const double* q, const double* kT, const double* vT, double* out, double* lse,
                      int64_t begin, int64_t end, double* s) {
  forward_rows(sh, q, kT, vT, out, lse, begin, end, s);
}
SPIN_VECTOR_CLONES void backward_heads_f32(const Shape& sh, const float* q, const float* kT, const float* vT,
                                           const float* out, const float* lse, const float* dout, float* dq,
                                           float* dkT, float* dvT, int64_t begin, int64_t end, float* p, float* dp) {
  backward_heads(sh, q, kT, vT, out, lse, dout, dq, dkT, dvT, begin, end, p, dp);
}
void backward_heads_f64(const Shape& sh, const double* q, const double* kT, const double* vT, const double* out,
                        const double* lse, const double* dout, double* dq, double* dkT, double* dvT, int64_t begin,
                        int64_t end, double* p, double* dp) {
  backward_heads(sh, q, kT, vT, out, lse, dout, dq, dkT, dvT, begin, end, p, dp);
}

void forward_rows_any(const Shape& sh, const torch::Tensor& q, const torch::Tensor& kT, const torch::Tensor& vT,
                      torch::Tensor& out, torch::Tensor& lse, int64_t begin, int64_t end) {
  if (q.scalar_type() == torch::kFloat64) {
    std::vector<double> s(sh.T);
    forward_rows_f64(sh, q.data_ptr<double>(), kT.data_ptr<double>(), vT.data_ptr<double>(), out.data_ptr<double>(),
                     lse.data_ptr<double>(), begin, end, s.data());
  } else {
    std::vector<float> s(sh.T);
    forward_rows_f32(sh, q.data_ptr<float>(), kT.data_ptr<float>(), vT.data_ptr<float>(), out.data_ptr<float>(),
                     lse.data_ptr<float>(), begin, end, s.data());
  }
}

struct RowAttentionFunction : torch::autograd::Function<RowAttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t window) {
    const int64_t B = q.size(0), nh = q.size(1), nkv = k.size(1), T = q.size(2), hd = q.size(3);
    const Shape sh{B * nkv, nh / nkv, T, hd, window < T ? window : 0};
    const auto compute = q.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    const torch::Tensor qg = q.to(compute).reshape({sh.G, sh.rep, T, hd}).contiguous();
    const torch::Tensor kT = k.to(compute).reshape({sh.G, T, hd}).transpose(1, 2).contiguous();
    const torch::Tensor vT = v.to(compute).reshape({sh.G, T, hd}).transpose(1, 2).contiguous();
    torch::Tensor out = torch::empty_like(qg), lse = torch::empty({sh.G, sh.rep, T}, qg.options());
    // Row i costs i + 1 keys: chunks of whole heads keep the threads' shares equal.
    at::parallel_for(0, sh.G * sh.rep * T, T, [&](int64_t begin, int64_t end) {
      forward_rows_any(sh, qg, kT, vT, out, lse, begin, end);
    });
    ctx->saved_data["window"] = sh.window;
    ctx->saved_data["dtype"] = int64_t(q.scalar_type());
    ctx->save_for_backward({qg, kT, vT, out, lse});
    return out.to(q.scalar_type()).view({B, nh, T, hd});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &qg = saved[0], &kT = saved[1], &vT = saved[2], &out = saved[3], &lse = saved[4];
    const Shape sh{qg.size(0), qg.size(1), qg.size(2), qg.size(3), ctx->saved_data["window"].toInt()};
    const torch::Tensor dout = grads[0].to(qg.scalar_type()).reshape(qg.sizes()).contiguous();
    torch::Tensor dq = torch::empty_like(qg), dkT = torch::zeros_like(kT), dvT = torch::zeros_like(vT);
    // Parallel over K/V heads: each head's dK/dV rows are written by one thread only.
    at::parallel_for(0, sh.G, 1, [&](int64_t begin, int64_t end) {
      if (qg.scalar_type() == torch::kFloat64) {
        std::vector<double> p(sh.T), dp(sh.T);
        backward_heads_f64(sh, qg.data_ptr<double>(), kT.data_ptr<double>(), vT.data_ptr<double>(),
                           out.data_ptr<double>(), lse.data_ptr<double>(), dout.data_ptr<double>(),
                           dq.data_ptr<double>(), dkT.data_ptr<double>(), dvT.data_ptr<double>(), begin, end,
                           p.data(), dp.data());
      } else {
        std::vector<float> p(sh.T), dp(sh.T);
        backward_heads_f32(sh, qg.data_ptr<float>(), kT.data_ptr<float>(), vT.data_ptr<float>(), out.data_ptr<float>(),
                           lse.data_ptr<float>(), dout.data_ptr<float>(), dq.data_ptr<float>(), dkT.data_ptr<float>(),
                           dvT.data_ptr<float>(), begin, end, p.data(), dp.data());
      }
    });
    const auto dtype = torch::ScalarType(ctx->saved_data["dtype"].toInt());
    const int64_t B = grads[0].size(0), nkv = sh.G / B;
    auto keys_back = [&](const torch::Tensor& t) { return t.transpose(1, 2).to(dtype).reshape({B, nkv, sh.T, sh.hd}); };
    return {dq.to(dtype).view({B, nkv * sh.rep, sh.T, sh.hd}), keys_back(dkT), keys_back(dvT), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    int64_t window) {
  return RowAttentionFunction::apply(q, k, v, window);
}

}  // namespace spin
