#include "src/train/blockwise.h"

#include <chrono>

#include "src/base/check.h"
#include "src/rotation/fusion.h"
#include "src/train/step.h"

namespace spin {
namespace {

using Clock = std::chrono::steady_clock;

// layer(x) for every row of x [N, T, hidden], batch_size rows at a time, without autograd.
torch::Tensor layer_outputs(const ModelConfig& c, const LayerWeights& L, const torch::Tensor& x,
                            const ForwardOptions& fo, int64_t batch_size) {
  torch::NoGradGuard g;
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < x.size(0); r += batch_size)
    parts.push_back(decoder_layer(c, L, x.narrow(0, r, std::min(batch_size, x.size(0) - r)), fo));
  return torch::cat(parts);
}

// ||out − target||² / ||target||², statistics in float32.
torch::Tensor relative_mse(const torch::Tensor& out, const torch::Tensor& target) {
  const torch::Tensor t = target.to(torch::kFloat32);
  return (out.to(torch::kFloat32) - t).pow(2).mean() / t.pow(2).mean();
}

}  // namespace

LearnResult learn_blockwise(const Job& job, Learnables& learn) {
  const TrainConfig& cfg = job.cfg;
  const ModelConfig& c = job.config;
  const ModelWeights& base = job.base;
  const ForwardOptions student = cfg.student(), teacher = cfg.teacher();
  const torch::Tensor ids = job.data.rows().to(cfg.device);
  LearnResult result;
  const torch::Tensor r1 = learn.rotations.r1.defined() ? learn.rotations.r1.detach() : torch::Tensor();  // fixed
  torch::Tensor x_fp, x_q;
  {
    torch::NoGradGuard g;
    ModelWeights w = base;
    if (r1.defined()) w.r1_online = r1.to(base.embed_tokens.scalar_type());
    x_fp = embed(w, ids);
    x_q = x_fp;
  }
  const int64_t layers = c.num_hidden_layers, T = ids.size(1);
  StepTimer timer(0, layers * cfg.steps, cfg.batch_size * cfg.grad_accum * T);
  const optim::LrSchedule schedule = make_schedule(cfg);
  for (int64_t i = 0; i < layers; ++i) {
    const auto layer_start = Clock::now();
    const LayerWeights& base_layer = base.layers[i];
    // The float layer in the R1 basis; R2 is internal to the layer and does not change its function.
    const torch::Tensor y_fp = layer_outputs(c, rotate_layer(c, base_layer, r1, {}), x_fp, teacher, cfg.batch_size);
    const double mse_init = relative_mse(
        layer_outputs(c, student_layer(c, base_layer, learn, i, cfg.weight), x_q, student, cfg.batch_size), y_fp).item<double>();
    std::vector<torch::Tensor> stiefel = learn.layer_stiefel(i), euclidean = learn.layer_euclidean(i);
    if (cfg.steps > 0 && (!stiefel.empty() || !euclidean.empty())) {
      auto opt = make_optimizer(cfg, stiefel, euclidean);
      data::BatchStream rows(x_q, cfg.batch_size, cfg.rotation.seed + 7919ull * i);
      for (int64_t s = 0; s < cfg.steps; ++s) {
        timer.start();
        opt->zero_grad();
        // The layer's transform (rotate, smooth, quantize) once per step; every micro-batch's backward
        // but the last keeps its graph.
        const LayerWeights layer = student_layer(c, base_layer, learn, i, cfg.weight);
        double loss = 0;
        for (int64_t m = 0; m < cfg.grad_accum; ++m) {
          const torch::Tensor idx = rows.indices(s * cfg.grad_accum + m).to(x_q.device());
          const torch::Tensor out = decoder_layer(c, layer, x_q.index_select(0, idx), student);
          torch::Tensor l = relative_mse(out, y_fp.index_select(0, idx)) / double(cfg.grad_accum);
          l.backward({}, /*retain_graph=*/m + 1 < cfg.grad_accum);
          loss += l.item<double>();
        }
        nlohmann::json rec = take_step(*opt, schedule, learn, stiefel, cfg, s, loss, cat("spintrain: layer ", i, " step ", s + 1));
        rec.update(timer.done(i * cfg.steps + s + 1));
        rec["steps"] = cfg.steps;
        rec["layer"] = i;
        rec["layers"] = layers;
        job.log.step(rec);
        result.final_loss = loss;
        result.steps_run++;
      }
    }
    x_q = layer_outputs(c, student_layer(c, base_layer, learn, i, cfg.weight), x_q, student, cfg.batch_size);
    job.log.record({{"layer", i}, {"layer_mse_init", mse_init}, {"layer_mse_final", relative_mse(x_q, y_fp).item<double>()},
                    {"layer_seconds", std::chrono::duration<double>(Clock::now() - layer_start).count()}});
    x_fp = y_fp;
  }
  return result;
}

}  // namespace spin
