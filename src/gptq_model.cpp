#include "src/gptq_model.h"

#include <cmath>

#include "src/check.h"
#include "src/hadamard.h"

namespace spin {
namespace {

namespace F = torch::nn::functional;

// The layer arithmetic below mirrors src/model.cpp (which keeps it private); test_gptq checks that
// chaining decoder_layer reproduces forward_hidden.
torch::Tensor upcast(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? x : x.to(torch::kFloat32);
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  torch::Tensor xf = upcast(x);
  return (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(x.scalar_type()) * weight;
}

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

// x [B, heads, T, head_dim], HF rotate_half convention; cos/sin [T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

const char* kLinearNames[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// The linears of `layer` that read `input`, as (index into kLinearNames, slot).
std::vector<std::pair<int, torch::Tensor*>> readers(LayerWeights& L, LinearInput input) {
  switch (input) {
    case LinearInput::kQkv: return {{0, &L.q_proj}, {1, &L.k_proj}, {2, &L.v_proj}};
    case LinearInput::kO: return {{3, &L.o_proj}};
    case LinearInput::kGateUp: return {{4, &L.gate_proj}, {5, &L.up_proj}};
    case LinearInput::kDown: return {{6, &L.down_proj}};
  }
  fail("gptq: unknown linear input");
}

}  // namespace

namespace {

// Attention output before o_proj: h [B, T, hidden] (the normed input) -> [B, T, q_size].
torch::Tensor attention_heads(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& h, bool r3) {
  const int64_t B = h.size(0), T = h.size(1), nh = c.num_attention_heads, nkv = c.num_key_value_heads,
                hd = c.head_dim;
  torch::Tensor freqs = torch::outer(torch::arange(T, torch::kFloat64), inv_frequencies(c));  // [T, hd/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);                                          // [T, hd]
  torch::Tensor cos = emb.cos().to(h.device(), h.scalar_type()), sin = emb.sin().to(h.device(), h.scalar_type());
  torch::Tensor mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(h.device())).triu(1);
  // [B, T, heads * hd] -> [B, heads, T, hd]
  torch::Tensor q = F::linear(h, L.q_proj, L.q_bias).view({B, T, nh, hd}).transpose(1, 2);
  torch::Tensor k = F::linear(h, L.k_proj, L.k_bias).view({B, T, nkv, hd}).transpose(1, 2);
  torch::Tensor v = F::linear(h, L.v_proj, L.v_bias).view({B, T, nkv, hd}).transpose(1, 2);
  if (c.qk_norm) {
    q = rms_norm(q, L.q_norm, c.rms_norm_eps);
    k = rms_norm(k, L.k_norm, c.rms_norm_eps);
  }
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  if (r3) {
    q = apply_hadamard(q);
    k = apply_hadamard(k);
  }
  const int64_t rep = nh / nkv;
  k = k.unsqueeze(2).expand({B, nkv, rep, T, hd}).reshape({B, nh, T, hd});
  v = v.unsqueeze(2).expand({B, nkv, rep, T, hd}).reshape({B, nh, T, hd});
  torch::Tensor scores = upcast(torch::matmul(q, k.transpose(-2, -1))) / std::sqrt(double(hd));
  torch::Tensor probs = torch::softmax(scores.masked_fill(mask, -INFINITY), -1).to(v.scalar_type());
  return torch::matmul(probs, v).transpose(1, 2).reshape({B, T, nh * hd});
}

torch::Tensor attention_input(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& x) {
  return rms_norm(x, L.input_layernorm, c.rms_norm_eps);
}

torch::Tensor mlp_input(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& y) {
  return rms_norm(y, L.post_attention_layernorm, c.rms_norm_eps);
}

// down_proj's input [B, T, intermediate] (x·H with r4).
torch::Tensor mlp_hidden(const LayerWeights& L, const torch::Tensor& h, bool r4) {
  torch::Tensor m = torch::silu(F::linear(h, L.gate_proj)) * F::linear(h, L.up_proj);
  return r4 ? apply_hadamard(m) : m;
}

}  // namespace

torch::Tensor decoder_layer(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& x, bool r3, bool r4,
                            const std::function<void(LinearInput, const torch::Tensor&)>& capture) {
  auto seen = [&](LinearInput which, const torch::Tensor& t) {
    if (capture) capture(which, t);
  };
  torch::Tensor h = attention_input(c, L, x);
  seen(LinearInput::kQkv, h);
  torch::Tensor attn = attention_heads(c, L, h, r3);
  seen(LinearInput::kO, attn);
  torch::Tensor y = x + F::linear(attn, L.o_proj);
  h = mlp_input(c, L, y);
  seen(LinearInput::kGateUp, h);
  torch::Tensor m = mlp_hidden(L, h, r4);
  seen(LinearInput::kDown, m);
  return y + F::linear(m, L.down_proj);
}

namespace {

// GPTQ of the linears of layer `index` that read `input`, whose Hessian `acc` holds; each is replaced
// by its dequantized value.
void quantize_readers(LayerWeights& L, size_t index, LinearInput input, const HessianAccumulator& acc,
                      const GptqModelOptions& opt, const OnQuantized& on_quantized) {
  const torch::Tensor H = acc.hessian();
  for (auto& [k, slot] : readers(L, input)) {
    const std::string name = cat("model.layers.", index, ".", kLinearNames[k], ".weight");
    QuantizedWeight q = gptq_quantize(*slot, H, opt.gptq, name);
    if (on_quantized) on_quantized(name, q);
    *slot = q.dequantize().to(slot->device(), slot->scalar_type());
  }
}

}  // namespace

ModelWeights gptq_model(const ModelConfig& c, const ModelWeights& weights, const torch::Tensor& ids,
                        const GptqModelOptions& opt, const OnQuantized& on_quantized) {
  torch::NoGradGuard no_grad;
  SPIN_CHECK(ids.dim() == 2 && ids.size(0) > 0, "gptq: calibration ids must be [rows, seq] with rows > 0, got ",
             ids.sizes());
  SPIN_CHECK(opt.batch_size > 0, "gptq: batch size must be positive, got ", opt.batch_size);
  ModelWeights w = weights;
  // Hidden states at the current layer boundary [rows, T, hidden]; within a layer they are advanced to
  // the residual after attention (y) once o_proj is quantized, then to the layer's output.
  torch::Tensor x = F::embedding(ids.to(w.embed_tokens.device()), w.embed_tokens);
  const int64_t rows = x.size(0);
  std::vector<torch::Tensor> batches;  // views of x
  for (int64_t b = 0; b < rows; b += opt.batch_size) batches.push_back(x.narrow(0, b, std::min(opt.batch_size, rows - b)));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& L = w.layers[i];
    HessianAccumulator qkv(c.hidden_size), o(c.q_size()), gate_up(c.hidden_size), down(c.intermediate_size);
    for (const torch::Tensor& xb : batches) qkv.add(attention_input(c, L, xb));
    quantize_readers(L, i, LinearInput::kQkv, qkv, opt, on_quantized);

    std::vector<torch::Tensor> attn;  // one layer's attention outputs, [rows, T, q_size] in batches
    for (const torch::Tensor& xb : batches) {
      attn.push_back(attention_heads(c, L, attention_input(c, L, xb), opt.r3));
      o.add(attn.back());
    }
    quantize_readers(L, i, LinearInput::kO, o, opt, on_quantized);

    for (size_t b = 0; b < batches.size(); ++b) {
      batches[b].add_(F::linear(attn[b], L.o_proj));  // x -> y
      gate_up.add(mlp_input(c, L, batches[b]));
    }
    attn.clear();
    quantize_readers(L, i, LinearInput::kGateUp, gate_up, opt, on_quantized);

    for (const torch::Tensor& yb : batches) down.add(mlp_hidden(L, mlp_input(c, L, yb), opt.r4));
    quantize_readers(L, i, LinearInput::kDown, down, opt, on_quantized);

    for (const torch::Tensor& yb : batches) yb.add_(F::linear(mlp_hidden(L, mlp_input(c, L, yb), opt.r4), L.down_proj));
  }
  return w;
}

}  // namespace spin
