#include "src/train/adapt.h"

#include <algorithm>
#include <iostream>
#include <numeric>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "optim/stiefel.h"
#include "src/rotation/fusion.h"

namespace spin {
namespace {

namespace F = torch::nn::functional;

// Calibration tokens per forward batch while collecting activations (whole rows, at least one): bounds
// the [rows, heads, T, T] attention scores of the float forward.
constexpr int64_t kTokensPerBatch = 2048;

// The block size block_polar uses for a rotation of size n (n: one block); `what` names the rotation.
int64_t effective_block(int64_t n, int64_t block, const std::string& what) {
  SPIN_CHECK(block >= 0, "adapt: block size must be >= 0, got ", block);
  if (block == 0 || block >= n) return n;
  SPIN_CHECK(n % block == 0, "adapt: block size ", block, " does not divide ", what, "'s size ", n,
             " (use a divisor of ", n, ", or 0 for one full block)");
  return block;
}

// Where the rows of A·R [m, n] live in the tensor that is really quantized.
enum class Layout {
  rows,     // A·R viewed as [m/k, k·n]: k consecutive rows (a token's or a weight row's head slices)
            // form one quantized vector, groups along it (k = 1: each row on its own)
  columns,  // producers RᵀW, A = Wᵀ stacked over k heads: A·R viewed as [k, m/k, n]; every column of
            // every block is one row of RᵀW, quantized along the m/k axis
};

// One term of E(R): w·||A·R − Q(A·R)||², Q = `spec` applied in `layout`.
struct Term {
  torch::Tensor a;  // [m, n], the dtype and device it was computed in
  QuantSpec spec;
  Layout layout;
  int64_t k;      // see Layout
  double weight;  // 1 / ||A||²
};

// Appends the term for A (none when A is all zeros: it cannot be quantized wrongly).
void add_term(std::vector<Term>& terms, const torch::Tensor& a, const QuantSpec& spec, Layout layout,
              int64_t k = 1) {
  const double norm2 = a.to(torch::kFloat64).pow(2).sum().item<double>();
  if (norm2 > 0) terms.push_back({a, spec, layout, k, 1.0 / norm2});
}

// Q(A·R): quantize `ar` [m, n] in its true context (see Layout), back in ar's layout.
torch::Tensor quantize_in_context(const Term& t, const torch::Tensor& ar) {
  const int64_t n = ar.size(1);
  if (t.layout == Layout::rows) return fake_quant(ar.reshape({-1, t.k * n}), t.spec).reshape(ar.sizes());
  const torch::Tensor rows_of_rtw = ar.view({t.k, -1, n}).transpose(1, 2);  // [k, n, m/k]
  return fake_quant(rows_of_rtw, t.spec).transpose(1, 2).reshape(ar.sizes());
}

struct Evaluation {
  double objective = 0;  // E(R)
  torch::Tensor c;       // Σ w Aᵀ·Q(A·R) [n, n], float64 CPU
};

Evaluation evaluate(const std::vector<Term>& terms, const torch::Tensor& r) {
  Evaluation e;
  e.c = torch::zeros_like(r);
  for (const Term& t : terms) {
    const torch::Tensor a = t.a.to(torch::kFloat64);
    const torch::Tensor ar = a.matmul(r.to(a.device()));
    const torch::Tensor y = quantize_in_context(t, ar);
    e.objective += t.weight * (ar - y).pow(2).sum().item<double>();
    e.c += (t.weight * a.t().matmul(y)).cpu();
  }
  return e;
}

struct Refined {
  torch::Tensor r;  // the best R seen
  AdaptStageReport report;
};

// `steps` alternations from r0 (float64 CPU [n, n]) over R = r0·B, B with blocks of `block`. Each step
// starts from the latest R, also when it was worse (it may get out again); the best R is returned.
Refined refine(const std::string& name, const std::vector<Term>& terms, const torch::Tensor& r0, int64_t block,
               int64_t steps) {
  Refined out{r0, {name, 0, 0, int64_t(terms.size()), 0}};
  Evaluation e = evaluate(terms, r0);
  out.report.before = out.report.after = e.objective;
  for (int64_t step = 1; step <= steps; ++step) {
    const torch::Tensor r = r0.matmul(block_polar(r0.t().matmul(e.c), block));
    e = evaluate(terms, r);
    if (e.objective < out.report.after) {
      out.r = r;
      out.report.after = e.objective;
      out.report.best_step = step;
    }
  }
  return out;
}

// Float activations of one layer for the sampled tokens, [S, width] in base's dtype; undefined when
// no term needs them.
struct LayerActivations {
  torch::Tensor attn_in, mlp_in;  // normed inputs of attention and MLP [S, hidden]      (R1, act)
  torch::Tensor values;           // v_proj output [S, nkv·head_dim]                      (R2, value)
  torch::Tensor heads;            // attention output = o_proj input [S, nh·head_dim]     (R2, act)
};

// Flat indices into the N·T calibration tokens: the first max_samples of a seeded permutation, sorted
// (all tokens when there are no more).
std::vector<int64_t> sample_tokens(int64_t total, int64_t max_samples, uint64_t seed) {
  if (total <= max_samples) {
    std::vector<int64_t> all(total);
    std::iota(all.begin(), all.end(), int64_t(0));
    return all;
  }
  std::vector<int64_t> picks = data::seeded_permutation(total, seed);
  picks.resize(max_samples);
  std::sort(picks.begin(), picks.end());
  return picks;
}

// One pass of the float model over ids in batches of whole rows, keeping the sampled tokens' rows.
std::vector<LayerActivations> collect_activations(const ModelConfig& c, const ModelWeights& base,
                                                  const torch::Tensor& ids, const Rotations& init,
                                                  const ForwardOptions& quant, const AdaptOptions& o) {
  std::vector<LayerActivations> acts(c.num_hidden_layers);
  const bool r1_act = init.r1.defined() && quant.act.enabled();
  const bool values = !init.r2.empty() && quant.value.enabled(), heads = !init.r2.empty() && quant.act.enabled();
  if (!r1_act && !values && !heads) return acts;
  SPIN_CHECK(ids.dim() == 2 && ids.numel() > 0, "adapt: calibration ids must be a non-empty [rows, seq], got ",
             ids.sizes());

  const int64_t N = ids.size(0), T = ids.size(1);
  const std::vector<int64_t> picks = sample_tokens(N * T, o.max_samples, o.seed);
  const int64_t S = picks.size();
  auto buffer = [&](bool needed, int64_t width) {
    return needed ? torch::empty({S, width}, base.embed_tokens.options()) : torch::Tensor();
  };
  for (LayerActivations& a : acts) {
    a.attn_in = buffer(r1_act, c.hidden_size);
    a.mlp_in = buffer(r1_act, c.hidden_size);
    a.values = buffer(values, c.num_key_value_heads * c.head_dim);
    a.heads = buffer(heads, c.num_attention_heads * c.head_dim);
  }

  // base may hold down_proj·H: the float function needs x·H online.
  const ForwardOptions float_model = online_hadamards(false, quant.r4);
  const int64_t batch_rows = std::max<int64_t>(1, kTokensPerBatch / T);
  auto next = picks.begin();
  for (int64_t row = 0; row < N && next != picks.end(); row += batch_rows) {
    const int64_t B = std::min(batch_rows, N - row);
    const auto end = std::lower_bound(next, picks.end(), (row + B) * T);
    if (end == next) continue;
    std::vector<int64_t> local(next, end);
    for (int64_t& i : local) i -= row * T;
    const torch::Tensor index = torch::tensor(local).to(base.embed_tokens.device());
    const int64_t first = next - picks.begin();
    // dst[first : first + |local|] = the sampled rows of t [B, T, width].
    auto keep = [&](torch::Tensor& dst, const torch::Tensor& t) {
      if (dst.defined()) dst.narrow(0, first, index.size(0)).copy_(t.reshape({B * T, -1}).index_select(0, index));
    };

    torch::Tensor x = embed(base, ids.narrow(0, row, B));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const LayerWeights& L = base.layers[l];
      LayerActivations& a = acts[l];
      x = decoder_layer(c, L, x, float_model, [&](LinearInput input, const torch::Tensor& t) {
        switch (input) {
          case LinearInput::attn_in:
            keep(a.attn_in, t);
            if (a.values.defined()) keep(a.values, F::linear(t, L.v_proj, L.v_bias));
            break;
          case LinearInput::attn_heads: keep(a.heads, t); break;
          case LinearInput::mlp_in: keep(a.mlp_in, t); break;
          case LinearInput::mlp_hidden: break;
        }
        return true;
      });
    }
    next = end;
  }
  return acts;
}

// R1's terms; `w` has every rotation but R1 fused.
std::vector<Term> r1_terms(const ModelWeights& w, const std::vector<LayerActivations>& acts, const QuantSpec& weight,
                           const QuantSpec& act) {
  std::vector<Term> terms;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    if (act.enabled()) {
      add_term(terms, acts[l].attn_in, act, Layout::rows);
      add_term(terms, acts[l].mlp_in, act, Layout::rows);
    }
    if (weight.enabled()) {
      for (const Linear& l : layer_linears())  // consumers W·R1 (rows), then producers R1ᵀ·W (A = Wᵀ)
        if (l.reads_residual()) add_term(terms, L.*l.weight, weight, Layout::rows);
      for (const Linear& l : layer_linears())
        if (!l.reads_residual()) add_term(terms, (L.*l.weight).t(), weight, Layout::columns);
    }
  }
  return terms;
}

