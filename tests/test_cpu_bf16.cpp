// The bfloat16 GEMM probe (src/kernels/cpu_bf16.h) against a direct measurement: a [64, 4096] x
// [4096, 48] bfloat16 product with each operand layout, compared with the same product in float64 of
// the same bfloat16 inputs; and what the tools do with its answer (refuse --dtype bf16 in one line, or run).
#include <gtest/gtest.h>

#include "src/kernels/cpu_bf16.h"
#include "tests/test_util.h"

using namespace spin;

TEST(CpuBf16, ProbeAgreesWithMeasuredAccumulationError) {
  torch::manual_seed(0);
  const torch::Tensor a = torch::randn({64, 4096}).to(torch::kBFloat16), b = torch::randn({4096, 48}).to(torch::kBFloat16);
  const torch::Tensor ref = a.to(torch::kFloat64).mm(b.to(torch::kFloat64));
  auto transposed_storage = [](const torch::Tensor& x) { return x.t().contiguous().t(); };
  double worst = 0;  // largest |error| relative to max |ref| over the layouts
  for (const torch::Tensor& p : {a.mm(b), transposed_storage(a).mm(b), a.mm(transposed_storage(b))})
    worst = std::max(worst, ((p.to(torch::kFloat64) - ref).abs().max() / ref.abs().max()).item<double>());
  std::cerr << "bf16 [64, 4096] x [4096, 48]: worst relative error " << worst << "\n";
  // float32 accumulation leaves only the output's rounding (2^-9 relative); bfloat16 accumulation of
  // 4096 terms loses ~6 more bits.
  if (cpu_bf16_matmul_accumulates_in_float32())
    EXPECT_LT(worst, 0.005);
  else
    EXPECT_GT(worst, 0.03);
}

TEST(CpuBf16, SpintrainRefusesBf16OnlyWhereItSumsInBf16) {
  auto dir = test::scratch("cpu_bf16");
  const std::string cmd = test::spintrain_command(dir / "out", "--dtype bf16 --steps 1 --nsamples 4 --seq-len 64 --quiet");
  if (cpu_bf16_matmul_accumulates_in_float32()) {
    EXPECT_EQ(test::run(cmd, dir / "log.txt"), 0) << test::read_text(dir / "log.txt");
  } else {
    test::expect_one_line_errors({{cmd, "--dtype bf16: LibTorch's bfloat16 matrix products on this CPU sum in bfloat16"}},
                                 dir);
    EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  }
}
