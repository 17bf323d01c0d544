// Whether LibTorch's bfloat16 matrix products on this CPU keep their partial sums in float32.
//
// Where oneDNN runs them (CPUs with AVX-512, products of more than about 16³ multiply-adds) they do.
// Elsewhere LibTorch 1.13 falls back to a GEMM
// that accumulates in bfloat16 unless B is stored transposed (x·Wᵀ of a linear layer is fine, its
// backward is not): a K-term sum then loses log2(K) of bfloat16's 8 mantissa bits, about 10% relative
// error at K = 4096, and every weight gradient of a training step is such a sum over tokens.
// --dtype bf16 is refused on such a CPU.
#pragma once

namespace spin {

// Measured once and cached: [16, 512] x [512, 16] ones (large enough for oneDNN where the CPU has it;
// a [2, 512] x [512, 2] product is not), with A and B row-major and each stored transposed in turn,
// must give 512 in every entry (a bfloat16 running sum stops at 256).
bool cpu_bf16_matmul_accumulates_in_float32();

}  // namespace spin
