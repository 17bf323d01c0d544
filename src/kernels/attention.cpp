#include "src/kernels/attention.h"

#include <cmath>

#include "src/base/check.h"
#include "src/kernels/attention_rows.h"

namespace spin {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Shapes, block layout and scratch memory shared by the forward and the backward. Query head
// h = g * rep + r uses K/V head g; a block's query rows are stacked as [B * kv_heads, rep * rows, hd]
// (row r * rows + i is position t0 + i of head g * rep + r), so one GEMM per K/V head covers its rep
// query heads. The T-wide per-block tensors are written into buffers allocated once per call: a fresh
// tensor per block pays its page faults and zeroing again, which makes the score GEMM less than half
// as fast (docs/BENCHMARKS.md).
class Blocks {
 public:
  Blocks(int64_t G, int64_t rep, int64_t T, const torch::TensorOptions& options, int64_t block_rows, int64_t window)
      : G_(G), rep_(rep), T_(T), window_(window < T ? window : 0), options_(options),
        score_options_(options.dtype(options.dtype() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32)) {
    const int64_t row_bytes = G * rep * T * int64_t(score_options_.dtype().itemsize());
    rows_ = block_rows > 0 ? std::min(block_rows, T) : std::clamp<int64_t>(kAttentionBlockBytes / row_bytes, 1, T);
    future_ = torch::ones({rows_, rows_}, options.dtype(torch::kBool)).triu(1);
  }
  int64_t rows() const { return rows_; }
  // The first key block [t0, t0 + rows) reads: 0, or the oldest key in its first row's window.
  int64_t first_key(int64_t t0) const { return window_ ? std::max<int64_t>(0, t0 - window_ + 1) : 0; }
  bool mixed() const { return options_.dtype() != score_options_.dtype(); }
  const torch::TensorOptions& score_options() const { return score_options_; }

  // Rows [t0, t0 + rows) of a grouped [G, rep, T, d] tensor -> [G, rep * rows, d].
  torch::Tensor block(const torch::Tensor& g, int64_t t0, int64_t rows) const {
    return g.narrow(2, t0, rows).reshape({G_, rep_ * rows, g.size(3)});
  }
  // Writes a block [G, rep * rows, d] into rows [t0, t0 + rows) of a grouped tensor.
  void store(torch::Tensor& g, int64_t t0, int64_t rows, const torch::Tensor& b) const {
    g.narrow(2, t0, rows).copy_(b.view({G_, rep_, rows, g.size(3)}));
  }
  // A [G, rep * rows, cols] view of scratch buffer `i` in the score dtype (or the inputs' dtype).
  torch::Tensor scratch(int i, int64_t rows, int64_t cols, bool score_dtype = true) {
    torch::Tensor& buf = buffers_[2 * i + (score_dtype ? 0 : 1)];
    if (!buf.defined()) buf = torch::empty({G_ * rep_ * rows_ * T_}, score_dtype ? score_options_ : options_);
    return buf.narrow(0, 0, G_ * rep_ * rows * cols).view({G_, rep_ * rows, cols});
  }
  // a·b into scratch `i` in the score dtype: [G, rep * rows, cols].
  torch::Tensor product(int i, const torch::Tensor& a, const torch::Tensor& b, int64_t rows) {
    const int64_t cols = b.size(2);
    torch::Tensor s = scratch(i, rows, cols);
    if (!mixed()) return torch::bmm_out(s, a, b);
    torch::Tensor low = scratch(i, rows, cols, false);
    return s.copy_(torch::bmm_out(low, a, b));
  }
  // Probabilities (or any score-dtype block) in the inputs' dtype, for the next GEMM.
  torch::Tensor to_input(int i, const torch::Tensor& x, int64_t rows) {
    return mixed() ? scratch(i, rows, x.size(2), false).copy_(x) : x;
  }
  // Causal scores of query block qb [G, rep * rows, hd] against keys [k0, t0 + rows) of kc [G, T, hd]
  // (k0 = first_key(t0)), in scratch 0: [G, rep * rows, t0 + rows - k0], the future and the keys
  // outside the window (j <= i - window) at -inf.
  torch::Tensor scores(const torch::Tensor& qb, const torch::Tensor& kc, int64_t t0, int64_t rows) {
    const int64_t k0 = first_key(t0), n = t0 + rows - k0;
    torch::Tensor s = product(0, qb, kc.narrow(1, k0, n).transpose(1, 2), rows);
    const torch::Tensor future = future_.narrow(0, 0, rows).narrow(1, 0, rows);
    s.view({G_, rep_, rows, n}).narrow(3, t0 - k0, rows).masked_fill_(future, -INFINITY);
    if (window_) {
      const auto index = torch::TensorOptions().dtype(torch::kInt64).device(options_.device());
      const torch::Tensor i = torch::arange(t0, t0 + rows, index).unsqueeze(1), j = torch::arange(k0, t0 + rows, index);
      s.view({G_, rep_, rows, n}).masked_fill_(j <= i - window_, -INFINITY);  // [rows, n]
    }
    return s;
  }

