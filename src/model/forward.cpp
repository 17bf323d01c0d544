#include "src/model/forward.h"

#include <cmath>

#include "src/kernels/attention.h"
#include "src/base/check.h"
#include "src/kernels/hadamard.h"

namespace spin {
namespace {

namespace F = torch::nn::functional;

// Reductions (norm statistics, softmax) run in at least float32.
torch::Tensor upcast(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? x : x.to(torch::kFloat32);
}

torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  return torch::nn::functional::linear(x, w, b);
}

// Inverse RoPE frequencies [head_dim / 2], with HF's rope_scaling rules.
torch::Tensor inv_frequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  torch::Tensor inv = 1.0 / torch::pow(c.rope_theta, torch::arange(0, half, torch::kFloat64) * 2.0 / c.head_dim);
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") return inv / rs.factor;
  if (rs.type == "llama3") {
    const double low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor;
    torch::Tensor wavelen = 2 * M_PI / inv;
    torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv / rs.factor, inv);
    torch::Tensor smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
                           (rs.high_freq_factor - rs.low_freq_factor);
    torch::Tensor mid = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    torch::Tensor is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
    return torch::where(is_mid, mid, scaled);
  }
  return inv;
}

// x [B, heads, T, head_dim] with the HF rotate_half convention; cos/sin [T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// The attention output before o_proj: normed, quantized h [B, T, hidden] -> [B, T, q_size]
// (q/k/v, q/k norms, RoPE, R3, KV quantization, causal attention within the sliding window).
torch::Tensor attention_heads(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& h,
                              const ForwardOptions& opt) {
  const int64_t B = h.size(0), T = h.size(1), nh = c.num_attention_heads, nkv = c.num_key_value_heads,
                hd = c.head_dim;
  const auto dtype = h.scalar_type();
  const auto device = h.device();
  torch::Tensor freqs = torch::outer(torch::arange(T, torch::kFloat64), inv_frequencies(c));  // [T, hd/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);                                          // [T, hd]
  torch::Tensor cos = emb.cos().to(device, dtype), sin = emb.sin().to(device, dtype);
  // [B, T, heads * hd] -> [B, heads, T, hd]
  torch::Tensor q = dense(h, L.q_proj, L.q_bias).view({B, T, nh, hd}).transpose(1, 2);
  torch::Tensor k = dense(h, L.k_proj, L.k_bias).view({B, T, nkv, hd}).transpose(1, 2);
  torch::Tensor v = dense(h, L.v_proj, L.v_bias).view({B, T, nkv, hd}).transpose(1, 2);
  if (c.qk_norm) {
    q = rms_norm(q, L.q_norm, c.rms_norm_eps);
    k = rms_norm(k, L.k_norm, c.rms_norm_eps);
  }
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  if (opt.r3) {
    q = apply_hadamard(q);
    k = apply_hadamard(k);
  }
  k = fake_quant(k, opt.key);
  v = fake_quant(v, opt.value);
  return causal_attention(q, k, v, /*block_rows=*/0, c.sliding_window);
}

// down_proj's input: normed, quantized h [B, T, hidden] -> [B, T, intermediate] (SwiGLU, then x·H with r4).
torch::Tensor mlp_hidden(const LayerWeights& L, const torch::Tensor& h, const ForwardOptions& opt) {
  torch::Tensor m = torch::silu(dense(h, L.gate_proj)) * dense(h, L.up_proj);
  return opt.r4 ? apply_hadamard(m) : m;
}

}  // namespace

ForwardOptions online_hadamards(bool r3, bool r4) {
  ForwardOptions o;
  o.r3 = r3;
  o.r4 = r4;
  return o;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  torch::Tensor xf = upcast(x);
  torch::Tensor y = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return (y.to(x.scalar_type())) * weight;
}

torch::Tensor decoder_layer(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& x,
                            const ForwardOptions& opt, const LayerTap& tap) {
  auto go_on = [&](LinearInput input, const torch::Tensor& t) { return !tap || tap(input, t); };
  const torch::Tensor h = fake_quant(rms_norm(x, L.input_layernorm, c.rms_norm_eps), opt.act);
  if (!go_on(LinearInput::attn_in, h)) return {};
  const torch::Tensor heads = fake_quant(attention_heads(c, L, h, opt), opt.act);
  if (!go_on(LinearInput::attn_heads, heads)) return {};
  const torch::Tensor y = x + dense(heads, L.o_proj);
  const torch::Tensor h2 = fake_quant(rms_norm(y, L.post_attention_layernorm, c.rms_norm_eps), opt.act);
  if (!go_on(LinearInput::mlp_in, h2)) return {};
  const torch::Tensor m = fake_quant(mlp_hidden(L, h2, opt), opt.act);
  if (!go_on(LinearInput::mlp_hidden, m)) return {};
  return y + dense(m, L.down_proj);
}

torch::Tensor embed(const ModelWeights& w, const torch::Tensor& ids) {
  SPIN_CHECK(ids.dim() == 2, "forward: token ids must be [batch, seq], got ", ids.sizes());
  torch::Tensor x = F::embedding(ids.to(w.embed_tokens.device()), w.embed_tokens);
  return w.r1_online.defined() ? x.matmul(w.r1_online) : x;
}

torch::Tensor forward_hidden(const ModelConfig& c, const ModelWeights& w, const torch::Tensor& ids,
                             const ForwardOptions& opt) {
  torch::Tensor x = embed(w, ids);
  for (const LayerWeights& L : w.layers) x = decoder_layer(c, L, x, opt);
  return rms_norm(x, w.norm, c.rms_norm_eps);
}

torch::Tensor lm_logits(const ModelWeights& w, const torch::Tensor& hidden) {
  return upcast(dense(w.r1_online.defined() ? hidden.matmul(w.r1_online.t()) : hidden, w.lm_head));
}

}  // namespace spin
