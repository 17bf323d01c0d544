// RTN fake quantization: grid size, error bound, groups (incl. a short last group), STE gradient, and
// the gradients of the scale-aware and learned-clip quantizer against float64 and autograd references,
// and the clip search against brute force.
#include <gtest/gtest.h>

#include <cmath>

#include "src/kernels/fake_quant.h"
#include "src/quant/quantize_weights.h"

using namespace spin;

namespace {

TEST(FakeQuant, SymmetricGridAndErrorBound) {
  torch::manual_seed(0);
  torch::Tensor x = torch::randn({16, 64});
  torch::Tensor q = fake_quant(x, {4, 0, false, 1.0});
  for (int64_t r = 0; r < 16; ++r) {
    const double scale = x[r].abs().max().item<double>() / 7;
    torch::Tensor codes = q[r] / scale;
    EXPECT_LT((codes - codes.round()).abs().max().item<double>(), 1e-4);  // on the grid
    EXPECT_LE(std::get<0>(at::_unique(codes.round())).numel(), 16);
    EXPECT_LE((q[r] - x[r]).abs().max().item<double>(), scale / 2 + 1e-6);
  }
}

TEST(FakeQuant, AsymmetricUsesFullRange) {
  torch::Tensor x = torch::linspace(-1, 3, 64).view({1, 64});
  torch::Tensor q = fake_quant(x, {2, 0, true, 1.0});
  EXPECT_EQ(std::get<0>(at::_unique(q)).numel(), 4);
  EXPECT_NEAR(q.min().item<double>(), -1, 1e-5 + 4.0 / 3 / 2);
  EXPECT_NEAR(q.max().item<double>(), 3, 4.0 / 3 / 2);
}

TEST(FakeQuant, GroupsAndShortLastGroup) {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({3, 172});
  const QuantSpec g128{4, 128, false, 1.0};
  torch::Tensor q = fake_quant(x, g128);
  const QuantSpec whole{4, 0, false, 1.0};
  EXPECT_TRUE(torch::allclose(q.narrow(1, 0, 128), fake_quant(x.narrow(1, 0, 128).contiguous(), whole)));
  EXPECT_TRUE(torch::allclose(q.narrow(1, 128, 44), fake_quant(x.narrow(1, 128, 44).contiguous(), whole)));
  const QuantSpec asym{3, 128, true, 1.0}, asym_whole{3, 0, true, 1.0};
  EXPECT_TRUE(torch::allclose(fake_quant(x, asym).narrow(1, 128, 44), fake_quant(x.narrow(1, 128, 44).contiguous(), asym_whole)));
}

TEST(FakeQuant, ClipShrinksRangeAndOffIsIdentity) {
  torch::Tensor x = torch::randn({4, 32});
  EXPECT_TRUE(torch::equal(fake_quant(x, {}), x));
  torch::Tensor row_max = fake_quant(x, {4, 0, false, 0.5}).abs().amax(1);
  // Codes reach -8 on the negative side: |q| <= 8/7 * 0.5 * max|x|.
  EXPECT_TRUE((row_max <= x.abs().amax(1) * 0.5 * 8 / 7 + 1e-6).all().item<bool>());
  EXPECT_TRUE((row_max < x.abs().amax(1) * 0.6).all().item<bool>());
}

TEST(FakeQuant, StraightThroughGradientIsIdentity) {
  torch::Tensor x = torch::randn({5, 16}, torch::requires_grad());
  torch::Tensor w = torch::randn({5, 16});
  (fake_quant(x, {3, 8, true, 1.0}) * w).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), w));
}

