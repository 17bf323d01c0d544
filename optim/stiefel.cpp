// Stiefel-manifold geometry and retractions; see stiefel.h.
#include "optim/stiefel.h"

#include <limits>

#include "src/base/check.h"
#include "src/base/names.h"

namespace spin::optim {

torch::Tensor sym(const torch::Tensor& A) { return (A + A.t()) * 0.5; }
torch::Tensor skew(const torch::Tensor& A) { return (A - A.t()) * 0.5; }

torch::Tensor project_tangent(const torch::Tensor& X, const torch::Tensor& G) {
  return G - X.mm(sym(X.t().mm(G)));
}

torch::Tensor cayley_generator(const torch::Tensor& X, const torch::Tensor& M) {
  if (X.size(0) == X.size(1)) return skew(M.mm(X.t()));  // X Xᵀ = I: one product instead of three
  torch::Tensor XtM = X.t().mm(M);                                    // [p,p]
  torch::Tensor W_hat = M.mm(X.t()) - X.mm(XtM.mm(X.t())) * 0.5;     // [n,n]
  return W_hat - W_hat.t();
}

double norm_1(const torch::Tensor& W) { return W.abs().sum(0).max().item<double>(); }

namespace {
const std::pair<const char*, Retraction> kRetractions[] = {
    {"cayley", Retraction::cayley_iterative}, {"cayley_exact", Retraction::cayley_exact}, {"qr", Retraction::qr}};
}  // namespace

Retraction parse_retraction(const std::string& name, const std::string& what) {
  return from_name(kRetractions, name, what, "retraction");
}

const char* retraction_name(Retraction r) { return name_of(kRetractions, r); }

torch::Tensor cayley_retract(const torch::Tensor& X, const torch::Tensor& W, double alpha, int iterations) {
  SPIN_CHECK(iterations >= 1, "cayley_retract: iterations must be >= 1, got ", iterations);
  torch::Tensor WX = W.mm(X);
  torch::Tensor Y = X + alpha * WX;
  for (int i = 0; i < iterations; ++i) Y = X + (0.5 * alpha) * (WX + W.mm(Y));
  return Y;
}

torch::Tensor cayley_retract_exact(const torch::Tensor& X, const torch::Tensor& W, double alpha) {
  torch::Tensor I = torch::eye(W.size(0), W.options());
  torch::Tensor half = (0.5 * alpha) * W;
  return torch::linalg::solve(I - half, X + half.mm(X), /*left=*/true);
}

torch::Tensor qr_orthonormalize(const torch::Tensor& Y) {
  auto [Q, R] = torch::linalg::qr(Y, "reduced");
  torch::Tensor signs = torch::sign(R.diagonal());
  signs = torch::where(signs == 0, torch::ones_like(signs), signs);
  return Q * signs.unsqueeze(0);
}

double step_size(const torch::Tensor& W, double lr, const RetractionOptions& opt) {
  return std::min(lr, 2.0 * opt.q / (norm_1(W) + opt.eps));
}

torch::Tensor stiefel_step(const torch::Tensor& X, const torch::Tensor& W, double lr,
                           const RetractionOptions& opt, int64_t step) {
  double alpha = step_size(W, lr, opt);
  torch::Tensor Y;
  switch (opt.kind) {
    case Retraction::cayley_iterative: Y = cayley_retract(X, W, alpha, opt.iterations); break;
    case Retraction::cayley_exact: Y = cayley_retract_exact(X, W, alpha); break;
    case Retraction::qr: return qr_orthonormalize(X + alpha * W.mm(X));
  }
  bool periodic = opt.reorth_every > 0 && step % opt.reorth_every == 0;
  bool drifted = opt.reorth_threshold_eps > 0 &&
                 orthogonality_error(Y) > opt.reorth_threshold_eps * machine_epsilon(Y.scalar_type());
  return periodic || drifted ? qr_orthonormalize(Y) : Y;
}

double machine_epsilon(torch::ScalarType dtype) {
  SPIN_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat64, "machine_epsilon: expected float32 or float64, got ", dtype);
  return dtype == torch::kFloat32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
}

double orthogonality_error(const torch::Tensor& R) {
  SPIN_CHECK(R.dim() == 2, "orthogonality_error: expected a matrix, got ", R.dim(), " dimensions");
  torch::Tensor Rd = R.detach().to(torch::kFloat64);
  torch::Tensor I = torch::eye(Rd.size(1), Rd.options());
  return (Rd.t().mm(Rd) - I).abs().max().item<double>();
}

torch::Tensor nearest_orthogonal(const torch::Tensor& R) {
  auto [u, s, vh] = torch::linalg::svd(R.detach().to(torch::kCPU, torch::kFloat64), false, c10::nullopt);
  return u.matmul(vh);
}

}  // namespace spin::optim
