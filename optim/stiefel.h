// Geometry of the Stiefel manifold St(n, p) = { X in R^{n x p} : X^T X = I_p }, p <= n, and the
// retractions the Stiefel optimizers step with (Li, Li & Todorovic, ICLR 2020).
//
// A step moves X along the tangent direction W X, where W (n x n) is skew-symmetric; the Cayley
// transform Y = (I - a/2 W)^{-1} (I + a/2 W) X keeps Y^T Y = X^T X exactly (and never changes
// det X for square X). Matrices are float32 or float64, on any device.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace spin::optim {

// (A + A^T)/2 and (A - A^T)/2 of a square matrix.
torch::Tensor sym(const torch::Tensor& A);
torch::Tensor skew(const torch::Tensor& A);

// Projection of an ambient matrix G [n,p] onto the tangent space at X [n,p] (Euclidean metric):
// G - X sym(X^T G). Its result Z satisfies X^T Z + Z^T X = 0.
torch::Tensor project_tangent(const torch::Tensor& X, const torch::Tensor& G);

// The skew-symmetric generator [n,n] of an ambient direction M [n,p] at X [n,p]:
//   W = Ŵ - Ŵ^T,  Ŵ = M X^T - 1/2 X (X^T M X^T).
// W X is the projection of M onto the tangent space under the canonical metric. For square X (a
// rotation, X Xᵀ = I) this is W = skew(M Xᵀ) = (M Xᵀ - X Mᵀ)/2, computed with one product.
torch::Tensor cayley_generator(const torch::Tensor& X, const torch::Tensor& M);

// Matrix 1-norm (max absolute column sum); for a skew W it bounds the spectral norm from above.
double norm_1(const torch::Tensor& W);

// How a step X -> Y along W X with step size alpha is retracted onto the manifold.
enum class Retraction {
  cayley_iterative,  // fixed-point iterations Y <- X + alpha/2 W (X + Y), from Y = X + alpha W X
  cayley_exact,      // Y = (I - alpha/2 W)^{-1} (I + alpha/2 W) X by a linear solve
  qr,                // Y = qf(X + alpha W X), Q factor with positive diag(R)
};

// "cayley", "cayley_exact" or "qr"; throws spin::Error naming `what` otherwise.
Retraction parse_retraction(const std::string& name, const std::string& what);
const char* retraction_name(Retraction r);

// Settings shared by the Stiefel optimizers.
struct RetractionOptions {
  Retraction kind = Retraction::cayley_iterative;
  int iterations = 5;            // fixed-point iterations (cayley_iterative only), >= 1
  double q = 0.5;                // step cap: alpha = min(lr, 2q / (||W||_1 + eps))
  double eps = 1e-8;
  int64_t reorth_every = 0;      // QR re-orthonormalise every k-th step of a matrix (0: never)
  // ... and whenever orthogonality_error exceeds this many machine epsilons of the dtype
  // (float32: 64 * 1.19e-7 = 7.6e-6, float64: 64 * 2.2e-16 = 1.4e-14); 0: never. The check costs
  // one p x n x p product per step; a fresh QR factor is at about 5 epsilons.
  double reorth_threshold_eps = 64;
};

// Cayley transform of X [n,p] along the skew W [n,n] with step alpha, by fixed-point iterations
// (error shrinks by a factor ||alpha/2 W||_2 per iteration) or exactly by a linear solve.
torch::Tensor cayley_retract(const torch::Tensor& X, const torch::Tensor& W, double alpha, int iterations);
torch::Tensor cayley_retract_exact(const torch::Tensor& X, const torch::Tensor& W, double alpha);

// Q factor of the reduced QR of Y [n,p] with the signs chosen so that diag(R) > 0.
torch::Tensor qr_orthonormalize(const torch::Tensor& Y);

// Moves X one step along W X: alpha = step_size(W, lr, opt), retraction opt.kind, then the
// periodic / threshold QR re-orthonormalisation for the matrix's `step` (1-based).
torch::Tensor stiefel_step(const torch::Tensor& X, const torch::Tensor& W, double lr,
                           const RetractionOptions& opt, int64_t step);
double step_size(const torch::Tensor& W, double lr, const RetractionOptions& opt);

// 2^-23 for float32, 2^-52 for float64.
double machine_epsilon(torch::ScalarType dtype);

// The orthogonal matrix nearest to R [n,n] in the Frobenius norm: the polar factor U·Vᵀ of its SVD,
// float64 on the CPU. Removes the float32 drift of a learned rotation before it is fused and saved.
torch::Tensor nearest_orthogonal(const torch::Tensor& R);

// max |R^T R - I| for R [n,p], computed in float64 so that it measures the stored matrix and
// not the rounding of the product.
double orthogonality_error(const torch::Tensor& R);

}  // namespace spin::optim
