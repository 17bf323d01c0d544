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
  // Training only. false: pure straight-through (the gradient of x is passed unchanged, the scale is a
  // constant). true: the scale's dependence on x (max|x| or the range, times clip) is differentiated
  // too, with a straight-through round (LSQ/OmniQuant style; SpinQuant's STEQuantize gives the scale no
  // gradient, i.e. false): a transform that shrinks outliers then sees the smaller step it buys.
  bool scale_grad = false;

  bool enabled() const { return bits < 16; }
  std::string describe() const;  // e.g. "4-bit sym g128 clip 1.0" or "off"
};

torch::Tensor fake_quant(const torch::Tensor& x, const QuantSpec& spec);

// Same with a learnable clip ratio per row of x viewed as [rows, n] (clip [rows], values in (0, 1]) in
// place of spec.clip. Gradient to x as above. Gradient to clip: through the scale with a
// straight-through round (LSQ / OmniQuant's learnable weight clipping), i.e. per element
// (round(x/s) − x/s)·∂s/∂clip inside the range and (clamped code − zero)·∂s/∂clip outside it.
torch::Tensor fake_quant(const torch::Tensor& x, const QuantSpec& spec, const torch::Tensor& clip);

}  // namespace spin
