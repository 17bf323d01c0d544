// Hadamard constructions (exact integer checks), the fast transform against dense matrices, autograd, errors.
#include <gtest/gtest.h>

#include <cmath>

#include "src/base/check.h"
#include "src/kernels/hadamard.h"

namespace spin {
namespace {

torch::Tensor f64(std::initializer_list<int64_t> shape, int64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape, torch::kFloat64);
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// sqrt(n) H must be a ±1 matrix M with M Mᵀ = n I exactly. Entries are small integers, so the float64
// product is exact integer arithmetic (every partial sum is an integer below 2^53).
void expect_exact_hadamard(int64_t n) {
  SCOPED_TRACE("n = " + std::to_string(n));
  const torch::Tensor h = hadamard_matrix(n);
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{n, n}));
  ASSERT_EQ(h.scalar_type(), torch::kFloat64);
  const torch::Tensor m = (h * std::sqrt(double(n))).round();
  EXPECT_LT(max_abs(h * std::sqrt(double(n)) - m), 1e-12);
  EXPECT_TRUE(m.abs().eq(1).all().item<bool>()) << "entries are not ±1/sqrt(n)";
  EXPECT_TRUE(m.matmul(m.t()).equal(n * torch::eye(n, torch::kFloat64))) << "M Mᵀ != n I";
}

TEST(Hadamard, ExactForSylvesterPaleyAndWilliamsonOrders) {
  // Sylvester; Paley I over GF(p) (12, 20, 44, 60, 108, 140) and GF(27) (28); Paley II over GF(p)
  // (36, 148, 924) and GF(25) (52); Williamson (156, 172); and Kronecker products with 2^k.
  for (int64_t n : {1, 2, 4, 8, 64, 128, 12, 20, 28, 36, 44, 52, 60, 108, 140, 148, 156, 172, 924, 24, 56, 344, 312, 1024})
    expect_exact_hadamard(n);
}

TEST(Hadamard, RealModelSizesAreSupported) {
  for (int64_t n : {11008, 14336, 5632, 8960, 18944, 29568, 13824, 172, 64, 128, 8, 2048, 4096, 3584, 5120, 8192})
    EXPECT_TRUE(hadamard_supported(n)) << n;
}

TEST(Hadamard, NotSymmetricSoTransposeMistakesShow) {
  // Paley I (12, 28) and Williamson (156, 172) bases are not symmetric, nor is any size built on them.
  for (int64_t n : {12, 28, 172, 156, 11008 / 16})  // entries differ by 2 / sqrt(n) where H != Hᵀ
    EXPECT_GT(max_abs(hadamard_matrix(n) - hadamard_matrix(n).t()) * std::sqrt(double(n)), 1.9) << n;
  // Sylvester and Paley II matrices are symmetric.
  for (int64_t n : {64, 36, 148}) EXPECT_TRUE(hadamard_matrix(n).equal(hadamard_matrix(n).t())) << n;
}

TEST(Hadamard, FastTransformMatchesDense) {
  int64_t seed = 0;
  for (int64_t n : {1, 8, 64, 12, 28, 172, 156, 924, 2752, 3584}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const torch::Tensor x = f64({3, n}, ++seed);
    EXPECT_LT(max_abs(apply_hadamard(x) - x.matmul(hadamard_matrix(n))), 1e-12);
    const torch::Tensor x32 = x.to(torch::kFloat32);
    const torch::Tensor y32 = apply_hadamard(x32);
    EXPECT_EQ(y32.scalar_type(), torch::kFloat32);
    EXPECT_LT(max_abs(y32.to(torch::kFloat64) - x.matmul(hadamard_matrix(n))), 1e-5);
  }
}

TEST(Hadamard, LowPrecisionAndBatchShapes) {
  const int64_t n = 172 * 4;
  const torch::Tensor x = f64({2, 3, n}, 7);
  const torch::Tensor ref = x.matmul(hadamard_matrix(n));
  for (auto dtype : {torch::kBFloat16, torch::kFloat16}) {
    const torch::Tensor xl = x.to(dtype);
    const torch::Tensor y = apply_hadamard(xl);
    EXPECT_EQ(y.scalar_type(), dtype);
    EXPECT_EQ(y.sizes(), x.sizes());
    // Reference from the rounded input, so only the output rounding (bf16: 2^-8 relative) remains.
    const torch::Tensor ref_l = xl.to(torch::kFloat64).matmul(hadamard_matrix(n));
    EXPECT_LT(max_abs(y.to(torch::kFloat64) - ref_l), 0.02 * max_abs(ref));
  }
}