// Layer L's R2 terms; L has R1 fused.
std::vector<Term> r2_terms(const ModelConfig& c, const LayerWeights& L, const LayerActivations& acts,
                           const QuantSpec& weight, const ForwardOptions& quant) {
  const int64_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads, H = c.hidden_size;
  std::vector<Term> terms;
  if (quant.value.enabled()) add_term(terms, acts.values.reshape({-1, hd}), quant.value, Layout::rows);
  if (quant.act.enabled()) add_term(terms, acts.heads.reshape({-1, hd}), quant.act, Layout::rows, nh);
  if (weight.enabled()) {
    // v_proj [nkv·hd, H]: A = W_v[h]ᵀ [H, hd] stacked over the KV heads.
    const torch::Tensor v_heads = L.v_proj.reshape({nkv, hd, H}).transpose(1, 2).reshape({nkv * H, hd});
    add_term(terms, v_heads, weight, Layout::columns, nkv);
    // o_proj [H, nh·hd]: row i·nh + h of A is W_o[i, h·hd : (h+1)·hd].
    add_term(terms, L.o_proj.reshape({H * nh, hd}), weight, Layout::rows, nh);
  }
  return terms;
}

}  // namespace

torch::Tensor block_polar(const torch::Tensor& c, int64_t block) {
  SPIN_CHECK(c.dim() == 2 && c.size(0) == c.size(1), "block_polar: C must be square, got ", c.sizes());
  const int64_t n = c.size(0), b = effective_block(n, block, "the matrix");
  std::vector<torch::Tensor> blocks;
  for (int64_t j = 0; j < n; j += b) blocks.push_back(optim::nearest_orthogonal(c.narrow(0, j, b).narrow(1, j, b)));
  return torch::block_diag(blocks);
}

