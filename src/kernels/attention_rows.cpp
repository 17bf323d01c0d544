#include "src/kernels/attention_rows.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace spin {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Work on a block of keys is written with GCC vectors (Block below); the few plain loops (sum, max)
// keep kLanes independent partial results, so the compiler vectorises them without reassociating. On
// x86 each entry point is compiled for AVX-512, AVX2 and the baseline, and the loader picks the best
// the CPU has.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPIN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPIN_VECTOR_CLONES
#endif
#define SPIN_INLINE inline __attribute__((always_inline))

// Keys are processed kLanes at a time, a row's last block reaching past its last key; the key-major
// tensors are padded with zeros to Shape::Tp so that every block lies inside them.
constexpr int kLanes = 16;

int64_t round_up(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// sum and max of a[0, n), n a positive multiple of kLanes: kLanes independent partial results.
template <typename S>
SPIN_INLINE S sum(const S* __restrict a, int64_t n) {
  S acc[kLanes] = {};
  for (int64_t j = 0; j < n; j += kLanes)
    for (int u = 0; u < kLanes; ++u) acc[u] += a[j + u];
  S total = 0;
  for (int u = 0; u < kLanes; ++u) total += acc[u];
  return total;
}

template <typename S>
SPIN_INLINE S max_of(const S* __restrict a, int64_t n) {
  S acc[kLanes];
  for (int u = 0; u < kLanes; ++u) acc[u] = a[u];
  for (int64_t j = kLanes; j < n; j += kLanes)
    for (int u = 0; u < kLanes; ++u) acc[u] = a[j + u] > acc[u] ? a[j + u] : acc[u];
  S m = acc[0];
  for (int u = 1; u < kLanes; ++u) m = acc[u] > m ? acc[u] : m;
  return m;
}

// A block of kLanes values as one GCC vector (one register, or a few on narrower instruction sets),
// so that every loop over a block is vector code whatever the compiler's loop vectoriser decides.
// Loads and stores go through memcpy: no alignment needed.
template <typename S>
struct BlockOf {
  typedef S type __attribute__((vector_size(kLanes * sizeof(S))));
};
template <typename S>
using Block = typename BlockOf<S>::type;

template <typename S>
SPIN_INLINE Block<S> load(const S* p) {
  Block<S> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename S>
SPIN_INLINE void store(S* p, const Block<S>& v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename S>
SPIN_INLINE void add_to(S* p, const Block<S>& v) {
  store(p, load(p) + v);
}
template <typename V>
SPIN_INLINE auto lane_sum(const V& v) {
  auto total = v[0];
  for (int u = 1; u < kLanes; ++u) total += v[u];
  return total;
}

// x = e^x in every lane, for x <= 0, in float32 (Cephes expf: x = n·ln2 + r, |r| <= ln2 / 2, a
// degree-6 polynomial for e^r, times 2^n built in the exponent bits; within 2 ulp). Below −87 the
// result would leave float's normal range: clamped there (e^−87 ≈ 1.6e−38, nothing next to a softmax's
// largest term 1); above 0 (keys past a row's last one, whose terms are then discarded) clamped to 0.
SPIN_INLINE void exp_in_place(Block<float>& x) {
  typedef int32_t Ints __attribute__((vector_size(kLanes * sizeof(int32_t))));
  const Block<float> zero = {}, lowest = zero - 87.0f;
  x = x < lowest ? lowest : x;
  x = x > zero ? zero : x;
  const Ints n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, Ints);  // round(x / ln2), x <= 0
  const Block<float> nf = __builtin_convertvector(n, Block<float>);
  const Block<float> r = x - nf * 0.693359375f + nf * 2.12194440e-4f;  // ln2 in two parts
  Block<float> p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Block<float> y = p * r * r + r + 1.0f;
  const Ints bits = (n + 127) << 23;
  Block<float> scale;
  std::memcpy(&scale, &bits, sizeof scale);
  x = y * scale;
}
SPIN_INLINE void exp_in_place(Block<double>& x) {
  for (int u = 0; u < kLanes; ++u) x[u] = std::exp(x[u]);
}

// Layout (all contiguous): q, out, dout [G, rep, T, hd]; kT, vT, dkT, dvT [G, hd, Tp] (keys along the
// last dimension, zero from T on); lse [G, rep, T].
struct Shape {
  int64_t G, rep, T, hd, window;
  int64_t Tp = round_up(T) + kLanes;
  int64_t first_key(int64_t i) const { return window ? std::max<int64_t>(0, i - window + 1) : 0; }
};

// Query rows go kTile at a time: consecutive positions of one query head, whose key ranges are the
// same up to their last few keys, so that every load of K, V, dK and dV serves kTile rows.
constexpr int kTile = 4;

// The keys of a tile of P rows starting at position i0: [first, first + n) covers every row's keys;
// row r's own are [lo[r], hi[r]) relative to first.
template <int P>
struct TileKeys {
  int64_t first, n, lo[P], hi[P];
  TileKeys(const Shape& sh, int64_t i0) : first(sh.first_key(i0)), n(i0 + P - first) {
    for (int r = 0; r < P; ++r) {
      lo[r] = sh.first_key(i0 + r) - first;
      hi[r] = i0 + r + 1 - first;
    }
  }
  // Whether keys [j, j + kLanes) are all row r's.
  bool whole_block(int r, int64_t j) const { return j >= lo[r] && j + kLanes <= hi[r]; }
};

// Rows [row0, row0 + P) (positions i0.., one query head, K/V head g): out and lse.
// s: P · Tp values; o: P · hd · kLanes values.
template <int P, typename S>
SPIN_INLINE void forward_tile(const Shape& sh, int64_t g, int64_t row0, const S* q, const S* kT, const S* vT, S* out,
                              S* lse, S* __restrict s, S* __restrict o) {
  const TileKeys<P> keys(sh, row0 % sh.T);
  const int64_t nb = round_up(keys.n), hd = sh.hd;
  const S* kg = kT + g * hd * sh.Tp + keys.first;
  const S* vg = vT + g * hd * sh.Tp + keys.first;
  const S* qt = q + row0 * hd;
  // Scores: s[r][j] = q_r · k_j.
  for (int64_t j = 0; j < nb; j += kLanes) {
    Block<S> acc[P] = {};
    for (int64_t d = 0; d < hd; ++d) {
      const Block<S> k = load(kg + d * sh.Tp + j);
      for (int r = 0; r < P; ++r) acc[r] += qt[r * hd + d] * k;
    }
    for (int r = 0; r < P; ++r) store(s + r * sh.Tp + j, acc[r]);
  }
  // Softmax of each row over its own keys; the others become 0 (before the exp they are set to one
  // of the row's scores, neutral for the max).
  S l[P];
  for (int r = 0; r < P; ++r) {
    S* sr = s + r * sh.Tp;
    const int64_t lo = keys.lo[r], hi = keys.hi[r];
    std::fill(sr, sr + lo, sr[lo]);
    std::fill(sr + hi, sr + nb, sr[lo]);
    const S m = max_of(sr, nb);
    for (int64_t j = 0; j < nb; j += kLanes) {
      Block<S> e = load(sr + j) - m;
      exp_in_place(e);
      store(sr + j, e);
    }
    std::fill(sr, sr + lo, S(0));
    std::fill(sr + hi, sr + nb, S(0));
    l[r] = sum(sr, nb);
    lse[row0 + r] = m + std::log(l[r]);
  }
  // o[r][d][u] = Σ over keys j ≡ u (mod kLanes) of p_rj · V[j, d]
  std::fill(o, o + P * hd * kLanes, S(0));
  for (int64_t j = 0; j < nb; j += kLanes) {
    Block<S> pr[P];
    for (int r = 0; r < P; ++r) pr[r] = load(s + r * sh.Tp + j);
    for (int64_t d = 0; d < hd; ++d) {
      const Block<S> v = load(vg + d * sh.Tp + j);
      for (int r = 0; r < P; ++r) add_to(o + (r * hd + d) * kLanes, pr[r] * v);
    }
  }
  for (int r = 0; r < P; ++r)
    for (int64_t d = 0; d < hd; ++d) out[(row0 + r) * hd + d] = lane_sum(load(o + (r * hd + d) * kLanes)) / l[r];
}

// Rows [row0, row0 + P) as in forward_tile: their dq, and their shares of dkT and dvT. With
// P = softmax(S), O = P·V and D = rowsum(dO ⊙ O): dS = P ⊙ (dO·Vᵀ − D), dQ = dS·K, dK = dSᵀ·Q,
// dV = Pᵀ·dO, in one pass over the keys, a block of kLanes at a time. dqa: P · hd · kLanes values.
template <int P, typename S>
SPIN_INLINE void backward_tile(const Shape& sh, int64_t g, int64_t row0, const S* q, const S* kT, const S* vT,
                               const S* out, const S* lse, const S* dout, S* dq, S* dkT, S* dvT, S* __restrict dqa) {
  const TileKeys<P> keys(sh, row0 % sh.T);
  const int64_t hd = sh.hd, off = g * hd * sh.Tp + keys.first;
  const S *kg = kT + off, *vg = vT + off;
  S *dkg = dkT + off, *dvg = dvT + off;
  const S* qt = q + row0 * hd;
  const S* dot = dout + row0 * hd;
  S D[P], L[P];
  for (int r = 0; r < P; ++r) {
    D[r] = 0;
    for (int64_t d = 0; d < hd; ++d) D[r] += dot[r * hd + d] * out[(row0 + r) * hd + d];
    L[r] = lse[row0 + r];
  }
  std::fill(dqa, dqa + P * hd * kLanes, S(0));
  for (int64_t j = 0; j < keys.n; j += kLanes) {
    // p = P and ds = dS of this block of keys, for each row.
    Block<S> p[P] = {}, ds[P] = {};
    for (int64_t d = 0; d < hd; ++d) {
      const Block<S> k = load(kg + d * sh.Tp + j), v = load(vg + d * sh.Tp + j);
      for (int r = 0; r < P; ++r) {
        p[r] += qt[r * hd + d] * k;
        ds[r] += dot[r * hd + d] * v;
      }
    }
    for (int r = 0; r < P; ++r) {
      p[r] -= L[r];
      exp_in_place(p[r]);
      ds[r] = p[r] * (ds[r] - D[r]);
      if (!keys.whole_block(r, j))
        for (int u = 0; u < kLanes; ++u)
          if (j + u < keys.lo[r] || j + u >= keys.hi[r]) p[r][u] = ds[r][u] = 0;
    }
    for (int64_t d = 0; d < hd; ++d) {
      const Block<S> k = load(kg + d * sh.Tp + j);
      Block<S> dk = {}, dv = {};
      for (int r = 0; r < P; ++r) {
        dk += qt[r * hd + d] * ds[r];
        dv += dot[r * hd + d] * p[r];
        add_to(dqa + (r * hd + d) * kLanes, ds[r] * k);
      }
      add_to(dkg + d * sh.Tp + j, dk);
      add_to(dvg + d * sh.Tp + j, dv);
    }
  }
  for (int r = 0; r < P; ++r)
    for (int64_t d = 0; d < hd; ++d) dq[(row0 + r) * hd + d] = lane_sum(load(dqa + (r * hd + d) * kLanes));
}

// Whether a tile of kTile rows starting at `row` lies inside [row, end) and inside one query head.
// (The loops below take tiles where they fit and single rows elsewhere; they are written out rather
// than passed a lambda, which would not be compiled for the caller's instruction set.)
SPIN_INLINE bool tile_fits(const Shape& sh, int64_t row, int64_t end) {
  return row + kTile <= end && row % sh.T + kTile <= sh.T;
}

// Rows [begin, end) of the flattened [G, rep, T]: out and lse. s: kTile · Tp values; o: kTile · hd ·
// kLanes values.
template <typename S>
SPIN_INLINE void forward_rows(const Shape& sh, const S* q, const S* kT, const S* vT, S* out, S* lse, int64_t begin,
                              int64_t end, S* s, S* o) {
  for (int64_t row = begin; row < end;) {
    const int64_t g = row / (sh.rep * sh.T);
    if (tile_fits(sh, row, end)) {
      forward_tile<kTile>(sh, g, row, q, kT, vT, out, lse, s, o);
      row += kTile;
    } else {
      forward_tile<1>(sh, g, row, q, kT, vT, out, lse, s, o);
      row += 1;
    }
  }
}

// K/V heads [begin, end): dq for their query rows, dkT and dvT (zero on entry). dqa: kTile · hd ·
// kLanes values.
template <typename S>
SPIN_INLINE void backward_heads(const Shape& sh, const S* q, const S* kT, const S* vT, const S* out, const S* lse,
                                const S* dout, S* dq, S* dkT, S* dvT, int64_t begin, int64_t end, S* dqa) {
  const int64_t rows_end = end * sh.rep * sh.T;
  for (int64_t row = begin * sh.rep * sh.T; row < rows_end;) {
    const int64_t g = row / (sh.rep * sh.T);
    if (tile_fits(sh, row, rows_end)) {
      backward_tile<kTile>(sh, g, row, q, kT, vT, out, lse, dout, dq, dkT, dvT, dqa);
      row += kTile;
    } else {
      backward_tile<1>(sh, g, row, q, kT, vT, out, lse, dout, dq, dkT, dvT, dqa);
      row += 1;
    }
  }
}

// The entry points: float32 compiled once per instruction set, float64 (the tests' reference
// precision) once.
SPIN_VECTOR_CLONES void forward_rows_f32(const Shape& sh, const float* q, const float* kT, const float* vT, float* out,
                                         float* lse, int64_t begin, int64_t end, float* s, float* o) {
  forward_rows(sh, q, kT, vT, out, lse, begin, end, s, o);
}
void forward_rows_f64(const Shape& sh, const double* q, const double* kT, const double* vT, double* out, double* lse,
                      int64_t begin, int64_t end, double* s, double* o) {
  forward_rows(sh, q, kT, vT, out, lse, begin, end, s, o);
}
SPIN_VECTOR_CLONES void backward_heads_f32(const Shape& sh, const float* q, const float* kT, const float* vT,
                                           const float* out, const float* lse, const float* dout, float* dq,
                                           float* dkT, float* dvT, int64_t begin, int64_t end, float* dqa) {
  backward_heads(sh, q, kT, vT, out, lse, dout, dq, dkT, dvT, begin, end, dqa);
}
void backward_heads_f64(const Shape& sh, const double* q, const double* kT, const double* vT, const double* out,
                        const double* lse, const double* dout, double* dq, double* dkT, double* dvT, int64_t begin,
                        int64_t end, double* dqa) {
  backward_heads(sh, q, kT, vT, out, lse, dout, dq, dkT, dvT, begin, end, dqa);
}

template <typename S>
struct Kernels;
template <>
struct Kernels<float> {
  static constexpr auto forward = forward_rows_f32;
  static constexpr auto backward = backward_heads_f32;
};
template <>
struct Kernels<double> {
  static constexpr auto forward = forward_rows_f64;
  static constexpr auto backward = backward_heads_f64;
};

// f(S{}) with S the compute type of `t`: double for float64, float for every other dtype.
template <typename F>
void with_compute_type(const torch::Tensor& t, F&& f) {
  if (t.scalar_type() == torch::kFloat64)
    f(double{});
  else
    f(float{});
}

// [B, kv_heads, T, hd] -> [G, hd, Tp] in `compute`, zero from T on.
torch::Tensor key_major(const torch::Tensor& x, const Shape& sh, torch::ScalarType compute) {
  torch::Tensor t = torch::zeros({sh.G, sh.hd, sh.Tp}, x.options().dtype(compute));
  t.narrow(2, 0, sh.T).copy_(x.reshape({sh.G, sh.T, sh.hd}).transpose(1, 2));
  return t;
}

struct RowAttentionFunction : torch::autograd::Function<RowAttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t window) {
    const int64_t B = q.size(0), nh = q.size(1), nkv = k.size(1), T = q.size(2), hd = q.size(3);
    const Shape sh{B * nkv, nh / nkv, T, hd, window < T ? window : 0};
    const auto compute = q.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    const torch::Tensor qg = q.to(compute).reshape({sh.G, sh.rep, T, hd}).contiguous();
    const torch::Tensor kT = key_major(k, sh, compute), vT = key_major(v, sh, compute);
    torch::Tensor out = torch::empty_like(qg), lse = torch::empty({sh.G, sh.rep, T}, qg.options());
    // Row i costs i + 1 keys: chunks of whole heads keep the threads' shares equal.
    at::parallel_for(0, sh.G * sh.rep * T, T, [&](int64_t begin, int64_t end) {
      with_compute_type(qg, [&](auto zero) {
        using S = decltype(zero);
        std::vector<S> s(kTile * sh.Tp), o(kTile * sh.hd * kLanes);
        Kernels<S>::forward(sh, qg.data_ptr<S>(), kT.data_ptr<S>(), vT.data_ptr<S>(), out.data_ptr<S>(),
                            lse.data_ptr<S>(), begin, end, s.data(), o.data());
      });
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
      with_compute_type(qg, [&](auto zero) {
        using S = decltype(zero);
        std::vector<S> dqa(kTile * sh.hd * kLanes);
        Kernels<S>::backward(sh, qg.data_ptr<S>(), kT.data_ptr<S>(), vT.data_ptr<S>(), out.data_ptr<S>(),
                             lse.data_ptr<S>(), dout.data_ptr<S>(), dq.data_ptr<S>(), dkT.data_ptr<S>(),
                             dvT.data_ptr<S>(), begin, end, dqa.data());
      });
    });
    const auto dtype = torch::ScalarType(ctx->saved_data["dtype"].toInt());
    const int64_t B = grads[0].size(0), nkv = sh.G / B;
    auto keys_back = [&](const torch::Tensor& t) {
      return t.narrow(2, 0, sh.T).transpose(1, 2).to(dtype).reshape({B, nkv, sh.T, sh.hd});
    };
    return {dq.to(dtype).view({B, nkv * sh.rep, sh.T, sh.hd}), keys_back(dkT), keys_back(dvT), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    int64_t window) {
  return RowAttentionFunction::apply(q, k, v, window);
}

}  // namespace spin
