// HybridOptimizer; see hybrid.h.
#include "optim/hybrid.h"

#include <memory>

#include "src/base/check.h"

namespace spin::optim {
namespace {

// Moments and step count of one parameter; which tensors are used depends on the group kind
// (Cayley SGD: m = tangent momentum; Cayley Adam: m, scalar v; Adam: m, v shaped like the param).
struct ParamState : torch::optim::OptimizerCloneableParamState<ParamState> {
  torch::Tensor m, v;
  int64_t step = 0;
};

std::string state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

std::string shape_of(const torch::Tensor& t) { return cat(t.sizes()); }

torch::optim::OptimizerParamGroup make_group(std::vector<torch::Tensor> params, std::unique_ptr<GroupOptions> o) {
  return torch::optim::OptimizerParamGroup(std::move(params), std::move(o));
}

const GroupOptions& options_of(const torch::optim::OptimizerParamGroup& g) {
  return static_cast<const GroupOptions&>(g.options());
}

bool is_stiefel(GroupKind k) { return k != GroupKind::adam; }

void check_stiefel_param(const torch::Tensor& p, size_t g, size_t i) {
  std::string where = cat("optimizer: group ", g, " param ", i);
  SPIN_CHECK(p.dim() == 2 && p.size(1) <= p.size(0), where, ": Stiefel parameter must be an n x p matrix with p <= n, got shape ",
             shape_of(p));
  SPIN_CHECK(p.scalar_type() == torch::kFloat32 || p.scalar_type() == torch::kFloat64, where,
             ": Stiefel parameter must be float32 or float64, got ", p.scalar_type());
  double err = orthogonality_error(p);
  SPIN_CHECK(err < 1e-3, where, ": Stiefel parameter is not orthonormal (max |R^T R - I| = ", err, ")");
}

}  // namespace

const char* group_kind_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::cayley_sgd: return "cayley_sgd";
    case GroupKind::cayley_adam: return "cayley_adam";
    case GroupKind::adam: return "adam";
  }
  return "?";
}

double GroupOptions::get_lr() const {
  switch (kind) {
    case GroupKind::cayley_sgd: return cayley_sgd.lr;
    case GroupKind::cayley_adam: return cayley_adam.lr;
    case GroupKind::adam: return adam.lr;
  }
  return 0;
}

void GroupOptions::set_lr(double lr) {
  switch (kind) {
    case GroupKind::cayley_sgd: cayley_sgd.lr = lr; break;
    case GroupKind::cayley_adam: cayley_adam.lr = lr; break;
    case GroupKind::adam: adam.lr = lr; break;
  }
}

torch::optim::OptimizerParamGroup stiefel_group(std::vector<torch::Tensor> params, const CayleySGDOptions& opt) {
  auto o = std::make_unique<GroupOptions>();
  o->kind = GroupKind::cayley_sgd;
  o->cayley_sgd = opt;
  return make_group(std::move(params), std::move(o));
}

torch::optim::OptimizerParamGroup stiefel_group(std::vector<torch::Tensor> params, const CayleyAdamOptions& opt) {
  auto o = std::make_unique<GroupOptions>();
  o->kind = GroupKind::cayley_adam;
  o->cayley_adam = opt;
  return make_group(std::move(params), std::move(o));
}

torch::optim::OptimizerParamGroup euclidean_group(std::vector<torch::Tensor> params, const AdamOptions& opt) {
  auto o = std::make_unique<GroupOptions>();
  o->kind = GroupKind::adam;
  o->adam = opt;
  return make_group(std::move(params), std::move(o));
}

HybridOptimizer::HybridOptimizer(std::vector<torch::optim::OptimizerParamGroup> groups)
    : torch::optim::Optimizer(std::move(groups), std::make_unique<GroupOptions>()) {
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    SPIN_CHECK(param_groups_[g].has_options() && dynamic_cast<GroupOptions*>(&param_groups_[g].options()),
               "optimizer: group ", g, " was not made by stiefel_group or euclidean_group");
    if (is_stiefel(options_of(param_groups_[g]).kind))
      for (size_t i = 0; i < param_groups_[g].params().size(); ++i) check_stiefel_param(param_groups_[g].params()[i], g, i);
  }
}

GroupOptions& HybridOptimizer::group_options(size_t group) {
  SPIN_CHECK(group < param_groups_.size(), "optimizer: group ", group, " out of range (", param_groups_.size(), " groups)");
  return static_cast<GroupOptions&>(param_groups_[group].options());
}

void HybridOptimizer::set_lr_factor(double factor) {
  for (size_t g = 0; g < param_groups_.size(); ++g) set_lr_factor(g, factor);
}

void HybridOptimizer::set_lr_factor(size_t group, double factor) { group_options(group).lr_factor = factor; }

