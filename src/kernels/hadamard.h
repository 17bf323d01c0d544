// Hadamard matrices and the fast Hadamard transform used for fixed and online rotations.
//
// Order n = K * 2^k: a Sylvester matrix for the 2^k factor, Kronecker'd with a base of order K
// built by Paley I (K = q + 1, q a prime power = 3 mod 4, fields GF(p^m) included, e.g. 28 over
// GF(27)), Paley II (K = 2(q + 1), q a prime power = 1 mod 4, e.g. 924 = 2 * 462) or a published
// Williamson matrix (156, 172). The smallest such K is used. Every matrix is normalised
// (H Hᵀ = I) and float64; H = H_K ⊗ H_{2^k} / sqrt(n). H is not symmetric in general.
//
// Convention (as everywhere in spintrain): activations are rotated as x · H along their last
// dimension, so apply_hadamard(x) == x.matmul(hadamard_matrix(n)).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace spin {

// True when hadamard_matrix(n) can be built (n >= 1).
bool hadamard_supported(int64_t n);

// Largest d < n (d | n) that hadamard_supported(d); the block size to suggest for block_hadamard_matrix.
int64_t largest_hadamard_divisor(int64_t n);

// Normalised Hadamard matrix [n, n], float64, CPU. Unsupported n: spin::Error naming n and
// suggesting a block-diagonal Hadamard with a block size that works.
torch::Tensor hadamard_matrix(int64_t n);

// Block-diagonal I_{n/block} ⊗ hadamard_matrix(block) [n, n], float64; block must divide n.
torch::Tensor block_hadamard_matrix(int64_t n, int64_t block);

// y = x · H along the last dimension, x [..., n] -> y [..., n] with x's dtype and device.
// H = hadamard_matrix(n) when block == 0, else block_hadamard_matrix(n, block).
// Fast Walsh–Hadamard transform for the 2^k factor (O(n log n): radix-64 stages, each one GEMM with a
// Sylvester matrix of order <= 64, so 2^12 takes two passes) and one dense K x K GEMM for the base;
// float16/bfloat16 are computed in float32. Built from torch ops, so autograd gives dL/dx = g · Hᵀ.
torch::Tensor apply_hadamard(const torch::Tensor& x, int64_t block = 0);

}  // namespace spin
