// Initial values for the learned rotations R1 (hidden_size) and R2 (head_dim): float64 orthogonal [n, n].
//
// Activations are rotated as x · R. Random draws use their own seeded generator (std::mt19937_64, whose
// output the C++ standard fixes, with Box–Muller normals), never the global torch RNG, so a seed gives
// the same matrix on every machine and thread count.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/model/config.h"

namespace spin {

enum class RotationInit {
  hadamard,         // hadamard_matrix(n)
  random_hadamard,  // diag(s) · H, s = random_signs(n, seed): x · R flips x's signs, then mixes
  random,           // Q of QR(seeded_gaussian(n, n, seed)), columns signed so that R's diagonal is positive
  identity,
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

// Which rotations a model gets and how the learned ones start.
struct RotationConfig {
  bool r1 = false, r2 = false, r3 = false, r4 = false;
  RotationInit init = RotationInit::random_hadamard;
  uint64_t seed = 0;
  bool learned = false;

  // "r1,r2,r3,r4" subsets; unknown names throw.
  static RotationConfig parse_list(const std::string& list, const std::string& where);
  bool any() const { return r1 || r2 || r3 || r4; }
};

struct Rotations {
  torch::Tensor r1;               // [hidden, hidden] or undefined
  std::vector<torch::Tensor> r2;  // num_hidden_layers × [head_dim, head_dim], or empty
};

// The initial rotations for `rc` (float64): R1 with `seed`, layer i's R2 with seed + 1 + i.
Rotations init_rotations(const ModelConfig& config, const RotationConfig& rc);

}  // namespace spin