AdaptResult adapt_rotations(const ModelConfig& c, const ModelWeights& base, const Rotations& init,
                            const torch::Tensor& ids, const QuantSpec& weight, const ForwardOptions& quant,
                            const AdaptOptions& options) {
  SPIN_CHECK(options.steps >= 0, "adapt: steps must be >= 0, got ", options.steps);
  SPIN_CHECK(options.max_samples >= 1, "adapt: max_samples must be >= 1, got ", options.max_samples);
  SPIN_CHECK(init.r2.empty() || int64_t(init.r2.size()) == c.num_hidden_layers, "adapt: ", init.r2.size(),
             " R2 matrices for ", c.num_hidden_layers, " layers");
  const int64_t block1 = init.r1.defined() ? effective_block(c.hidden_size, options.block_size, "R1") : 0;
  const int64_t block2 = init.r2.empty() ? 0 : effective_block(c.head_dim, options.block_size, "R2");
  torch::NoGradGuard no_grad;
  const std::vector<LayerActivations> acts = collect_activations(c, base, ids, init, quant, options);
  auto start = [](const torch::Tensor& r) { return r.to(torch::kCPU, torch::kFloat64).clone(); };

  AdaptResult result;
  if (init.r1.defined()) {
    const ModelWeights w = rotate_weights(c, base, {{}, init.r2});
    Refined r1 = refine("r1", r1_terms(w, acts, weight, quant.act), start(init.r1), block1, options.steps);
    result.rotations.r1 = r1.r;
    result.stages.push_back(r1.report);
  }
  if (!init.r2.empty()) {
    const ModelWeights w = rotate_weights(c, base, {result.rotations.r1, {}});
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      Refined r2 = refine(cat("r2.", l), r2_terms(c, w.layers[l], acts[l], weight, quant), start(init.r2[l]), block2,
                          options.steps);
      result.rotations.r2.push_back(r2.r);
      result.stages.push_back(r2.report);
    }
  }
  return result;
}

LearnResult learn_adapt(const Job& job, Learnables& learnables) {
  const TrainConfig& cfg = job.cfg;
  const AdaptOptions options{cfg.adapt_steps, cfg.adapt_block_size, cfg.adapt_max_samples, cfg.rotation.seed};
  const AdaptResult a = adapt_rotations(job.config, job.base, job.init, job.data.rows().to(cfg.device), cfg.weight,
                                        cfg.student(), options);
  for (const AdaptStageReport& st : a.stages) {
    job.log.record({{"stage", st.name}, {"objective_before", st.before}, {"objective_after", st.after},
                    {"terms", st.terms}, {"best_step", st.best_step}});
    if (job.group.is_main() && !cfg.quiet)
      std::cerr << "adapt " << st.name << ": relative quantization error " << st.before << " -> " << st.after
                << " (best step " << st.best_step << ")" << std::endl;
  }
  learnables.rotations = a.rotations;
  return {};
}

}  // namespace spin
