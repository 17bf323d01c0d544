// Hadamard constructions (Sylvester, Paley I/II over GF(p^m), Williamson 156/172) and the fast transform.
#include "src/kernels/hadamard.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "src/base/check.h"

namespace spin {
namespace {

// ---------------------------------------------------------------------------------------------
// Finite fields GF(p^m). An element is its index e = c_0 + c_1 p + ... + c_{m-1} p^{m-1}, i.e. the
// polynomial c_0 + c_1 x + ... modulo a monic irreducible f of degree m.

struct PrimePower {
  int64_t p = 0, m = 0;
};

// q = p^m with p prime, or m = 0 when q is not a prime power.
PrimePower prime_power(int64_t q) {
  if (q < 2) return {};
  int64_t p = q;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) {
      p = d;
      break;
    }
  int64_t m = 0;
  while (q % p == 0) q /= p, ++m;
  return q == 1 ? PrimePower{p, m} : PrimePower{};
}

using Poly = std::vector<int64_t>;  // coefficients, lowest degree first

// Remainder of a modulo g over GF(p) (g's leading coefficient is 1).
Poly poly_mod(Poly a, const Poly& g, int64_t p) {
  const size_t dg = g.size() - 1;
  for (size_t k = a.size(); k-- > dg;) {
    const int64_t c = a[k] % p;
    if (c == 0) continue;
    for (size_t i = 0; i <= dg; ++i) a[k - dg + i] = ((a[k - dg + i] - c * g[i]) % p + p) % p;
  }
  a.resize(dg);
  return a;
}

// The monic polynomial of degree d whose lower coefficients are the base-p digits of code.
Poly monic(int64_t code, int64_t d, int64_t p) {
  Poly f(d + 1, 0);
  for (int64_t i = 0; i < d; ++i, code /= p) f[i] = code % p;
  f[d] = 1;
  return f;
}

// First monic irreducible polynomial of degree m over GF(p) (no monic factor of degree <= m/2).
Poly irreducible(int64_t p, int64_t m) {
  int64_t count = 1;
  for (int64_t i = 0; i < m; ++i) count *= p;
  for (int64_t code = 0; code < count; ++code) {
    const Poly f = monic(code, m, p);
    bool reducible = false;
    for (int64_t d = 1; 2 * d <= m && !reducible; ++d) {
      int64_t nd = 1;
      for (int64_t i = 0; i < d; ++i) nd *= p;
      for (int64_t gc = 0; gc < nd && !reducible; ++gc) {
        const Poly r = poly_mod(f, monic(gc, d, p), p);
        reducible = std::all_of(r.begin(), r.end(), [](int64_t c) { return c == 0; });
      }
    }
    if (!reducible) return f;
  }
  fail("GF(", p, "^", m, "): no irreducible polynomial found");
}

// Quadratic character chi(a - b) of GF(q) for all element pairs: table[a * q + b] in {0, 1, -1}.
std::vector<int8_t> jacobsthal(int64_t q) {
  const PrimePower pm = prime_power(q);
  const int64_t p = pm.p, m = pm.m;
  const Poly f = irreducible(p, m);
  auto digits = [&](int64_t e) {
    Poly c(m);
    for (int64_t i = 0; i < m; ++i, e /= p) c[i] = e % p;
    return c;
  };
  auto index = [&](const Poly& c) {
    int64_t e = 0;
    for (int64_t i = m; i-- > 0;) e = e * p + c[i];
    return e;
  };
  std::vector<int8_t> chi(q, -1);
  chi[0] = 0;
  for (int64_t y = 1; y < q; ++y) {
    const Poly c = digits(y);
    Poly sq(2 * m - 1, 0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) sq[i + j] = (sq[i + j] + c[i] * c[j]) % p;
    chi[index(poly_mod(sq, f, p))] = 1;
  }
  std::vector<Poly> d(q);
  for (int64_t e = 0; e < q; ++e) d[e] = digits(e);
  std::vector<int8_t> table(q * q);
  Poly diff(m);
  for (int64_t a = 0; a < q; ++a)
    for (int64_t b = 0; b < q; ++b) {
      for (int64_t i = 0; i < m; ++i) diff[i] = (d[a][i] - d[b][i] + p) % p;
      table[a * q + b] = chi[index(diff)];
    }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Base matrices of order K with entries ±1 (float64, unnormalised).

bool paley1(int64_t k) { return k >= 4 && prime_power(k - 1).m > 0 && (k - 1) % 4 == 3; }
bool paley2(int64_t k) { return k >= 4 && k % 2 == 0 && prime_power(k / 2 - 1).m > 0 && (k / 2 - 1) % 4 == 1; }

// First rows of the symmetric circulant blocks A, B, C, D of Williamson matrices, read off the
// order-156 and order-172 Hadamard matrices of N. J. A. Sloane's library of Hadamard matrices as
// reproduced in QuaRot (github.com/spcl/QuaRot, fake_quant/hadamard_utils.py, get_had156 and
// get_had172), whose 4 x 4 block structure is exactly the Williamson array below.
// Order 156 = 4 * 39 and 172 = 4 * 43; tests verify H Hᵀ = K I exactly.
struct Williamson {
  int64_t order;
  const char* a;
  const char* b;
  const char* c;
  const char* d;
};
constexpr Williamson kWilliamson[] = {
    {156, "+++--+-+-----+--++----++--+-----+-+--++", "++++---+--++----+-+--+-+----++--+---+++",
     "+++--++-+---+-+--+----+--+-+---+-++--++", "+---++-+-+-----+++-++-+++-----+-+-++---"},
    {172, "+---++--++++-+-+++-++--++-+++-+-++++--++---", "++-++++++----+-+--++-++-++--+-+----++++++-+",
     "+++-+-++--+-+-++++-+----+-++++-+-+--++-+-++", "++---++++-+--+--++--------++--+--+-++++---+"},
};

const Williamson* williamson(int64_t k) {
  for (const Williamson& w : kWilliamson)
    if (w.order == k) return &w;
  return nullptr;
}

bool base_supported(int64_t k) { return k == 1 || paley1(k) || paley2(k) || williamson(k) != nullptr; }

torch::Tensor paley1_matrix(int64_t k) {  // I + S, S = [[0, 1ᵀ], [-1, Q]] skew, Q the Jacobsthal matrix
  const int64_t q = k - 1;
  const std::vector<int8_t> chi = jacobsthal(q);
  torch::Tensor h = torch::empty({k, k}, torch::kFloat64);
  auto a = h.accessor<double, 2>();
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      a[i][j] = i == j ? 1.0 : i == 0 ? 1.0 : j == 0 ? -1.0 : double(chi[(i - 1) * q + (j - 1)]);
  return h;
}

torch::Tensor paley2_matrix(int64_t k) {  // conference C = [[0, 1ᵀ], [1, Q]]: 0 -> [[1,-1],[-1,-1]], ±1 -> ±[[1,1],[1,-1]]
  const int64_t q = k / 2 - 1, c = q + 1;
  const std::vector<int8_t> chi = jacobsthal(q);
  torch::Tensor h = torch::empty({k, k}, torch::kFloat64);
  auto a = h.accessor<double, 2>();
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const int v = i == j ? 0 : (i == 0 || j == 0) ? 1 : chi[(i - 1) * q + (j - 1)];
      const double blk[2][2] = {{v == 0 ? 1.0 : v, v == 0 ? -1.0 : v}, {v == 0 ? -1.0 : v, v == 0 ? -1.0 : -v}};
      for (int r = 0; r < 2; ++r)
        for (int s = 0; s < 2; ++s) a[2 * i + r][2 * j + s] = blk[r][s];
    }
  return h;
}

torch::Tensor williamson_matrix(const Williamson& w) {
  // [[A, B, C, D], [-B, A, -D, C], [-C, D, A, -B], [-D, -C, B, A]], each block circulant.
  const char* rows[4] = {w.a, w.b, w.c, w.d};
  const int which[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  const int sign[4][4] = {{1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
  const int64_t m = w.order / 4;
  torch::Tensor h = torch::empty({w.order, w.order}, torch::kFloat64);
  auto a = h.accessor<double, 2>();
  for (int bi = 0; bi < 4; ++bi)
    for (int bj = 0; bj < 4; ++bj)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < m; ++c) {
          const char e = rows[which[bi][bj]][(c - r + m) % m];
          a[bi * m + r][bj * m + c] = sign[bi][bj] * (e == '+' ? 1.0 : -1.0);
        }
  return h;
}

torch::Tensor base_matrix(int64_t k) {
  if (k == 1) return torch::ones({1, 1}, torch::kFloat64);
  if (paley1(k)) return paley1_matrix(k);
  if (paley2(k)) return paley2_matrix(k);
  return williamson_matrix(*williamson(k));
}

// Sylvester matrix of order p (a power of two): entry (-1)^popcount(i & j).
torch::Tensor sylvester_matrix(int64_t p) {
  torch::Tensor h = torch::empty({p, p}, torch::kFloat64);
  double* d = h.data_ptr<double>();
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < p; ++j) d[i * p + j] = __builtin_popcountll(uint64_t(i & j)) % 2 ? -1.0 : 1.0;
  return h;
}

// ---------------------------------------------------------------------------------------------

struct Factors {
  int64_t base = 0, pow2 = 0;  // n = base * pow2; base == 0 when unsupported
};

Factors factor(int64_t n) {
  if (n < 1) return {};
  int64_t pow2 = 1;
  while (n % (2 * pow2) == 0) pow2 *= 2;
  for (; pow2 >= 1; pow2 /= 2)
    if (base_supported(n / pow2)) return {n / pow2, pow2};
  return {};
}

Factors factor_or_fail(int64_t n) {
  SPIN_CHECK(n >= 1, "Hadamard size must be positive, got n = ", n);
  const Factors f = factor(n);
  SPIN_CHECK(f.base > 0, "no Hadamard construction for size n = ", n,
             " (n = K * 2^k needs a base K from Paley I/II or Williamson 156/172); use a block-diagonal Hadamard ",
             "with block size ", largest_hadamard_divisor(n), " instead");
  return f;
}

// Normalised H / sqrt(order) with the given dtype and device, cached: the base of order k (sylvester false)
// or the Sylvester matrix of order k (sylvester true).
torch::Tensor cached_matrix(bool sylvester, int64_t k, const torch::TensorOptions& opt) {
  static std::mutex mu;
  static std::map<std::tuple<bool, int64_t, int, std::string>, torch::Tensor> cache;
  const auto key = std::make_tuple(sylvester, k, int(opt.dtype().toScalarType()), opt.device().str());
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    const torch::Tensor h = sylvester ? sylvester_matrix(k) : base_matrix(k);
    it = cache.emplace(key, (h / std::sqrt(double(k))).to(opt)).first;
  }
  return it->second;
}

// Largest radix of one fast Walsh–Hadamard stage: a stage is one GEMM with a Sylvester matrix of this order.
constexpr int64_t kRadix = 64;

// Normalised Walsh–Hadamard transform x · H_p (Sylvester, symmetric) of every row of x [m, p], p a power of two.
// Radix-kRadix stages: with p = a * b (b <= kRadix) and X = x as [a, b], x · (H_a ⊗ H_b) = H_a X H_b, so
// one GEMM with H_b on the last axis, then the transform of order a on the transposed [b, a] rows.
torch::Tensor fwht(const torch::Tensor& x) {
  const int64_t m = x.size(0), p = x.size(1);
  if (p == 1) return x;
  const int64_t b = std::min(p, kRadix), a = p / b;
  torch::Tensor y = x.reshape({m * a, b}).matmul(cached_matrix(true, b, x.options()));  // [m * a, b]
  if (a == 1) return y;
  y = fwht(y.view({m, a, b}).transpose(1, 2).reshape({m * b, a}));  // [m * b, a]
  return y.view({m, b, a}).transpose(1, 2).reshape({m, p});
}

}  // namespace

