#include "src/fake_quant.h"

#include <cmath>
#include <optional>

#include "src/check.h"

namespace spin {

std::string QuantSpec::describe() const {
  if (!enabled()) return "off";
  return cat(bits, "-bit ", asym ? "asym" : "sym", groupsize > 0 ? cat(" g", groupsize) : std::string(" per-row"),
             clip != 1.0 ? cat(" clip ", clip) : std::string());
}

namespace {

// Round with a straight-through gradient when `grad`, plain otherwise.
torch::Tensor rounded(const torch::Tensor& u, bool grad) { return grad ? u + (u.round() - u).detach() : u.round(); }

// RTN quantize-dequantize of x [..., n] in groups of g along the last dimension. clip is a scalar tensor
// or [rows, 1, 1] (one ratio per row of x viewed as [rows, n]). When x or clip requires grad the result
// is differentiable in them through the scale (statistics and clip) with a straight-through round.
torch::Tensor dequantized(const torch::Tensor& x, const QuantSpec& spec, int64_t g, const torch::Tensor& clip) {
  const bool grad = x.requires_grad() || clip.requires_grad();
  const int64_t n = x.size(-1);
  const int64_t padded = (n + g - 1) / g * g;
  // [..., n] -> [rows, groups, g]; statistics in float32 even for bf16 inputs. When g does not divide
  // n, zero padding makes the last group shorter: zeros change neither max|x| nor the range
  // [min(x, 0), max(x, 0)], so the result is exactly that of a short last group.
  torch::Tensor xf = x.to(torch::kFloat32).reshape({-1, n});
  if (padded != n) xf = torch::constant_pad_nd(xf, {0, padded - n});
  torch::Tensor xg = xf.reshape({-1, padded / g, g});
  torch::Tensor deq;
  if (spec.asym) {
    const double qmax = std::pow(2.0, spec.bits) - 1;
    torch::Tensor lo = xg.amin(-1, true).clamp_max(0) * clip;
    torch::Tensor hi = xg.amax(-1, true).clamp_min(0) * clip;
    torch::Tensor scale = ((hi - lo) / qmax).clamp_min(1e-8);
    torch::Tensor zero = torch::round(-lo / scale).detach();
    deq = (torch::clamp(rounded(xg / scale, grad) + zero, 0, qmax) - zero) * scale;
  } else {
    const double qmax = std::pow(2.0, spec.bits - 1) - 1;
    torch::Tensor scale = (xg.abs().amax(-1, true) * clip / qmax).clamp_min(1e-8);
    deq = torch::clamp(rounded(xg / scale, grad), -qmax - 1, qmax) * scale;
  }
  return deq.reshape({-1, padded}).narrow(1, 0, n).reshape(x.sizes()).to(x.scalar_type());
}

void check_spec(const QuantSpec& spec) {
  SPIN_CHECK(spec.bits >= (spec.asym ? 1 : 2), "quantization: ", spec.asym ? "asymmetric" : "symmetric",
             " needs at least ", spec.asym ? 1 : 2, " bits, got ", spec.bits);
  SPIN_CHECK(spec.clip > 0 && spec.clip <= 1, "quantization: clip ratio must be in (0, 1], got ", spec.clip);
}

int64_t group_width(const QuantSpec& spec, int64_t n) { return spec.groupsize > 0 && spec.groupsize < n ? spec.groupsize : n; }

// fake_quant with `clip` a scalar tensor or [rows, 1, 1].
torch::Tensor fake_quant_with(const torch::Tensor& x, const QuantSpec& spec, const torch::Tensor& clip) {
  check_spec(spec);
  const int64_t n = x.size(-1), g = group_width(spec, n);
  if (spec.scale_grad && x.requires_grad()) return dequantized(x, spec, g, clip);
  torch::Tensor deq;
  {
    std::optional<torch::NoGradGuard> no_grad;
    if (!clip.requires_grad()) no_grad.emplace();
    deq = dequantized(x.detach(), spec, g, clip);
  }
  // Straight-through: the value of deq, the gradient of x.
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
