#include "src/train/e2e.h"

#include <cmath>
#include <filesystem>

#include "losses/next_token.h"
#include "src/base/check.h"
#include "src/io/atomic_file.h"
#include "src/io/output_guard.h"
#include "src/model/recompute.h"
#include "src/train/grad_leaves.h"
#include "src/train/monitor.h"
#include "src/train/step.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

struct EndToEnd {
  const Job& job;
  const TrainConfig& cfg;
  Learnables& learn;
  std::unique_ptr<optim::HybridOptimizer> opt;
  optim::LrSchedule schedule;
  int64_t start_step = 0;
  Monitor monitor;                 // active with --eval-every
  double best_kl = INFINITY;       // --keep-best: the lowest monitored KL so far and its learnables
  std::vector<torch::Tensor> best;

  EndToEnd(const Job& j, Learnables& l)
      : job(j), cfg(j.cfg), learn(l), opt(make_optimizer(cfg, l.stiefel(), l.euclidean())), schedule(make_schedule(cfg)) {
    if (cfg.eval_every > 0) monitor = Monitor(cfg, job.config, job.base, job.data.rows(), cfg.monitor_rows);
  }

  // The monitored student after `steps` steps, logged; with --keep-best remembered when it is the best.
  void watch(int64_t steps) {
    const EvalResult r = monitor.evaluate(learn);
    nlohmann::json rec = {{"monitor_step", steps}, {"monitor_nll", r.nll}, {"monitor_kl", r.kl}};
    if (cfg.keep_best && r.kl < best_kl) {
      best_kl = r.kl;
      best.clear();
      for (const torch::Tensor& p : learn.all()) best.push_back(p.detach().clone());
      rec["best"] = true;
    }
    job.log.record(rec);
  }

