#include "src/quant/gptq_model.h"

#include <cmath>

#include "src/base/check.h"
#include "src/model/forward.h"

namespace spin {
namespace {

namespace F = torch::nn::functional;

// The model's online Hadamards, no quantization (GPTQ calibrates on float activations).
ForwardOptions online(bool r3, bool r4) {
  ForwardOptions o;
  o.r3 = r3;
  o.r4 = r4;
  return o;
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

torch::Tensor decoder_layer(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& x, bool r3, bool r4,
                            const std::function<void(LinearInput, const torch::Tensor&)>& capture) {
  auto seen = [&](LinearInput which, const torch::Tensor& t) {
    if (capture) capture(which, t);
  };
  const ForwardOptions fo = online(r3, r4);
  torch::Tensor h = rms_norm(x, L.input_layernorm, c.rms_norm_eps);
  seen(LinearInput::kQkv, h);
  torch::Tensor attn = attention_heads(c, L, h, fo);
  seen(LinearInput::kO, attn);
  torch::Tensor y = x + F::linear(attn, L.o_proj);
  h = rms_norm(y, L.post_attention_layernorm, c.rms_norm_eps);
  seen(LinearInput::kGateUp, h);
  torch::Tensor m = mlp_hidden(L, h, fo);
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
  const ForwardOptions fo = online(opt.r3, opt.r4);
  auto attention_input = [&](const LayerWeights& L, const torch::Tensor& x) {
    return rms_norm(x, L.input_layernorm, c.rms_norm_eps);
  };
  auto mlp_input = [&](const LayerWeights& L, const torch::Tensor& y) {
    return rms_norm(y, L.post_attention_layernorm, c.rms_norm_eps);
  };
  // Hidden states at the current layer boundary [rows, T, hidden]; within a layer they are advanced to
  // the residual after attention (y) once o_proj is quantized, then to the layer's output.
  torch::Tensor x = F::embedding(ids.to(w.embed_tokens.device()), w.embed_tokens);
  const int64_t rows = x.size(0);
  std::vector<torch::Tensor> batches;  // views of x
  for (int64_t b = 0; b < rows; b += opt.batch_size) batches.push_back(x.narrow(0, b, std::min(opt.batch_size, rows - b)));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& L = w.layers[i];
    HessianAccumulator qkv(c.hidden_size), o(c.q_size()), gate_up(c.hidden_size), down(c.intermediate_size);
    for (const torch::Tensor& xb : batches) qkv.add(attention_input(L, xb));
    quantize_readers(L, i, LinearInput::kQkv, qkv, opt, on_quantized);

    std::vector<torch::Tensor> attn;  // one layer's attention outputs, [rows, T, q_size] in batches
    for (const torch::Tensor& xb : batches) {
      attn.push_back(attention_heads(c, L, attention_input(L, xb), fo));
      o.add(attn.back());
    }
    quantize_readers(L, i, LinearInput::kO, o, opt, on_quantized);

    for (size_t b = 0; b < batches.size(); ++b) {
      batches[b].add_(F::linear(attn[b], L.o_proj));  // x -> y
      gate_up.add(mlp_input(L, batches[b]));
    }
    attn.clear();
    quantize_readers(L, i, LinearInput::kGateUp, gate_up, opt, on_quantized);

    for (const torch::Tensor& yb : batches) down.add(mlp_hidden(L, mlp_input(L, yb), fo));
    quantize_readers(L, i, LinearInput::kDown, down, opt, on_quantized);

    for (const torch::Tensor& yb : batches) yb.add_(F::linear(mlp_hidden(L, mlp_input(L, yb), fo), L.down_proj));
  }
  return w;
}

}  // namespace spin
