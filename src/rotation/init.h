// Initial values for the learned rotations R1 (hidden_size) and R2 (head_dim): float64 orthogonal [n, n].
//
// Activations are rotated as x · R. Random draws use their own seeded generator (std::mt19937_64, whose
// output the C++ standard fixes, with Box–Muller normals), never the global torch RNG, so a seed gives
// the same matrix on every machine and thread count.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace spin {

enum class RotationInit {
  Hadamard,        // hadamard_matrix(n)
  RandomHadamard,  // diag(s) · H, s = random_signs(n, seed): x · R flips x's signs, then mixes
  Random,          // Q of QR(seeded_gaussian(n, n, seed)), columns signed so that R's diagonal is positive
  Identity,
};

// "hadamard", "random-hadamard", "random", "identity"; anything else is a spin::Error.
RotationInit parse_rotation_init(const std::string& name);
std::string to_string(RotationInit init);

// [n] float64 of ±1, each with probability 1/2.
torch::Tensor random_signs(int64_t n, uint64_t seed);
// [rows, cols] float64 of independent standard normals.
torch::Tensor seeded_gaussian(int64_t rows, int64_t cols, uint64_t seed);

// Orthogonal [n, n] float64 (Hadamard kinds need hadamard_supported(n)).
torch::Tensor make_rotation(RotationInit init, int64_t n, uint64_t seed);

}  // namespace spin
