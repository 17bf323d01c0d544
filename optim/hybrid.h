// HybridOptimizer: one torch::optim::Optimizer holding Stiefel groups (rotation matrices stepped
// with Cayley SGD or Cayley Adam) and Euclidean groups (Adam/AdamW), each with its own options.
//
//   using namespace spin::optim;
//   CayleySGDOptions rot;  rot.lr = 1.5;  rot.momentum = 0.9;
//   AdamOptions scales;    scales.lr = 1e-3;
//   HybridOptimizer opt({stiefel_group({r1, r2_0, r2_1}, rot), euclidean_group({s0, s1}, scales)});
//   LrSchedule schedule;  schedule.kind = LrSchedule::Kind::cosine;  schedule.total_steps = 100;
//   for (int64_t step = 0; step < 100; ++step) {
//     opt.zero_grad();
//     loss(...).backward();
//     opt.set_lr_factor(schedule.factor(step));  // lr = base lr * factor, every group
//     opt.step();          // throws spin::Error on a NaN/inf gradient, leaving every parameter unchanged
//     log("orth_err", opt.max_orthogonality_error());
//   }
//   torch::serialize::OutputArchive out;  opt.save(out);  out.save_to("optim.pt");
//   torch::serialize::InputArchive in;  in.load_from("optim.pt");  opt.load(in);  // bitwise resume
//
// Stiefel parameters are leaf tensors [n,p] with p <= n and R^T R = I (rotations: n x n),
// float32 or float64, on any device. Parameters without a gradient are skipped.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "optim/adam.h"
#include "optim/cayley_adam.h"
#include "optim/cayley_sgd.h"
#include "optim/lr_schedule.h"

namespace spin::optim {

enum class GroupKind { cayley_sgd, cayley_adam, adam };
const char* group_kind_name(GroupKind kind);

// Options of one parameter group: its kind, the options of that kind, and the schedule factor.
struct GroupOptions : torch::optim::OptimizerCloneableOptions<GroupOptions> {
  GroupKind kind = GroupKind::cayley_sgd;
  CayleySGDOptions cayley_sgd;
  CayleyAdamOptions cayley_adam;
  AdamOptions adam;
  double lr_factor = 1.0;  // effective lr = get_lr() * lr_factor

  double get_lr() const override;  // base lr of the active kind
  void set_lr(double lr) override;
};

torch::optim::OptimizerParamGroup stiefel_group(std::vector<torch::Tensor> params, const CayleySGDOptions& opt);
torch::optim::OptimizerParamGroup stiefel_group(std::vector<torch::Tensor> params, const CayleyAdamOptions& opt);
torch::optim::OptimizerParamGroup euclidean_group(std::vector<torch::Tensor> params, const AdamOptions& opt);

class HybridOptimizer : public torch::optim::Optimizer {
 public:
  // Throws spin::Error if a Stiefel parameter is not a float32/float64 [n,p] matrix with p <= n
  // and max |R^T R - I| < 1e-3.
  explicit HybridOptimizer(std::vector<torch::optim::OptimizerParamGroup> groups);

  // All gradients are checked before any parameter moves. Returns the closure's loss if given.
  torch::Tensor step(LossClosure closure = nullptr) override;

  void set_lr_factor(double factor);                // every group
  void set_lr_factor(size_t group, double factor);  // one group
  GroupOptions& group_options(size_t group);

  // max |R^T R - I| over the Stiefel parameters (0 if there are none).
  double max_orthogonality_error() const;

  // Per-parameter moments and step counts and the groups' lr factors. load() expects an optimizer
  // built with the same groups (same kinds, parameter counts and shapes) and throws spin::Error
  // naming the field that does not match.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace spin::optim