bool hadamard_supported(int64_t n) { return factor(n).base > 0; }

int64_t largest_hadamard_divisor(int64_t n) {
  for (int64_t d = n / 2; d > 1; --d)
    if (n % d == 0 && hadamard_supported(d)) return d;
  return 1;
}

torch::Tensor hadamard_matrix(int64_t n) {
  const Factors f = factor_or_fail(n);
  return torch::kron(base_matrix(f.base), sylvester_matrix(f.pow2)) / std::sqrt(double(n));
}

torch::Tensor block_hadamard_matrix(int64_t n, int64_t block) {
  SPIN_CHECK(block >= 1 && n % block == 0, "block-diagonal Hadamard: block size ", block, " does not divide n = ", n);
  return torch::kron(torch::eye(n / block, torch::kFloat64), hadamard_matrix(block));
}

torch::Tensor apply_hadamard(const torch::Tensor& x, int64_t block) {
  SPIN_CHECK(x.dim() >= 1 && x.is_floating_point(), "apply_hadamard: needs a floating-point tensor [..., n], got ",
             x.scalar_type(), " with ", x.dim(), " dimensions");
  const int64_t n = x.size(-1);
  if (block == 0) block = n;
  SPIN_CHECK(block >= 1 && n % block == 0, "apply_hadamard: block size ", block, " does not divide n = ", n);
  const Factors f = factor_or_fail(block);
  if (x.numel() == 0) return x.clone();
  const auto work = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  // Each block of the last dimension is X [K, P]: Y = H_Kᵀ X H_P, H_P by the fast transform on [rows * K, P].
  torch::Tensor y = fwht(x.to(work).reshape({-1, f.pow2}));
  if (f.base > 1) {
    y = y.view({-1, f.base, f.pow2}).transpose(1, 2).reshape({-1, f.base});  // [rows * P, K]
    y = y.matmul(cached_matrix(false, f.base, y.options())).view({-1, f.pow2, f.base}).transpose(1, 2);
  }
  return y.reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace spin
