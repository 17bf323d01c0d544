// Tests of the Stiefel geometry and of Cayley SGD / Cayley Adam through HybridOptimizer:
// orthogonality over many steps, Procrustes (both determinant cases), Brockett descent,
// tangent / normal / zero gradients, and NaN/inf gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "optim/hybrid.h"
#include "src/base/check.h"

namespace so = spin::optim;

namespace {

torch::Tensor random_orthonormal(int64_t n, int64_t p, torch::Dtype dtype, int64_t seed) {
  torch::manual_seed(seed);
  return so::qr_orthonormalize(torch::randn({n, p}, torch::kFloat64)).to(dtype);
}

// Runs `steps` optimizer steps on a fresh copy of R0 with gradients from grad_fn(R).
template <typename GradFn>
torch::Tensor run_steps(so::HybridOptimizer& opt, torch::Tensor& R, int steps, GradFn grad_fn) {
  for (int s = 0; s < steps; ++s) {
    R.mutable_grad() = grad_fn(R.detach());
    opt.step();
  }
  return R.detach();
}

}  // namespace

TEST(Stiefel, TangentProjectionAndGenerator) {
  for (auto [n, p] : {std::pair{16, 16}, std::pair{16, 5}}) {
    torch::Tensor X = random_orthonormal(n, p, torch::kFloat64, 1);
    torch::Tensor G = torch::randn({n, p}, torch::kFloat64);
    torch::Tensor Z = so::project_tangent(X, G);
    EXPECT_LT((X.t().mm(Z) + Z.t().mm(X)).abs().max().item<double>(), 1e-13);
    // Projecting twice changes nothing.
    EXPECT_LT((so::project_tangent(X, Z) - Z).abs().max().item<double>(), 1e-13);
    torch::Tensor W = so::cayley_generator(X, G);
    EXPECT_LT((W + W.t()).abs().max().item<double>(), 1e-13);
    // W X is tangent, and for a tangent direction the generator reproduces it: W(Z) X = Z.
    torch::Tensor WX = W.mm(X);
    EXPECT_LT((X.t().mm(WX) + WX.t().mm(X)).abs().max().item<double>(), 1e-13);
    if (n == p) {
      EXPECT_LT((so::cayley_generator(X, Z).mm(X) - Z).abs().max().item<double>(), 1e-13);
      // The square shortcut equals the general formula Ŵ - Ŵᵀ, Ŵ = G Xᵀ - 1/2 X (Xᵀ G Xᵀ).
      torch::Tensor W_hat = G.mm(X.t()) - 0.5 * X.mm(X.t().mm(G).mm(X.t()));
      EXPECT_LT((W - (W_hat - W_hat.t())).abs().max().item<double>(), 1e-13);
    }
    // Spectral norm <= 1-norm for skew matrices (the step cap relies on it).
    EXPECT_LE(torch::linalg::svdvals(W, c10::nullopt).max().item<double>(), so::norm_1(W) * (1 + 1e-12));
  }
}

TEST(Stiefel, IterativeCayleyConvergesToExact) {
  torch::Tensor X = random_orthonormal(32, 32, torch::kFloat64, 2);
  torch::Tensor W = so::cayley_generator(X, torch::randn({32, 32}, torch::kFloat64));
  double alpha = 0.5 / so::norm_1(W);  // ||alpha/2 W||_2 <= 0.25
  torch::Tensor exact = so::cayley_retract_exact(X, W, alpha);
  // Independent reference: (I - a/2 W)^{-1} (I + a/2 W) X with an explicit inverse.
  torch::Tensor I = torch::eye(32, torch::kFloat64);
  torch::Tensor ref = torch::linalg::inv(I - 0.5 * alpha * W).mm((I + 0.5 * alpha * W).mm(X));
  EXPECT_LT((exact - ref).abs().max().item<double>(), 1e-13);
  EXPECT_LT(so::orthogonality_error(exact), 1e-14);
  double previous = 1;
  for (int it = 1; it <= 8; ++it) {
    double err = (so::cayley_retract(X, W, alpha, it) - exact).abs().max().item<double>();
    EXPECT_LT(err, previous * 0.3) << "iterations " << it;  // contraction factor <= 0.25
    previous = err;
  }
  EXPECT_LT(previous, 1e-8);
}

