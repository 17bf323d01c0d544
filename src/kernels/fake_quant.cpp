#include "src/kernels/fake_quant.h"

#include <cmath>

#include "src/base/check.h"

namespace spin {

std::string QuantSpec::describe() const {
  if (!enabled()) return "off";
  return cat(bits, "-bit ", asym ? "asym" : "sym", groupsize > 0 ? cat(" g", groupsize) : std::string(" per-row"),
             clip != 1.0 ? cat(" clip ", clip) : std::string());
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// x [..., n] -> [rows, groups, g] float32 (statistics in float32 even for bf16 inputs). When g does not
// divide n, zero padding makes the last group shorter: zeros change neither max|x| nor the range
// [min(x, 0), max(x, 0)], so the result is exactly that of a short last group.
torch::Tensor grouped(const torch::Tensor& x, int64_t g) {
  const int64_t n = x.size(-1), padded = (n + g - 1) / g * g;
  torch::Tensor xf = x.to(torch::kFloat32).reshape({-1, n});
  if (padded != n) xf = torch::constant_pad_nd(xf, {0, padded - n});
  return xf.reshape({-1, padded / g, g});
}

// [rows, groups, g] back to `like`'s shape and dtype (padding dropped).
torch::Tensor ungrouped(const torch::Tensor& t, const torch::Tensor& like) {
  const int64_t n = like.size(-1);
  return t.reshape({t.size(0), -1}).narrow(1, 0, n).reshape(like.sizes()).to(like.scalar_type());
}

// The RTN grid of every group of xg [rows, groups, g]; clip is a scalar tensor or [rows, 1, 1].
struct Grid {
  double qmax;             // largest code
  double lowest;           // smallest code: 0 (asym) or −qmax−1 (sym)
  torch::Tensor scale;     // [rows, groups, 1], clamped to >= 1e-8
  torch::Tensor zero;      // [rows, groups, 1] (asym), undefined (sym)
  torch::Tensor range;     // ∂scale/∂clip before the clamp: max|x| / qmax (sym), (max(x,0) − min(x,0)) / qmax (asym)

  Grid(const torch::Tensor& xg, const QuantSpec& spec, const torch::Tensor& clip) {
    if (spec.asym) {
      qmax = std::pow(2.0, spec.bits) - 1;
      lowest = 0;
      const torch::Tensor lo = xg.amin(-1, true).clamp_max(0), hi = xg.amax(-1, true).clamp_min(0);
      const torch::Tensor lo_c = lo * clip;
      scale = ((hi * clip - lo_c) / qmax).clamp_min(1e-8);
      zero = torch::round(-lo_c / scale);
      range = (hi - lo) / qmax;
    } else {
      qmax = std::pow(2.0, spec.bits - 1) - 1;
      lowest = -qmax - 1;
      const torch::Tensor absmax = xg.abs().amax(-1, true);
      scale = (absmax * clip / qmax).clamp_min(1e-8);
      range = absmax / qmax;
    }
  }
};

// Quantize-dequantize xg [rows, groups, g] on `grid`.
torch::Tensor rtn(const torch::Tensor& xg, const Grid& grid, bool asym) {
  if (asym) return (torch::clamp(torch::round(xg / grid.scale) + grid.zero, grid.lowest, grid.qmax) - grid.zero) * grid.scale;
  return torch::clamp(torch::round(xg / grid.scale), grid.lowest, grid.qmax) * grid.scale;
}

// RTN of x [..., n] in groups of g with the gradients described in fake_quant.h: to x straight through
// (spec.scale_grad: plus the path through the scale), to clip through the scale; round straight
// through. Only x and clip are kept for backward, which recomputes the grid (no per-op activations).
struct RtnFunction : torch::autograd::Function<RtnFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& clip, int64_t bits,
                               int64_t g, bool asym, bool scale_grad) {
    ctx->save_for_backward({x, clip});
    ctx->saved_data["bits"] = bits;
    ctx->saved_data["g"] = g;
    ctx->saved_data["asym"] = asym;
    ctx->saved_data["scale_grad"] = scale_grad;
    QuantSpec spec{int(bits), g, asym, 1.0};
    const torch::Tensor xg = grouped(x, g);
    return ungrouped(rtn(xg, Grid(xg, spec, clip), asym), x);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &clip = saved[1];
    const int64_t g = ctx->saved_data["g"].toInt();
    const bool asym = ctx->saved_data["asym"].toBool(), scale_grad = ctx->saved_data["scale_grad"].toBool();
    const QuantSpec spec{int(ctx->saved_data["bits"].toInt()), g, asym, 1.0};
    const torch::Tensor xg = grouped(x, g), go = grouped(grad_out[0], g);
    const Grid grid(xg, spec, clip);
    const torch::Tensor u = xg / grid.scale;
    const torch::Tensor code = asym ? torch::round(u) + grid.zero : torch::round(u);
    const torch::Tensor inside = (code >= grid.lowest) & (code <= grid.qmax);
    // ∂deq/∂scale per element: round(u) − u inside the range, the clamped code (less the zero) outside.
    torch::Tensor clamped = torch::clamp(code, grid.lowest, grid.qmax);
    if (asym) clamped = clamped - grid.zero;
    const torch::Tensor ddeq_dscale = torch::where(inside, torch::round(u) - u, clamped);
    // ∂L/∂scale per group, zero where the 1e-8 floor holds the scale.
    const torch::Tensor dscale = (go * ddeq_dscale).sum(-1, true) * (grid.range * clip > 1e-8);
    torch::Tensor gx, gclip;
    if (scale_grad) {
      // The scale depends on x through max|x| (sym) or max(x, 0) and min(x, 0) (asym), times clip / qmax.
      gx = go * inside;
      const torch::Tensor per_unit = dscale * clip / grid.qmax;  // [rows, groups, 1]
      if (asym) {
        gx.scatter_add_(-1, xg.argmax(-1, true), per_unit * (xg.amax(-1, true) > 0));
        gx.scatter_add_(-1, xg.argmin(-1, true), -per_unit * (xg.amin(-1, true) < 0));
      } else {
        gx.scatter_add_(-1, xg.abs().argmax(-1, true), per_unit * xg.gather(-1, xg.abs().argmax(-1, true)).sign());
      }
      gx = ungrouped(gx, x);
    } else {
      gx = grad_out[0];
    }
    if (clip.requires_grad()) {
      const torch::Tensor per_row = (dscale * grid.range).sum({1, 2}, true);  // [rows, 1, 1]
      gclip = clip.dim() == 0 ? per_row.sum() : per_row;
    }
    return {gx, gclip, {}, {}, {}, {}};
  }
};