torch::Tensor HybridOptimizer::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  // Check every gradient first so that a bad one leaves all parameters untouched.
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& params = param_groups_[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor& grad = params[i].grad();
      if (!grad.defined()) continue;
      SPIN_CHECK(torch::isfinite(grad).all().item<bool>(), "optimizer step: group ", g, " (",
                 group_kind_name(options_of(param_groups_[g]).kind), ") param ", i, " ", shape_of(params[i]),
                 ": gradient contains NaN or inf; parameters left unchanged");
    }
  }
  for (auto& group : param_groups_) {
    const GroupOptions& o = options_of(group);
    double lr = o.get_lr() * o.lr_factor;
    for (torch::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = state_[state_key(p)];
      if (!slot) slot = std::make_unique<ParamState>();
      auto& s = static_cast<ParamState&>(*slot);
      ++s.step;
      torch::Tensor grad = p.grad().detach();
      torch::Tensor data = p.detach();
      switch (o.kind) {
        case GroupKind::cayley_sgd: cayley_sgd_update(data, grad, s.m, s.step, o.cayley_sgd, lr); break;
        case GroupKind::cayley_adam: cayley_adam_update(data, grad, s.m, s.v, s.step, o.cayley_adam, lr); break;
        case GroupKind::adam: adam_update(data, grad, s.m, s.v, s.step, o.adam, lr); break;
      }
    }
  }
  return loss;
}

double HybridOptimizer::max_orthogonality_error() const {
  double worst = 0;
  for (const auto& group : param_groups_)
    if (is_stiefel(options_of(group).kind))
      for (const torch::Tensor& p : group.params()) worst = std::max(worst, orthogonality_error(p));
  return worst;
}

void HybridOptimizer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("groups", c10::IValue(static_cast<int64_t>(param_groups_.size())));
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& group = param_groups_[g];
    std::string gk = cat("g", g, ".");
    archive.write(gk + "kind", c10::IValue(static_cast<int64_t>(options_of(group).kind)));
    archive.write(gk + "params", c10::IValue(static_cast<int64_t>(group.params().size())));
    archive.write(gk + "lr_factor", c10::IValue(options_of(group).lr_factor));
    for (size_t i = 0; i < group.params().size(); ++i) {
      auto it = state_.find(state_key(group.params()[i]));
      if (it == state_.end()) continue;
      const auto& s = static_cast<const ParamState&>(*it->second);
      std::string pk = cat(gk, "p", i, ".");
      archive.write(pk + "step", c10::IValue(s.step));
      if (s.m.defined()) archive.write(pk + "m", s.m, /*is_buffer=*/true);
      if (s.v.defined()) archive.write(pk + "v", s.v, /*is_buffer=*/true);
    }
  }
}

void HybridOptimizer::load(torch::serialize::InputArchive& archive) {
  auto read_int = [&](const std::string& key) {
    c10::IValue v;
    SPIN_CHECK(archive.try_read(key, v) && v.isInt(), "optimizer state: missing integer field '", key, "'");
    return v.toInt();
  };
  int64_t groups = read_int("groups");
  SPIN_CHECK(groups == static_cast<int64_t>(param_groups_.size()), "optimizer state: field 'groups' is ", groups,
             " but the optimizer has ", param_groups_.size());
  decltype(state_) loaded;
  std::vector<double> factors;
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& group = param_groups_[g];
    std::string gk = cat("g", g, ".");
    int64_t kind = read_int(gk + "kind");
    SPIN_CHECK(kind == static_cast<int64_t>(options_of(group).kind), "optimizer state: field '", gk,
               "kind' does not match group ", g, " (", group_kind_name(options_of(group).kind), ")");
    int64_t count = read_int(gk + "params");
    SPIN_CHECK(count == static_cast<int64_t>(group.params().size()), "optimizer state: field '", gk, "params' is ",
               count, " but group ", g, " has ", group.params().size());
    c10::IValue factor;
    SPIN_CHECK(archive.try_read(gk + "lr_factor", factor) && factor.isDouble(),
               "optimizer state: missing field '", gk, "lr_factor'");
    factors.push_back(factor.toDouble());
    for (size_t i = 0; i < group.params().size(); ++i) {
      const torch::Tensor& p = group.params()[i];
      std::string pk = cat(gk, "p", i, ".");
      c10::IValue step;
      if (!archive.try_read(pk + "step", step)) continue;  // no state yet for this parameter
      auto s = std::make_unique<ParamState>();
      s->step = step.toInt();
      for (auto [name, slot] : {std::pair{"m", &s->m}, std::pair{"v", &s->v}}) {
        torch::Tensor t;
        if (!archive.try_read(pk + name, t, /*is_buffer=*/true)) continue;
        bool shape_ok = t.sizes() == p.sizes() || (t.dim() == 0 && std::string(name) == "v");
        SPIN_CHECK(shape_ok, "optimizer state: field '", pk, name, "' has shape ", shape_of(t), ", parameter has ",
                   shape_of(p));
        *slot = t.to(p.device());
      }
      loaded[state_key(p)] = std::move(s);
    }
  }
  state_ = std::move(loaded);
  for (size_t g = 0; g < factors.size(); ++g) set_lr_factor(g, factors[g]);
}

}  // namespace spin::optim