TEST(Stiefel, QrOrthonormalizeHasPositiveDiagonal) {
  torch::manual_seed(3);
  torch::Tensor Y = torch::randn({12, 7}, torch::kFloat64);
  torch::Tensor Q = so::qr_orthonormalize(Y);
  EXPECT_LT(so::orthogonality_error(Q), 1e-14);
  torch::Tensor R = Q.t().mm(Y);  // upper triangular with positive diagonal
  EXPECT_GT(R.diagonal().min().item<double>(), 0);
  EXPECT_LT(torch::tril(R, -1).abs().max().item<double>(), 1e-12);
}

TEST(Stiefel, OrthogonalityErrorMeasuresDeviation) {
  torch::Tensor R = torch::eye(4, torch::kFloat64);
  EXPECT_EQ(so::orthogonality_error(R), 0.0);
  R[1][1] = 1.5;  // (R^T R)_{11} = 2.25
  EXPECT_DOUBLE_EQ(so::orthogonality_error(R), 1.25);
}

// Random gradients of unit scale make the step cap 2q/||W||_1 active every step: the largest
// steps the optimizer takes. The default threshold re-orthonormalisation keeps R on the manifold.
// To keep the suite fast on 2 cores, n = 8, 64, 128 and 96 x 24 run 1000 steps (Cayley Adam
// only up to n = 64) and n = 1024 only 4 steps (a step there is slow, float64 twice as slow).
TEST(Stiefel, OrthogonalityPreservedOverManySteps) {
  struct Case { int64_t n, p; int steps; };
  for (Case c : {Case{8, 8, 1000}, Case{64, 64, 1000}, Case{128, 128, 1000}, Case{96, 24, 1000}, Case{1024, 1024, 4}}) {
    for (torch::Dtype dtype : {torch::kFloat32, torch::kFloat64}) {
      for (bool adam : {false, true}) {
        if (adam && c.n > 64) continue;
        torch::Tensor R = random_orthonormal(c.n, c.p, dtype, 4).requires_grad_();
        so::CayleySGDOptions sgd;
        sgd.lr = 0.2;
        sgd.nesterov = c.n == 64;
        so::CayleyAdamOptions cadam;
        cadam.lr = 0.2;
        so::HybridOptimizer opt({adam ? so::stiefel_group({R}, cadam) : so::stiefel_group({R}, sgd)});
        double worst = 0;
        for (int s = 0; s < c.steps; ++s) {
          R.mutable_grad() = torch::randn({c.n, c.p}, R.options());
          opt.step();
          if (s % 50 == 0 || s == c.steps - 1) worst = std::max(worst, so::orthogonality_error(R));
        }
        double bound = dtype == torch::kFloat32 ? 1e-5 : 1e-12;
        EXPECT_LT(worst, bound) << "n " << c.n << " p " << c.p << " " << dtype << (adam ? " cayley_adam" : " cayley_sgd");
        EXPECT_DOUBLE_EQ(opt.max_orthogonality_error(), so::orthogonality_error(R));
      }
    }
  }
}

// Without any QR: the exact Cayley step is orthogonal up to rounding whatever the step, and five
// fixed-point iterations are for steps with ||alpha W||_2 around 0.01.
TEST(Stiefel, CayleyAloneStaysOrthogonal) {
  for (bool exact : {true, false}) {
    torch::Tensor R = random_orthonormal(64, 64, torch::kFloat64, 5).requires_grad_();
    so::CayleySGDOptions o;
    o.lr = exact ? 0.2 : 0.05;
    o.momentum = 0;
    o.retraction.reorth_threshold_eps = 0;
    o.retraction.kind = exact ? so::Retraction::cayley_exact : so::Retraction::cayley_iterative;
    so::HybridOptimizer opt({so::stiefel_group({R}, o)});
    double scale = exact ? 1.0 : 1e-3;
    run_steps(opt, R, 1000, [&](const torch::Tensor& X) { return scale * torch::randn(X.sizes(), X.options()); });
    EXPECT_LT(so::orthogonality_error(R), 1e-12) << (exact ? "exact" : "iterative");
  }
}