void check_spec(const QuantSpec& spec) {
  SPIN_CHECK(spec.bits >= (spec.asym ? 1 : 2), "quantization: ", spec.asym ? "asymmetric" : "symmetric",
             " needs at least ", spec.asym ? 1 : 2, " bits, got ", spec.bits);
  SPIN_CHECK(spec.clip > 0 && spec.clip <= 1, "quantization: clip ratio must be in (0, 1], got ", spec.clip);
}

int64_t group_width(const QuantSpec& spec, int64_t n) { return spec.groupsize > 0 && spec.groupsize < n ? spec.groupsize : n; }

// fake_quant with `clip` a scalar tensor or [rows, 1, 1].
torch::Tensor fake_quant_with(const torch::Tensor& x, const QuantSpec& spec, const torch::Tensor& clip) {
  check_spec(spec);
  const int64_t g = group_width(spec, x.size(-1));
  if ((x.requires_grad() && spec.scale_grad) || clip.requires_grad())
    return RtnFunction::apply(x, clip, int64_t(spec.bits), g, spec.asym, spec.scale_grad);
  torch::Tensor deq;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor xg = grouped(x.detach(), g);
    deq = ungrouped(rtn(xg, Grid(xg, spec, clip), spec.asym), x);
  }
  // Straight-through: the value of deq, the gradient of x; nothing is kept for backward.
  return x.requires_grad() ? x + (deq - x.detach()) : deq;
}

}  // namespace

torch::Tensor fake_quant(const torch::Tensor& x, const QuantSpec& spec) {
  if (!spec.enabled()) return x;
  return fake_quant_with(x, spec, torch::scalar_tensor(spec.clip));
}

torch::Tensor fake_quant(const torch::Tensor& x, const QuantSpec& spec, const torch::Tensor& clip) {
  if (!spec.enabled()) return x;
  const int64_t rows = x.numel() / x.size(-1);
  SPIN_CHECK(clip.numel() == rows, "quantization: ", clip.numel(), " clip ratios for ", rows, " rows");
  return fake_quant_with(x, spec, clip.to(torch::kFloat32).reshape({rows, 1, 1}));
}

}  // namespace spin