  // --keep-best: the best monitored learnables back in place.
  void restore_best() {
    if (best.empty()) return;
    torch::NoGradGuard g;
    const auto params = learn.all();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best[i]);
    job.log.record({{"kept_best_kl", best_kl}});
  }

  // The training loss of the student's logits [B, T, vocab] on `batch`: CE, or KL to the float model.
  torch::Tensor loss_from_logits(const torch::Tensor& logits, const torch::Tensor& batch) const {
    if (cfg.loss == Loss::ce) return losses::next_token_nll(logits, batch);
    torch::Tensor teacher;
    {
      torch::NoGradGuard g;
      teacher = lm_logits(job.base, forward_hidden(job.config, job.base, batch, cfg.teacher()));
    }
    if (cfg.loss == Loss::kl) return losses::kl_to_teacher(logits, torch::log_softmax(teacher, -1));
    return losses::kl_topk(logits, losses::teacher_topk(teacher, cfg.kl_topk));
  }

  // One micro-batch's forward and backward, the loss scaled by `scale`; returns that loss (detached).
  // --recompute keeps only each layer's input and rebuilds the rest during backward.
  torch::Tensor forward_backward(const ModelWeights& w, const torch::Tensor& batch, double scale) const {
    auto loss_fn = [&](const torch::Tensor& logits) { return loss_from_logits(logits, batch) * scale; };
    if (cfg.recompute) return backward_with_recompute(job.config, w, batch, cfg.student(), loss_fn);
    torch::Tensor loss = loss_fn(lm_logits(w, forward_hidden(job.config, w, batch, cfg.student())));
    loss.backward();
    return loss.detach();
  }

  // This rank's contiguous slice of a global micro-batch [batch_size, T] -> [batch_size / world, T].
  torch::Tensor rank_slice(const torch::Tensor& batch) const {
    const int64_t rows = batch.size(0) / job.group.world_size();
    return batch.narrow(0, job.group.rank() * rows, rows);
  }

  // The gradients of one optimizer step over grad_accum global micro-batches, averaged over the
  // ranks; returns the mean loss over all ranks.
  double gradients(int64_t step) {
    opt->zero_grad();
    ModelWeights wq = student_weights(job.config, job.base, learn, cfg.weight, EmbeddingR1::online);
    // Detached leaves: every micro-batch's backward stops here, so the rotation and quantization of the
    // weights run once per step whatever grad_accum is.
    ModelWeights leaves = grad_leaves(job.config, wq);
    torch::Tensor loss_sum = torch::zeros({1}, cfg.dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
    for (int64_t m = 0; m < cfg.grad_accum; ++m) {
      torch::Tensor batch = rank_slice(job.data.batch(step * cfg.grad_accum + m)).to(cfg.device);
      loss_sum += forward_backward(leaves, batch, 1.0 / double(cfg.grad_accum)).to(torch::kCPU, loss_sum.scalar_type());
    }
    backward_from_leaves(job.config, wq, leaves);
    // Every rank averages the same buffer, so every rank sees the same loss and takes the same step.
    std::vector<torch::Tensor> reduced = {loss_sum};
    for (torch::Tensor p : learn.all()) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // e.g. a scale that no loss reads
      reduced.push_back(p.grad());
    }
    job.group.average(reduced);
    return loss_sum.item<double>();
  }

  fs::path state_file() const { return fs::path(cfg.state_dir) / "state.pt"; }

  void save_state(int64_t next_step) const {
    torch::serialize::OutputArchive a, o;
    a.write("next_step", torch::tensor(next_step));
    const std::string keys = cfg.values.result_affecting().dump();
    a.write("config_json", torch::from_blob(const_cast<char*>(keys.data()), {int64_t(keys.size())}, torch::kUInt8).clone());
    const auto params = learn.all();
    for (size_t i = 0; i < params.size(); ++i) a.write(cat("param.", i), params[i].detach());
    a.write("best_kl", torch::tensor(best_kl, torch::kFloat64));
    for (size_t i = 0; i < best.size(); ++i) a.write(cat("best.", i), best[i]);
    opt->save(o);
    a.write("optimizer", o);
    if (!why_not_our_output(cfg.state_dir, OutputKind::state_dir, "spintrain").empty())  // new (the guard checked it)
      write_dir_atomic(cfg.state_dir, [](const fs::path& tmp) {
        write_dir_marker(tmp, OutputKind::state_dir, "spintrain", {"state.pt"});
      });
    write_file_atomic(state_file(), [&](const fs::path& tmp) { a.save_to(tmp.string()); });
  }

  void load_state() {
    SPIN_CHECK(fs::exists(state_file()), state_file().string(), ": no training state to resume from");
    torch::serialize::InputArchive a, o;
    a.load_from(state_file().string());
    auto read = [&](const std::string& key) {
      torch::Tensor t;  // a fresh tensor per key: read() into a defined tensor would alias its storage
      a.read(key, t);
      return t;
    };
    torch::Tensor keys = read("config_json");
    const std::string saved(static_cast<const char*>(keys.data_ptr()), keys.numel());
    SPIN_CHECK(nlohmann::json::parse(saved) == cfg.values.result_affecting(), state_file().string(),
               ": the training state was made with different options: ", saved);
    start_step = read("next_step").item<int64_t>();
    torch::NoGradGuard g;
    const auto params = learn.all();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(read(cat("param.", i)));
    best_kl = read("best_kl").item<double>();
    best.clear();
    if (std::isfinite(best_kl))
      for (size_t i = 0; i < params.size(); ++i) best.push_back(read(cat("best.", i)));
    a.read("optimizer", o);
    opt->load(o);
  }

  LearnResult run() {
    LearnResult result;
    const std::vector<torch::Tensor> params = learn.all();
    StepTimer timer(start_step, cfg.steps, cfg.batch_size * cfg.grad_accum * job.data.seq_len());
    if (monitor.active() && start_step == 0) watch(0);
    for (int64_t s = start_step; s < cfg.steps; ++s) {
      timer.start();
      const double loss = gradients(s);
      nlohmann::json rec = take_step(*opt, schedule, learn, learn.stiefel(), cfg, s, loss, cat("spintrain: step ", s + 1),
                                     cat(" (the last good training state, if any, is in ", cfg.state_dir, ")"));
      rec["rot_checksum"] = job.group.check_identical(params, "the learned parameters");
      rec.update(timer.done(s + 1));
      rec["steps"] = cfg.steps;
      rec["world_size"] = job.group.world_size();
      job.log.step(rec);
      result.final_loss = loss;
      result.steps_run++;
      if (monitor.active() && ((s + 1) % cfg.eval_every == 0 || s + 1 == cfg.steps)) watch(s + 1);
      if (job.group.is_main() && cfg.save_every > 0 && ((s + 1) % cfg.save_every == 0 || s + 1 == cfg.steps))
        save_state(s + 1);
    }
    restore_best();
    return result;
  }
};

}  // namespace

LearnResult learn_e2e(const Job& job, Learnables& learnables) {
  EndToEnd e2e(job, learnables);
  if (job.cfg.resume) e2e.load_state();
  return e2e.run();
}

}  // namespace spin
