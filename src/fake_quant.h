// Round-to-nearest (RTN) fake quantization with a straight-through estimator.
//
// fake_quant(x, spec) quantizes x along its last dimension in groups of spec.groupsize (the last group
// is shorter when groupsize does not divide the dimension; 0 or >= the dimension = the whole
// last dimension: per output channel for a weight [out, in], per token for an activation [.., hidden],
// per head for K/V [.., head_dim]) and dequantizes back to x's dtype. The backward pass is the identity
// (straight-through), so gradients reach whatever produced x (e.g. a rotation applied to a weight).
//   symmetric:  s = clip·max|x| / (2^(b-1) − 1),        q = clamp(round(x/s), −2^(b−1), 2^(b−1) − 1)
//   asymmetric: s = clip·(max x − min x) / (2^b − 1),   z = round(−clip·min x / s), q = clamp(round(x/s) + z, 0, 2^b − 1)
#pragma once

#include <string>

namespace spin {

struct QuantSpec {
  int bits = 16;          // 16 or more: no quantization
  int64_t groupsize = 0;  // 0: whole last dimension
  bool asym = false;
  double clip = 1.0;      // fraction of the range kept (clip ratio)

  bool enabled() const { return bits < 16; }
  std::string describe() const;  // e.g. "4-bit sym g128 clip 1.0" or "off"
};

torch::Tensor fake_quant(const torch::Tensor& x, const QuantSpec& spec);

}  // namespace spin
