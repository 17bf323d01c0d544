// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers") on one linear weight W [out, in] given the Hessian of its layer-wise loss.
//
//   H = 2/n Σ_t x_t x_tᵀ over the n calibration inputs x_t [in] of the linear (HessianAccumulator);
//   columns whose diagonal is 0 (inputs never seen) are zeroed; H += damp · mean(diag H) · I;
//   U = upper Cholesky factor of H⁻¹; columns are quantized one by one (in decreasing diag(H) order
//   with act_order) and each column's error, scaled by 1/U[j,j], is pushed onto the columns not yet
//   quantized along row j of U. Updates are applied lazily: within a block of block_size columns
//   eagerly, to the rest of W once per block.
//
// The grid is QuantSpec's (see src/kernels/fake_quant.h) expressed with integer codes c ∈ [0, 2^bits − 1]
// and per-group zero points z, w ≈ s · (c − z):
//   sym:  s = clip·max|w| / (2^(bits−1) − 1),  z = 2^(bits−1)
//   asym: s = clip·(max w − min w) / (2^bits − 1) (the range always holds 0),  z = round(−clip·min w / s)
// with two deviations that make the result exactly storable in the GPTQ checkpoint format: s is
// rounded to float16, and z is at least 1 (the format stores z − 1 in an unsigned field).
// Groups hold `groupsize` consecutive input columns (in act_order's order when act_order is set,
// hence g_idx); the last group may be shorter when groupsize does not divide `in`.
#pragma once

#include <string>

#include "src/kernels/fake_quant.h"

namespace spin {

struct GptqOptions {
  QuantSpec grid{4, 128, true, 1.0};  // bits 2..8; groupsize <= 0 or >= in: one group per row
  bool act_order = false;             // quantize columns in decreasing diag(H) order
  double damp = 0.01;                 // fraction of mean(diag H) added to the diagonal
  int64_t block_size = 128;           // lazy-batch width, raised to a multiple of the group size
};

// A quantized weight in the original column order.
struct QuantizedWeight {
  torch::Tensor codes;   // uint8 [out, in], 0 .. 2^bits − 1
  torch::Tensor scales;  // float32 [groups, out], each exactly representable in float16
  torch::Tensor zeros;   // int32 [groups, out], 1 .. 2^bits − 1
  torch::Tensor g_idx;   // int32 [in], the group of each input column
  int bits = 4;

  // float32 [out, in]: W[i, j] = scales[g, i] · (codes[i, j] − zeros[g, i]) with g = g_idx[j].
  torch::Tensor dequantize() const;
};

// Sum of x xᵀ over the rows of every x added, kept in float64 on the device of the first x.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in_features) : in_(in_features) {}
  // x [..., in]: every row is one calibration input. The product is taken in float32 (float64 for float64 x).
  void add(const torch::Tensor& x);
  // H = 2/n Σ x xᵀ, float64 [in, in]. At least one row must have been added.
  torch::Tensor hessian() const;
  int64_t samples() const { return n_; }

 private:
  int64_t in_;
  int64_t n_ = 0;
  torch::Tensor sum_;
};

// GPTQ of weight [out, in] (any float dtype, CPU or CUDA; computed in float32 with the Cholesky steps
// in float64) under hessian [in, in]. `where` names the weight in error messages (e.g. a Hessian that
// is not positive definite even after damping).
QuantizedWeight gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian, const GptqOptions& options,
                              const std::string& where);

}  // namespace spin
