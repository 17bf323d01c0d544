#include "src/quant/gptq.h"

#include <cmath>

#include "src/base/check.h"

namespace spin {
namespace {

using torch::indexing::Slice;

struct Grid {
  torch::Tensor scale;  // float32 [out], float16-representable
  torch::Tensor zero;   // float32 [out], integers in [1, 2^bits − 1]
};

// The grid of one group, w [out, n] -> per-row scale and zero point (see the header).
Grid find_grid(const torch::Tensor& w, const QuantSpec& spec) {
  const double maxq = std::pow(2.0, spec.bits) - 1;
  auto to_half_grid = [](const torch::Tensor& s) {
    // 1e-7 keeps an all-zero group's scale a positive float16 (subnormal) number.
    return s.clamp_min(1e-7).to(torch::kHalf).to(torch::kFloat32);
  };
  if (!spec.asym) {
    const double half = std::pow(2.0, spec.bits - 1);
    torch::Tensor scale = to_half_grid(w.abs().amax(1) * spec.clip / (half - 1));
    return {scale, torch::full_like(scale, half)};
  }
  torch::Tensor lo = w.amin(1).clamp_max(0) * spec.clip;
  torch::Tensor hi = w.amax(1).clamp_min(0) * spec.clip;
  torch::Tensor scale = to_half_grid((hi - lo) / maxq);
  return {scale, torch::clamp(torch::round(-lo / scale), 1, maxq)};
}

}  // namespace

torch::Tensor QuantizedWeight::dequantize() const {
  torch::Tensor g = g_idx.to(torch::kLong);
  torch::Tensor s = scales.index_select(0, g).t();  // [out, in]
  torch::Tensor z = zeros.index_select(0, g).t().to(torch::kFloat32);
  return (codes.to(torch::kFloat32) - z) * s;
}

void HessianAccumulator::add(const torch::Tensor& x) {
  SPIN_CHECK(x.size(-1) == in_, "Hessian: input has ", x.size(-1), " features, expected ", in_);
  torch::NoGradGuard no_grad;
  torch::Tensor rows = x.reshape({-1, in_});
  if (rows.scalar_type() != torch::kFloat64) rows = rows.to(torch::kFloat32);
  torch::Tensor xtx = rows.t().mm(rows).to(torch::kFloat64);
  sum_ = sum_.defined() ? sum_ + xtx : xtx;
  n_ += rows.size(0);
}

torch::Tensor HessianAccumulator::hessian() const {
  SPIN_CHECK(n_ > 0, "Hessian: no calibration inputs were added");
  return sum_ * (2.0 / double(n_));
}

QuantizedWeight gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian, const GptqOptions& opt,
                              const std::string& where) {
  torch::NoGradGuard no_grad;
  const QuantSpec& spec = opt.grid;
  SPIN_CHECK(spec.bits >= 2 && spec.bits <= 8, where, ": GPTQ needs 2 to 8 bits, got ", spec.bits);
  SPIN_CHECK(spec.clip > 0 && spec.clip <= 1, where, ": clip ratio must be in (0, 1], got ", spec.clip);
  SPIN_CHECK(opt.damp >= 0, where, ": damp must be >= 0, got ", opt.damp);
  SPIN_CHECK(opt.block_size > 0, where, ": block size must be positive, got ", opt.block_size);
  SPIN_CHECK(weight.dim() == 2, where, ": weight must be [out, in], got ", weight.sizes());
  const int64_t out = weight.size(0), in = weight.size(1);
  SPIN_CHECK(hessian.sizes() == torch::IntArrayRef({in, in}), where, ": Hessian has shape ", hessian.sizes(),
             " but the weight has ", in, " input features");
  const auto dev = weight.device();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const double maxq = std::pow(2.0, spec.bits) - 1;
  const int64_t g = spec.groupsize > 0 && spec.groupsize < in ? spec.groupsize : in;
  const int64_t groups = (in + g - 1) / g;
  // With several groups a block holds whole groups, so each group's grid sees its columns fully updated.
  const int64_t block = groups == 1 ? opt.block_size : (std::max(opt.block_size, g) + g - 1) / g * g;

  torch::Tensor W = weight.to(f32).clone();
  torch::Tensor H = hessian.to(dev, torch::kFloat64).clone();
  torch::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.index_put_({Slice(), dead}, 0.0);

  torch::Tensor perm = torch::arange(in, torch::TensorOptions().dtype(torch::kLong).device(dev));
  if (opt.act_order) perm = std::get<1>(torch::sort(H.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true));
  torch::Tensor invperm = torch::argsort(perm);
  W = W.index_select(1, perm);
  H = H.index_select(0, perm).index_select(1, perm);

  H.diagonal().add_(opt.damp * H.diagonal().mean().item<double>());
  auto [L, info] = torch::linalg_cholesky_ex(H, /*upper=*/false, /*check_errors=*/false);
  SPIN_CHECK(info.item<int64_t>() == 0, where, ": the damped Hessian is not positive definite (try a larger --damp)");
  auto [U64, info2] = torch::linalg_cholesky_ex(torch::cholesky_inverse(L), /*upper=*/true, /*check_errors=*/false);
  SPIN_CHECK(info2.item<int64_t>() == 0, where, ": the inverse Hessian is not positive definite (try a larger --damp)");
  torch::Tensor U = U64.to(torch::kFloat32);

  torch::Tensor codes = torch::empty({out, in}, f32);  // in the permuted column order
  torch::Tensor scales = torch::empty({groups, out}, f32), zeros = torch::empty({groups, out}, f32);
  Grid grid;
  if (groups == 1) grid = find_grid(W, spec);  // one grid per row, from the whole row
  for (int64_t i1 = 0; i1 < in; i1 += block) {
    const int64_t i2 = std::min(i1 + block, in), count = i2 - i1;
    torch::Tensor W1 = W.index({Slice(), Slice(i1, i2)}).clone();  // [out, count]
    torch::Tensor U1 = U.index({Slice(i1, i2), Slice(i1, i2)});
    torch::Tensor err = torch::empty({out, count}, f32);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      if (col % g == 0) {  // a new group starts: its grid comes from the columns as updated so far
        if (groups > 1) grid = find_grid(W1.index({Slice(), Slice(i, std::min(i + g, count))}), spec);
        scales[col / g] = grid.scale;
        zeros[col / g] = grid.zero;
      }
      torch::Tensor w = W1.index({Slice(), i});
      torch::Tensor c = torch::clamp(torch::round(w / grid.scale) + grid.zero, 0, maxq);
      codes.index_put_({Slice(), col}, c);
      torch::Tensor e = (w - (c - grid.zero) * grid.scale) / U1[i][i];
      W1.index({Slice(), Slice(i, count)}).sub_(e.unsqueeze(1) * U1.index({i, Slice(i, count)}).unsqueeze(0));
      err.index_put_({Slice(), i}, e);
    }
    if (i2 < in) W.index({Slice(), Slice(i2, in)}).sub_(err.mm(U.index({Slice(i1, i2), Slice(i2, in)})));
  }
  SPIN_CHECK(torch::isfinite(scales).all().item<bool>(), where, ": a quantization scale overflows float16");

  QuantizedWeight q;
  q.bits = spec.bits;
  q.codes = codes.index_select(1, invperm).to(torch::kUInt8);
  q.scales = scales;
  q.zeros = zeros.to(torch::kInt32);
  // Column j sits at position invperm[j] of the quantization order, whose groups are consecutive.
  q.g_idx = torch::div(invperm, g, "floor").to(torch::kInt32);
  return q;
}

}  // namespace spin