 private:
  int64_t G_, rep_, T_, window_, rows_;  // window_ 0: none (or not narrower than T)
  torch::TensorOptions options_, score_options_;
  torch::Tensor future_;         // [rows, rows] true above the diagonal
  torch::Tensor buffers_[4];     // scratch i in the score dtype (2i) and the inputs' dtype (2i + 1)
};

// Flash-attention style: the forward keeps q, k, v, the output and each row's log-sum-exp; the
// backward recomputes a block's probabilities from them instead of keeping T×T values per head.
// Inputs: q [B, heads, T, hd] (already scaled by 1/sqrt(hd)), k and v [B, kv_heads, T, hd].
struct CausalAttentionFunction : torch::autograd::Function<CausalAttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t block_rows, int64_t window) {
    const int64_t B = q.size(0), nh = q.size(1), nkv = k.size(1), T = q.size(2), hd = q.size(3), G = B * nkv;
    Blocks blocks(G, nh / nkv, T, q.options(), block_rows, window);
    const torch::Tensor qg = q.reshape({G, nh / nkv, T, hd});
    const torch::Tensor kc = k.reshape({G, T, hd}), vc = v.reshape({G, T, hd});
    torch::Tensor out = torch::empty_like(qg);
    torch::Tensor lse = torch::empty({G, nh / nkv, T, 1}, blocks.score_options());
    for (int64_t t0 = 0; t0 < T; t0 += blocks.rows()) {
      const int64_t rows = std::min(blocks.rows(), T - t0);
      torch::Tensor p = blocks.scores(blocks.block(qg, t0, rows), kc, t0, rows);
      const torch::Tensor m = std::get<0>(p.max(-1, true));  // [G, rep * rows, 1]
      p.sub_(m).exp_();
      const torch::Tensor sum = p.sum(-1, true);
      p.div_(sum);
      const int64_t k0 = blocks.first_key(t0);
      blocks.store(out, t0, rows, torch::bmm(blocks.to_input(1, p, rows), vc.narrow(1, k0, t0 + rows - k0)));
      blocks.store(lse, t0, rows, m + sum.log());
    }
    ctx->saved_data["block_rows"] = blocks.rows();
    ctx->saved_data["window"] = window;
    ctx->save_for_backward({qg, kc, vc, out, lse});
    return out.view({B, nh, T, hd});
  }

  // With P = softmax(S), O = P·V and D = rowsum(dO ⊙ O):  dV = Pᵀ·dO,  dS = P ⊙ (dO·Vᵀ − D),
  // dQ = dS·K,  dK = dSᵀ·Q. K and V gradients of a block cover keys [first_key(t0), t1) and are
  // accumulated in the score dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &qg = saved[0], &kc = saved[1], &vc = saved[2], &out = saved[3], &lse = saved[4];
    const int64_t G = qg.size(0), rep = qg.size(1), T = qg.size(2), hd = qg.size(3);
    Blocks blocks(G, rep, T, qg.options(), ctx->saved_data["block_rows"].toInt(), ctx->saved_data["window"].toInt());
    const torch::Tensor dog = grads[0].reshape({G, rep, T, hd});
    const torch::Tensor D = (dog.to(blocks.score_options().dtype()) * out).sum(-1, true);  // [G, rep, T, 1]
    torch::Tensor dq = torch::empty_like(qg);
    torch::Tensor dk = torch::zeros({G, T, hd}, blocks.score_options()), dv = torch::zeros_like(dk);
    for (int64_t t0 = 0; t0 < T; t0 += blocks.rows()) {
      const int64_t rows = std::min(blocks.rows(), T - t0), k0 = blocks.first_key(t0), n = t0 + rows - k0;
      const torch::Tensor qb = blocks.block(qg, t0, rows), dob = blocks.block(dog, t0, rows);
      torch::Tensor p = blocks.scores(qb, kc, t0, rows).sub_(blocks.block(lse, t0, rows)).exp_();  // [G, rep*rows, n]
      dv.narrow(1, k0, n).add_(torch::bmm(blocks.to_input(0, p, rows).transpose(1, 2), dob));
      torch::Tensor ds = blocks.product(1, dob, vc.narrow(1, k0, n).transpose(1, 2), rows);
      ds.sub_(blocks.block(D, t0, rows)).mul_(p);
      const torch::Tensor dsi = blocks.to_input(1, ds, rows);
      blocks.store(dq, t0, rows, torch::bmm(dsi, kc.narrow(1, k0, n)));
      dk.narrow(1, k0, n).add_(torch::bmm(dsi.transpose(1, 2), qb));
    }
    const int64_t B = grads[0].size(0), nkv = G / B;
    return {dq.view({B, nkv * rep, T, hd}), dk.to(qg.scalar_type()).view({B, nkv, T, hd}),
            dv.to(qg.scalar_type()).view({B, nkv, T, hd}), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t block_rows, int64_t window, AttentionKernel kernel) {
  SPIN_CHECK(window >= 0, "causal_attention: window ", window, " must be 0 (none) or positive");
  SPIN_CHECK(q.dim() == 4 && k.dim() == 4 && q.size(1) % k.size(1) == 0 && k.sizes() == v.sizes() &&
                 k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3),
             "causal_attention: q ", q.sizes(), " does not match k ", k.sizes(), " / v ", v.sizes());
  const int64_t B = q.size(0), nh = q.size(1), T = q.size(2), hd = q.size(3);
  if (kernel == AttentionKernel::automatic)
    kernel = q.is_cpu() && hd <= kRowKernelMaxHeadDim && block_rows == 0 ? AttentionKernel::rows : AttentionKernel::blocks;
  SPIN_CHECK(kernel != AttentionKernel::rows || q.is_cpu(), "causal_attention: the row kernel runs on CPU only");
  const torch::Tensor scaled = q * (1.0 / std::sqrt(double(hd)));
  const torch::Tensor o = kernel == AttentionKernel::rows ? causal_attention_rows(scaled, k, v, window)
                                                          : CausalAttentionFunction::apply(scaled, k, v, block_rows, window);
  return o.transpose(1, 2).reshape({B, T, nh * hd});  // [B, heads, T, hd] -> [B, T, heads * hd]
}

}  // namespace spin