TEST(FakeQuant, Bf16StaysBf16) {
  torch::Tensor x = torch::randn({2, 64}).to(torch::kBFloat16);
  EXPECT_EQ(fake_quant(x, {4, 0, true, 1.0}).scalar_type(), torch::kBFloat16);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Learned clip ratios: the value is RTN with each row's ratio, the gradient to x is the identity and
// the gradient to the ratio is LSQ's, recomputed here element by element in float64.
TEST(FakeQuant, LearnedClipValueAndGradient) {
  torch::manual_seed(1);
  for (bool asym : {false, true}) {
    const QuantSpec spec{4, 16, asym, 1.0};
    const int64_t rows = 5, n = 40;  // groups 16, 16, 8
    torch::Tensor x = torch::randn({rows, n}).requires_grad_(true);
    torch::Tensor clip = (0.6 + 0.4 * torch::rand({rows})).requires_grad_(true);
    torch::Tensor upstream = torch::randn({rows, n});
    torch::Tensor y = fake_quant(x, spec, clip);
    (y * upstream).sum().backward();
    EXPECT_TRUE(torch::equal(x.grad(), upstream)) << "straight-through to x";

    const double qmax = asym ? 15 : 7;
    for (int64_t r = 0; r < rows; ++r) {
      const double c = clip[r].item<float>();
      QuantSpec fixed = spec;
      fixed.clip = c;
      EXPECT_TRUE(torch::equal(y[r].detach(), fake_quant(x[r].detach(), fixed))) << "row " << r;
      double grad = 0;
      for (int64_t g0 = 0; g0 < n; g0 += 16) {
        const int64_t len = std::min<int64_t>(16, n - g0);
        torch::Tensor xs = x.detach()[r].narrow(0, g0, len).to(torch::kFloat64);
        torch::Tensor up = upstream[r].narrow(0, g0, len).to(torch::kFloat64);
        double scale, dscale, zero = 0, lo_code = -qmax - 1, hi_code = qmax;
        if (asym) {
          const double lo = std::min(xs.min().item<double>(), 0.0), hi = std::max(xs.max().item<double>(), 0.0);
          dscale = (hi - lo) / qmax;
          scale = c * dscale;
          zero = std::round(-c * lo / scale);
          lo_code = 0;
          hi_code = qmax;
        } else {
          dscale = xs.abs().max().item<double>() / qmax;
          scale = c * dscale;
        }
        for (int64_t k = 0; k < len; ++k) {
          const double u = xs[k].item<double>() / scale, code = std::round(u) + zero;
          // d(scale·(clamp(round(u) + zero) − zero))/d scale with round straight-through
          const double d = code < lo_code ? lo_code - zero : code > hi_code ? hi_code - zero : std::round(u) - u;
          grad += up[k].item<double>() * d * dscale;
        }
      }
      EXPECT_NEAR(clip.grad()[r].item<double>(), grad, 1e-4 * (1 + std::abs(grad))) << "asym " << asym << " row " << r;
    }
  }
}

// An autograd reference of RTN with the scale differentiated (round straight-through), one group per row.
torch::Tensor autograd_rtn(const torch::Tensor& x, int bits, bool asym, const torch::Tensor& clip) {
  auto round_ste = [](const torch::Tensor& u) { return u + (u.round() - u).detach(); };
  if (!asym) {
    const double qmax = std::pow(2.0, bits - 1) - 1;
    torch::Tensor s = x.abs().amax(-1, true) * clip / qmax;
    return torch::clamp(round_ste(x / s), -qmax - 1, qmax) * s;
  }
  const double qmax = std::pow(2.0, bits) - 1;
  torch::Tensor lo = x.amin(-1, true).clamp_max(0) * clip, hi = x.amax(-1, true).clamp_min(0) * clip;
  torch::Tensor s = (hi - lo) / qmax, zero = torch::round(-lo / s).detach();
  return (torch::clamp(round_ste(x / s) + zero, 0, qmax) - zero) * s;
}

// The custom backward (which keeps only x and clip) gives the gradients autograd computes through the
// reference above, for x and for learned clip ratios, symmetric and asymmetric.
TEST(FakeQuant, ScaleGradientMatchesAutogradReference) {
  torch::manual_seed(3);
  for (bool asym : {false, true}) {
    QuantSpec spec{3, 0, asym, 1.0};
    spec.scale_grad = true;
    torch::Tensor x = torch::randn({6, 24}, torch::kFloat64).requires_grad_(true);
    torch::Tensor clip = (0.7 + 0.3 * torch::rand({6}, torch::kFloat64)).requires_grad_(true);
    torch::Tensor upstream = torch::randn({6, 24}, torch::kFloat64);
    (fake_quant(x, spec, clip) * upstream).sum().backward();
    torch::Tensor xr = x.detach().clone().requires_grad_(true), cr = clip.detach().to(torch::kFloat32).to(torch::kFloat64).requires_grad_(true);
    (autograd_rtn(xr, 3, asym, cr.unsqueeze(1)) * upstream).sum().backward();
    EXPECT_LT(max_diff(x.grad(), xr.grad()), 1e-4) << "asym " << asym;
    EXPECT_LT(max_diff(clip.grad(), cr.grad()), 1e-3 * (1 + cr.grad().abs().max().item<double>())) << "asym " << asym;
  }
}

// --quant-grad scale (symmetric): the gradient of x adds, to the straight-through identity inside the
// range, the path through the scale s = clip·max|x|/qmax, which only the group's max-|x| element feeds:
//   ∂L/∂x_j = g_j·[j inside] + [j = argmax] · sign(x_j)·clip/qmax · Σ_k g_k·∂deq_k/∂s.
TEST(FakeQuant, ScaleGradientFollowsTheScale) {
  torch::manual_seed(2);
  QuantSpec spec{4, 8, false, 0.9};
  spec.scale_grad = true;
  const double qmax = 7, c = float(0.9);
  torch::Tensor x = torch::randn({3, 16}, torch::kFloat64).requires_grad_(true);
  torch::Tensor upstream = torch::randn({3, 16}, torch::kFloat64);
  torch::Tensor y = fake_quant(x, spec);
  QuantSpec plain = spec;
  plain.scale_grad = false;
  EXPECT_LT(max_diff(y.detach(), fake_quant(x.detach(), plain)), 1e-6) << "same value as without scale_grad";
  (y * upstream).sum().backward();
  torch::Tensor xd = x.detach();
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t g0 = 0; g0 < 16; g0 += 8) {
      torch::Tensor xs = xd[r].narrow(0, g0, 8), up = upstream[r].narrow(0, g0, 8);
      const int64_t arg = xs.abs().argmax().item<int64_t>();
      const double s = c * xs.abs().max().item<double>() / qmax;
      double ds_sum = 0;
      std::vector<double> expected(8);
      for (int64_t k = 0; k < 8; ++k) {
        const double u = xs[k].item<double>() / s, code = std::round(u);
        const bool inside = code >= -qmax - 1 && code <= qmax;
        ds_sum += up[k].item<double>() * (inside ? code - u : std::clamp(code, -qmax - 1, qmax));
        expected[k] = inside ? up[k].item<double>() : 0;
      }
      expected[arg] += (xs[arg].item<double>() > 0 ? 1 : -1) * c / qmax * ds_sum;
      for (int64_t k = 0; k < 8; ++k)
        EXPECT_NEAR(x.grad()[r][g0 + k].item<double>(), expected[k], 1e-5) << "row " << r << " element " << g0 + k;
    }
}

}  // namespace