namespace {

struct Procrustes {
  torch::Tensor A, B, optimum;  // optimum: reachable minimiser from a start with det = +1
  double f_star;
};

// min ||A R - B||_F^2 over SO(n) with B = A Q + noise, det Q = det_sign.
Procrustes make_procrustes(int64_t n, double det_sign, int64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor A = torch::randn({3 * n, n}, torch::kFloat64);
  torch::Tensor Q = so::qr_orthonormalize(torch::randn({n, n}, torch::kFloat64));
  if (torch::det(Q).item<double>() * det_sign < 0) Q.select(1, 0).neg_();
  torch::Tensor B = A.mm(Q) + 0.3 * torch::randn({3 * n, n}, torch::kFloat64);
  auto [U, S, Vh] = torch::linalg::svd(A.t().mm(B), false, c10::nullopt);
  torch::Tensor D = torch::ones({n}, torch::kFloat64);
  if (torch::det(U.mm(Vh)).item<double>() < 0) D[n - 1] = -1;  // start has det +1
  torch::Tensor R = U.mm(torch::diag(D)).mm(Vh);
  double f = (A.mm(R) - B).square().sum().item<double>();
  return {A, B, R, f};
}

double procrustes_relative_error(const Procrustes& p, torch::Dtype dtype, bool adam, int steps) {
  torch::Tensor A = p.A.to(dtype), B = p.B.to(dtype);
  torch::Tensor R = torch::eye(A.size(1), dtype).requires_grad_();
  so::CayleySGDOptions sgd;
  sgd.lr = 0.01;
  so::CayleyAdamOptions cadam;
  cadam.lr = 0.3;
  so::HybridOptimizer opt({adam ? so::stiefel_group({R}, cadam) : so::stiefel_group({R}, sgd)});
  so::LrSchedule schedule;
  schedule.kind = so::LrSchedule::Kind::cosine;
  schedule.total_steps = steps;
  schedule.min_factor = 0.01;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    (A.mm(R) - B).square().sum().backward();
    if (adam) opt.set_lr_factor(schedule.factor(s));
    opt.step();
  }
  double f = (p.A.mm(R.detach().to(torch::kFloat64)) - p.B).square().sum().item<double>();
  return (f - p.f_star) / p.f_star;
}

}  // namespace

TEST(Stiefel, ProcrustesReachesClosedFormOptimumBothDeterminants) {
  for (double det_sign : {1.0, -1.0}) {
    Procrustes p = make_procrustes(16, det_sign, 6);
    // The unconstrained optimum U V^T has det = det_sign; from R0 = I only det +1 is reachable.
    double f_unconstrained = [&] {
      auto [U, S, Vh] = torch::linalg::svd(p.A.t().mm(p.B), false, c10::nullopt);
      return (p.A.mm(U.mm(Vh)) - p.B).square().sum().item<double>();
    }();
    if (det_sign > 0) {
      EXPECT_NEAR(f_unconstrained, p.f_star, 1e-9 * p.f_star);
    } else {
      EXPECT_LT(f_unconstrained, p.f_star * (1 - 1e-3));  // the flip costs something
    }
    for (bool adam : {false, true}) {
      // Cayley Adam is slower near the flipped optimum; it needs ~1800 steps there.
      double rel = procrustes_relative_error(p, torch::kFloat64, adam, adam ? 2000 : 600);
      EXPECT_GE(rel, -1e-10) << "below the reachable optimum";
      EXPECT_LT(rel, 1e-4) << "det " << det_sign << (adam ? " cayley_adam" : " cayley_sgd");
    }
    EXPECT_LT(procrustes_relative_error(p, torch::kFloat32, false, 600), 1e-4) << "float32 det " << det_sign;
  }
}

TEST(Stiefel, BrockettCostDecreasesMonotonically) {
  torch::manual_seed(7);
  const int64_t n = 20;
  torch::Tensor M = torch::randn({n, n}, torch::kFloat64);
  M = so::sym(M);
  torch::Tensor N = torch::diag(torch::arange(1, n + 1, torch::kFloat64));
  for (so::Retraction kind : {so::Retraction::cayley_iterative, so::Retraction::cayley_exact, so::Retraction::qr}) {
    torch::Tensor R = random_orthonormal(n, n, torch::kFloat64, 8).requires_grad_();
    so::CayleySGDOptions o;
    o.lr = 1e-3;
    o.momentum = 0;
    o.retraction.kind = kind;
    so::HybridOptimizer opt({so::stiefel_group({R}, o)});
    auto cost = [&] { return torch::trace(R.t().mm(M).mm(R).mm(N)); };
    double first = cost().item<double>(), previous = first;
    for (int s = 0; s < 300; ++s) {
      opt.zero_grad();
      torch::Tensor f = cost();
      f.backward();
      opt.step();
      double now = cost().item<double>();
      ASSERT_LE(now, previous) << so::retraction_name(kind) << " step " << s;
      previous = now;
    }
    // Minimum: eigenvalues ascending paired with diag(N) descending.
    torch::Tensor lambda = std::get<0>(torch::linalg::eigh(M, "L"));
    double f_min = (lambda * torch::arange(n, 0, -1, torch::kFloat64)).sum().item<double>();
    EXPECT_LT(previous - f_min, 0.5 * (first - f_min)) << so::retraction_name(kind);
  }
}

