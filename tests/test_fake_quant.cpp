// RTN fake quantization: grid size, error bound, groups (incl. a short last group), STE gradient.
#include <gtest/gtest.h>

#include "src/kernels/fake_quant.h"

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

}  // namespace