// Sizes too large for a dense check: compare with the Kronecker factors, Y = H_Kᵀ X H_P for X = x as [K, P],
// and check that inner products are preserved (H orthogonal) and that rows of H have entries ±1/sqrt(n).
TEST(Hadamard, RealIntermediateSizesMatchKroneckerFactors) {
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{172, 64},  {28, 512},  {44, 128}, {140, 64},
                                                          {148, 128}, {924, 32}, {108, 128}, {20, 256}};
  int64_t seed = 100;
  for (auto [k, p] : sizes) {
    const int64_t n = k * p;
    SCOPED_TRACE("n = " + std::to_string(n));
    const torch::Tensor x = f64({2, n}, ++seed);
    const torch::Tensor y = apply_hadamard(x);
    const torch::Tensor ref = torch::matmul(hadamard_matrix(k).t(), x.view({2, k, p})).matmul(hadamard_matrix(p));
    EXPECT_LT(max_abs(y - ref.view({2, n})), 1e-10);
    EXPECT_LT(max_abs(y.matmul(y.t()) - x.matmul(x.t())), 1e-8);
    torch::Tensor basis = torch::zeros({5, n}, torch::kFloat64);  // e_i for i = 0, n/5, 2n/5, ...
    for (int64_t r = 0; r < 5; ++r) basis[r][r * (n / 5)] = 1.0;
    const torch::Tensor rows = apply_hadamard(basis);
    EXPECT_LT(max_abs(rows.abs() * std::sqrt(double(n)) - 1), 1e-9);
  }
}

TEST(Hadamard, BlockDiagonal) {
  const torch::Tensor b = block_hadamard_matrix(96, 32);
  EXPECT_LT(max_abs(b.matmul(b.t()) - torch::eye(96, torch::kFloat64)), 1e-12);
  EXPECT_TRUE(b.index({torch::indexing::Slice(0, 32), torch::indexing::Slice(32, 96)}).eq(0).all().item<bool>());
  EXPECT_TRUE(b.index({torch::indexing::Slice(64, 96), torch::indexing::Slice(64, 96)}).equal(hadamard_matrix(32)));
  const torch::Tensor x = f64({4, 2 * 172 * 3}, 3);
  EXPECT_LT(max_abs(apply_hadamard(x, 344) - x.matmul(block_hadamard_matrix(2 * 172 * 3, 344))), 1e-12);
  EXPECT_THROW(block_hadamard_matrix(96, 40), Error);
  EXPECT_THROW(apply_hadamard(x, 5), Error);
}

TEST(Hadamard, GradientIsGTimesHTransposed) {
  const int64_t n = 172;
  const torch::Tensor w = f64({2, n}, 12);
  for (int64_t size : {n, int64_t{28 * 128}}) {  // base only; base and two radix-64 Walsh–Hadamard stages
    const torch::Tensor h = hadamard_matrix(size);
    const torch::Tensor x = f64({2, size}, 11).requires_grad_(true);
    const torch::Tensor g = f64({2, size}, 15);
    (apply_hadamard(x) * g).sum().backward();
    EXPECT_LT(max_abs(x.grad() - g.matmul(h.t())), 1e-12) << size;
    EXPECT_GT(max_abs(x.grad() - g.matmul(h)), 0.01) << size;  // H not symmetric: the test tells H from Hᵀ
  }

  // Central differences of a nonlinear loss through the transform (float64, block option).
  const torch::Tensor x2 = f64({1, 2 * 12}, 13).requires_grad_(true);
  auto loss = [&](const torch::Tensor& v) { return (apply_hadamard(v, 12).pow(3) * w.narrow(1, 0, 24)).sum(); };
  loss(x2).backward();
  const double eps = 1e-6;
  for (int64_t i : {0, 5, 13, 23}) {
    torch::NoGradGuard guard;
    torch::Tensor plus = x2.detach().clone(), minus = x2.detach().clone();
    plus[0][i] += eps;
    minus[0][i] -= eps;
    const double fd = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * eps);
    EXPECT_NEAR(x2.grad()[0][i].item<double>(), fd, 1e-6) << "coordinate " << i;
  }

  const torch::Tensor xb = f64({2, n}, 14).to(torch::kBFloat16).requires_grad_(true);
  apply_hadamard(xb).sum().backward();
  ASSERT_TRUE(xb.grad().defined());
  EXPECT_EQ(xb.grad().scalar_type(), torch::kBFloat16);
}

TEST(Hadamard, UnsupportedSizeSuggestsBlockSize) {
  EXPECT_FALSE(hadamard_supported(188));  // 4 * 47: no Paley or table base
  EXPECT_FALSE(hadamard_supported(6));
  EXPECT_FALSE(hadamard_supported(0));
  EXPECT_EQ(largest_hadamard_divisor(188), 4);
  EXPECT_EQ(largest_hadamard_divisor(172 * 47), 172);
  try {
    hadamard_matrix(188);
    FAIL() << "no error for n = 188";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("n = 188"), std::string::npos) << msg;
    EXPECT_NE(msg.find("block size 4"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_THROW(apply_hadamard(torch::ones({2, 188})), Error);
  EXPECT_THROW(apply_hadamard(torch::ones({2, 8}, torch::kInt64)), Error);
  EXPECT_EQ(apply_hadamard(torch::ones({0, 172})).sizes(), (std::vector<int64_t>{0, 172}));
  const torch::Tensor x = f64({2, 188}, 5);
  EXPECT_LT(max_abs(apply_hadamard(x, 4) - x.matmul(block_hadamard_matrix(188, 4))), 1e-12);
}

TEST(Hadamard, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Tensor x = f64({3, 172 * 16}, 21);
  const torch::Tensor y = apply_hadamard(x.to(torch::kCUDA));
  EXPECT_TRUE(y.device().is_cuda());
  EXPECT_LT(max_abs(y.cpu() - apply_hadamard(x)), 1e-10);
}

}  // namespace
}  // namespace spin
