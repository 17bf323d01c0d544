// Rotation initialisers: Hadamard, random Hadamard, random orthogonal, identity.
#include "src/rotation/init.h"

#include <cmath>
#include <random>
#include <sstream>

#include "src/base/check.h"
#include "src/base/names.h"
#include "src/kernels/hadamard.h"

namespace spin {

namespace {
const std::pair<const char*, RotationInit> kInits[] = {{"hadamard", RotationInit::hadamard},
                                                       {"random-hadamard", RotationInit::random_hadamard},
                                                       {"random", RotationInit::random},
                                                       {"identity", RotationInit::identity}};
}  // namespace

RotationInit parse_rotation_init(const std::string& name) { return from_name(kInits, name, "--init", "rotation init"); }

std::string to_string(RotationInit init) { return name_of(kInits, init); }

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
    case RotationInit::hadamard: return hadamard_matrix(n);
    case RotationInit::random_hadamard: return random_signs(n, seed).unsqueeze(1) * hadamard_matrix(n);  // diag(s) · H
    case RotationInit::random: {
      auto [q, r] = torch::linalg_qr(seeded_gaussian(n, n, seed));
      torch::Tensor sign = 1.0 - 2.0 * (r.diagonal() < 0).to(torch::kFloat64);
      return q * sign.unsqueeze(0);  // Q diag(sign): (Q diag(sign))ᵀ G = diag(sign) R has a positive diagonal
    }
    case RotationInit::identity: return torch::eye(n, torch::kFloat64);
  }
  fail("invalid RotationInit value ", int(init));
}

RotationConfig RotationConfig::parse_list(const std::string& list, const std::string& where) {
  RotationConfig rc;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "r1") rc.r1 = true;
    else if (item == "r2") rc.r2 = true;
    else if (item == "r3") rc.r3 = true;
    else if (item == "r4") rc.r4 = true;
    else if (!item.empty()) fail(where, ": unknown rotation '", item, "' (choose from r1, r2, r3, r4)");
  }
  return rc;
}

Rotations init_rotations(const ModelConfig& c, const RotationConfig& rc) {
  Rotations r;
  if (rc.r1) r.r1 = make_rotation(rc.init, c.hidden_size, rc.seed);
  if (rc.r2)
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) r.r2.push_back(make_rotation(rc.init, c.head_dim, rc.seed + 1 + i));
  return r;
}

}  // namespace spin
