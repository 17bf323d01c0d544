// Rotation initialisers: Hadamard, random Hadamard, random orthogonal, identity.
#include "src/rotation/init.h"

#include <cmath>
#include <random>

#include "src/base/check.h"
#include "src/kernels/hadamard.h"

namespace spin {

RotationInit parse_rotation_init(const std::string& name) {
  if (name == "hadamard") return RotationInit::Hadamard;
  if (name == "random-hadamard") return RotationInit::RandomHadamard;
  if (name == "random") return RotationInit::Random;
  if (name == "identity") return RotationInit::Identity;
  fail("unknown rotation init '", name, "' (expected hadamard, random-hadamard, random or identity)");
}

std::string to_string(RotationInit init) {
  switch (init) {
    case RotationInit::Hadamard: return "hadamard";
    case RotationInit::RandomHadamard: return "random-hadamard";
    case RotationInit::Random: return "random";
    case RotationInit::Identity: return "identity";
  }
  fail("invalid RotationInit value ", int(init));
}

torch::Tensor random_signs(int64_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  torch::Tensor s = torch::empty({n}, torch::kFloat64);
  double* d = s.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) d[i] = (gen() >> 63) ? -1.0 : 1.0;
  return s;
}

torch::Tensor seeded_gaussian(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 gen(seed);
  auto uniform = [&] { return double(gen() >> 11) * 0x1.0p-53; };  // [0, 1)
  torch::Tensor g = torch::empty({rows, cols}, torch::kFloat64);
  double* d = g.data_ptr<double>();
  const int64_t count = rows * cols;
  for (int64_t i = 0; i < count; i += 2) {  // Box–Muller: two normals per pair of uniforms
    const double radius = std::sqrt(-2.0 * std::log(1.0 - uniform()));  // 1 - u in (0, 1]
    const double angle = 2.0 * M_PI * uniform();
    d[i] = radius * std::cos(angle);
    if (i + 1 < count) d[i + 1] = radius * std::sin(angle);
  }
  return g;
}

torch::Tensor make_rotation(RotationInit init, int64_t n, uint64_t seed) {
  SPIN_CHECK(n >= 1, "rotation size must be positive, got n = ", n);
  switch (init) {
    case RotationInit::Hadamard: return hadamard_matrix(n);
    case RotationInit::RandomHadamard: return random_signs(n, seed).unsqueeze(1) * hadamard_matrix(n);  // diag(s) · H
    case RotationInit::Random: {
      auto [q, r] = torch::linalg_qr(seeded_gaussian(n, n, seed));
      torch::Tensor sign = 1.0 - 2.0 * (r.diagonal() < 0).to(torch::kFloat64);
      return q * sign.unsqueeze(0);  // Q diag(sign): (Q diag(sign))ᵀ G = diag(sign) R has a positive diagonal
    }
    case RotationInit::Identity: return torch::eye(n, torch::kFloat64);
  }
  fail("invalid RotationInit value ", int(init));
}

}  // namespace spin