TEST(Stiefel, ZeroGradientLeavesParameterUnchanged) {
  for (bool adam : {false, true}) {
    torch::Tensor R = random_orthonormal(10, 10, torch::kFloat32, 9).requires_grad_();
    torch::Tensor before = R.detach().clone();
    so::CayleySGDOptions sgd;
    so::CayleyAdamOptions cadam;
    so::HybridOptimizer opt({adam ? so::stiefel_group({R}, cadam) : so::stiefel_group({R}, sgd)});
    run_steps(opt, R, 3, [](const torch::Tensor& X) { return torch::zeros_like(X); });
    EXPECT_TRUE(torch::equal(R.detach(), before)) << (adam ? "cayley_adam" : "cayley_sgd");
  }
}

TEST(Stiefel, TangentGradientIsFollowedAndNormalGradientIgnored) {
  torch::Tensor X0 = random_orthonormal(12, 12, torch::kFloat64, 10);
  torch::Tensor Omega = so::skew(torch::randn({12, 12}, torch::kFloat64));
  so::CayleySGDOptions o;
  o.lr = 0.01;
  o.momentum = 0;
  o.retraction.kind = so::Retraction::cayley_exact;
  o.retraction.q = 1e6;  // no cap: the step is exactly lr
  {
    torch::Tensor R = X0.clone().requires_grad_();
    so::HybridOptimizer opt({so::stiefel_group({R}, o)});
    R.mutable_grad() = X0.mm(Omega);  // tangent at X0
    opt.step();
    // Closed form for G = X Omega: Y = X (I + a/2 Omega)^{-1} (I - a/2 Omega).
    torch::Tensor I = torch::eye(12, torch::kFloat64);
    torch::Tensor expected = X0.mm(torch::linalg::inv(I + 0.005 * Omega)).mm(I - 0.005 * Omega);
    EXPECT_LT((R.detach() - expected).abs().max().item<double>(), 1e-13);
  }
  {
    torch::Tensor R = X0.clone().requires_grad_();
    so::HybridOptimizer opt({so::stiefel_group({R}, o)});
    R.mutable_grad() = X0.mm(so::sym(torch::randn({12, 12}, torch::kFloat64)));  // normal to the manifold
    opt.step();
    EXPECT_LT((R.detach() - X0).abs().max().item<double>(), 1e-13);
  }
}

TEST(Stiefel, NonFiniteGradientThrowsAndLeavesEverythingUnchanged) {
  for (double bad : {std::nan(""), static_cast<double>(INFINITY)}) {
    torch::Tensor R = random_orthonormal(8, 8, torch::kFloat32, 11).requires_grad_();
    torch::Tensor s = torch::ones({8}).requires_grad_();
    so::HybridOptimizer opt({so::stiefel_group({R}, so::CayleySGDOptions{}), so::euclidean_group({s}, so::AdamOptions{})});
    R.mutable_grad() = torch::randn({8, 8});
    s.mutable_grad() = torch::randn({8});
    opt.step();  // creates momentum state
    torch::Tensor R_before = R.detach().clone(), s_before = s.detach().clone();
    R.mutable_grad() = torch::randn({8, 8});
    s.mutable_grad() = torch::randn({8});
    s.mutable_grad()[3] = bad;
    try {
      opt.step();
      FAIL() << "expected spin::Error";
    } catch (const spin::Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("group 1 (adam) param 0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("NaN or inf"), std::string::npos) << msg;
    }
    EXPECT_TRUE(torch::equal(R.detach(), R_before));
    EXPECT_TRUE(torch::equal(s.detach(), s_before));
  }
}

TEST(Stiefel, RejectsBadParameters) {
  torch::Tensor wide = random_orthonormal(8, 4, torch::kFloat32, 12).t().contiguous().requires_grad_();
  EXPECT_THROW(so::HybridOptimizer({so::stiefel_group({wide}, so::CayleySGDOptions{})}), spin::Error);
  torch::Tensor skewed = (2 * torch::eye(4)).requires_grad_();
  EXPECT_THROW(so::HybridOptimizer({so::stiefel_group({skewed}, so::CayleyAdamOptions{})}), spin::Error);
  torch::Tensor half = torch::eye(4, torch::kFloat16).requires_grad_();
  EXPECT_THROW(so::HybridOptimizer({so::stiefel_group({half}, so::CayleySGDOptions{})}), spin::Error);
}