// search_clip: each row's ratio is the best of its grid (brute force over the same grid), never worse
// than no clipping, and below 1 for Gaussian rows of 256 (their max, ~2.9 sigma, lies beyond the
// MSE-optimal 4-bit range of ~2.5 sigma), once per group of 64 and per whole row.
TEST(FakeQuant, ClipSearchMinimisesEachRowsError) {
  torch::manual_seed(0);
  const torch::Tensor w = torch::randn({6, 256});
  const int steps = 20;
  for (const int64_t groupsize : {int64_t(0), int64_t(64)}) {
    QuantSpec spec;
    spec.bits = 4;
    spec.groupsize = groupsize;
    const torch::Tensor best = search_clip(w, spec, steps);  // [6]
    ASSERT_EQ(best.sizes(), torch::IntArrayRef({6}));
    auto row_error = [&](const torch::Tensor& ratio) { return (fake_quant(w, spec, ratio) - w).pow(2).sum(1); };
    const torch::Tensor chosen = row_error(best);  // [6]
    for (int k = 0; k <= steps; ++k) {
      const double r = 1.0 - (1.0 - kMinClip) * k / steps;
      EXPECT_TRUE(chosen.le(row_error(torch::full({6}, r)) + 1e-6).all().item<bool>())
          << "groupsize " << groupsize << ": ratio " << r << " beats the search";
    }
    EXPECT_TRUE(best.lt(1.0).any().item<bool>()) << "groupsize " << groupsize;
    EXPECT_TRUE(best.ge(kMinClip).all().item<bool>() && best.le(1.0).all().item<bool>());
  }
}
