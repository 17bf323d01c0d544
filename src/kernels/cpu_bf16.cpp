#include "src/kernels/cpu_bf16.h"

#include <torch/torch.h>

namespace spin {

bool cpu_bf16_matmul_accumulates_in_float32() {
  static const bool accurate = [] {
    torch::NoGradGuard no_grad;
    const int64_t K = 512;  // 256 + 1 is not a bfloat16: a bfloat16 running sum of ones stops at 256
    const auto bf16 = torch::TensorOptions().dtype(torch::kBFloat16);
    const torch::Tensor a = torch::ones({16, K}, bf16), b = torch::ones({K, 16}, bf16);
    const torch::Tensor products[] = {a.mm(b), a.t().contiguous().t().mm(b), a.mm(b.t().contiguous().t())};
    for (const torch::Tensor& p : products)
      if (!p.to(torch::kFloat32).eq(float(K)).all().item<bool>()) return false;
    return true;
  }();
  return accurate;
}

}  // namespace spin
