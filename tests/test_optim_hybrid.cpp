// Tests of HybridOptimizer's groups, Euclidean Adam/AdamW against LibTorch's, lr factors and
// schedules, and bitwise save -> load resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "optim/hybrid.h"
#include "src/base/check.h"

namespace so = spin::optim;

TEST(Hybrid, EuclideanGroupMatchesTorchAdamAndAdamW) {
  for (bool decoupled : {true, false}) {
    torch::manual_seed(1);
    torch::Tensor init = torch::randn({5, 3});
    torch::Tensor mine = init.clone().requires_grad_(), ref = init.clone().requires_grad_();
    so::AdamOptions o;
    o.lr = 0.01;
    o.weight_decay = 0.1;
    o.decoupled = decoupled;
    so::HybridOptimizer opt({so::euclidean_group({mine}, o)});
    std::unique_ptr<torch::optim::Optimizer> reference;
    if (decoupled) reference = std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{ref}, torch::optim::AdamWOptions(0.01).weight_decay(0.1));
    else reference = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{ref}, torch::optim::AdamOptions(0.01).weight_decay(0.1));
    for (int s = 0; s < 10; ++s) {
      torch::Tensor g = torch::randn({5, 3});
      mine.mutable_grad() = g.clone();
      ref.mutable_grad() = g.clone();
      opt.step();
      reference->step();
    }
    EXPECT_TRUE(torch::allclose(mine.detach(), ref.detach(), 1e-6, 1e-7)) << (decoupled ? "AdamW" : "Adam");
    EXPECT_FALSE(torch::allclose(mine.detach(), init));
  }
}

TEST(Hybrid, LrFactorScalesEveryGroupOrOne) {
  torch::Tensor a = torch::zeros({3}).requires_grad_(), b = torch::zeros({3}).requires_grad_();
  so::AdamOptions o;
  o.lr = 0.1;
  so::HybridOptimizer opt({so::euclidean_group({a}, o), so::euclidean_group({b}, o)});
  opt.set_lr_factor(0.5);
  opt.set_lr_factor(1, 0.25);
  a.mutable_grad() = torch::ones({3});
  b.mutable_grad() = torch::ones({3});
  opt.step();  // first Adam step moves by lr * factor (bias-corrected m / sqrt(v) = 1)
  EXPECT_NEAR(a[0].item<float>(), -0.05, 1e-6);
  EXPECT_NEAR(b[0].item<float>(), -0.025, 1e-6);
  EXPECT_DOUBLE_EQ(opt.group_options(0).get_lr(), 0.1);
  EXPECT_THROW(opt.set_lr_factor(2, 1.0), spin::Error);
}

TEST(Hybrid, StiefelLrFactorSetsStepSize) {
  // With momentum 0, no step cap and the exact Cayley step, halving the factor equals halving lr.
  torch::manual_seed(2);
  torch::Tensor X0 = so::qr_orthonormalize(torch::randn({6, 6}, torch::kFloat64));
  torch::Tensor G = torch::randn({6, 6}, torch::kFloat64);
  auto run = [&](double lr, double factor) {
    torch::Tensor R = X0.clone().requires_grad_();
    so::CayleySGDOptions o;
    o.lr = lr;
    o.momentum = 0;
    o.retraction.q = 1e6;
    o.retraction.kind = so::Retraction::cayley_exact;
    so::HybridOptimizer opt({so::stiefel_group({R}, o)});
    opt.set_lr_factor(factor);
    R.mutable_grad() = G;
    opt.step();
    return R.detach();
  };
  EXPECT_TRUE(torch::allclose(run(0.1, 0.5), run(0.05, 1.0), 0, 1e-15));
  EXPECT_FALSE(torch::allclose(run(0.1, 1.0), run(0.05, 1.0), 0, 1e-6));
}

TEST(Hybrid, SchedulesGiveExpectedFactors) {
  so::LrSchedule s;
  EXPECT_DOUBLE_EQ(s.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(1000), 1.0);
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(s.factor(0), 0.25);
  EXPECT_DOUBLE_EQ(s.factor(3), 1.0);
  s.kind = so::LrSchedule::Kind::cosine;
  s.total_steps = 14;
  s.min_factor = 0.1;
  s.validate();
  EXPECT_DOUBLE_EQ(s.factor(4), 1.0);
  EXPECT_NEAR(s.factor(9), 0.55, 1e-12);  // halfway: min + (1 - min) / 2
  EXPECT_NEAR(s.factor(14), 0.1, 1e-12);
  EXPECT_NEAR(s.factor(100), 0.1, 1e-12);
  s.kind = so::LrSchedule::Kind::linear;
  EXPECT_NEAR(s.factor(9), 0.55, 1e-12);
  EXPECT_NEAR(s.factor(6), 1.0 - 0.9 * 0.2, 1e-12);
  s.kind = so::LrSchedule::Kind::step;
  s.step_size = 3;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(s.factor(6), 1.0);   // t = 2
  EXPECT_DOUBLE_EQ(s.factor(7), 0.5);   // t = 3
  EXPECT_DOUBLE_EQ(s.factor(13), 0.125);
  EXPECT_EQ(so::parse_schedule_kind("cosine", "--schedule"), so::LrSchedule::Kind::cosine);
  try {
    so::parse_schedule_kind("exp", "--schedule");
    FAIL();
  } catch (const spin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--schedule: unknown lr schedule 'exp'"), std::string::npos) << e.what();
  }
  s.kind = so::LrSchedule::Kind::cosine;
  s.total_steps = 3;
  EXPECT_THROW(s.validate(), spin::Error);
}

namespace {

// Two rotations (Cayley SGD with nesterov and Cayley Adam, both with periodic QR) and a Euclidean
// vector (AdamW), trained on a fixed smooth loss; returns every parameter.
struct Model {
  torch::Tensor r1, r2, scale;
  torch::Tensor target1, target2;

  explicit Model(int64_t seed) {
    torch::manual_seed(seed);
    r1 = so::qr_orthonormalize(torch::randn({8, 8})).requires_grad_();
    r2 = so::qr_orthonormalize(torch::randn({8, 3})).requires_grad_();
    scale = torch::ones({8}).requires_grad_();
    target1 = torch::randn({8, 8});
    target2 = torch::randn({8, 3});
  }
  so::HybridOptimizer optimizer() {
    so::CayleySGDOptions sgd;
    sgd.lr = 0.3;
    sgd.nesterov = true;
    sgd.retraction.reorth_every = 3;
    so::CayleyAdamOptions cadam;
    cadam.lr = 0.1;
    so::AdamOptions adam;
    adam.lr = 0.01;
    adam.weight_decay = 0.01;
    return so::HybridOptimizer({so::stiefel_group({r1}, sgd), so::stiefel_group({r2}, cadam), so::euclidean_group({scale}, adam)});
  }
  void train(so::HybridOptimizer& opt, int64_t from, int64_t to) {
    so::LrSchedule schedule;
    schedule.kind = so::LrSchedule::Kind::cosine;
    schedule.warmup_steps = 2;
    schedule.total_steps = 20;
    for (int64_t step = from; step < to; ++step) {
      opt.zero_grad();
      torch::Tensor loss = (r1 * scale.unsqueeze(1) - target1).square().sum() + (r2 - target2).square().sum() +
                           (scale - 2).square().sum();
      loss.backward();
      opt.set_lr_factor(schedule.factor(step));
      opt.step();
    }
  }
};

}  // namespace

TEST(Hybrid, SaveLoadResumesBitwise) {
  Model straight(3);
  auto opt_straight = straight.optimizer();
  straight.train(opt_straight, 0, 20);

  Model first(3);
  auto opt_first = first.optimizer();
  first.train(opt_first, 0, 9);
  std::stringstream buffer;
  {
    torch::serialize::OutputArchive out;
    opt_first.save(out);
    out.save_to(buffer);
  }
  Model resumed(99);  // different values; the parameters are copied from `first` below
  {
    torch::NoGradGuard no_grad;
    resumed.r1.copy_(first.r1);
    resumed.r2.copy_(first.r2);
    resumed.scale.copy_(first.scale);
    resumed.target1 = first.target1;
    resumed.target2 = first.target2;
  }
  auto opt_resumed = resumed.optimizer();
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  opt_resumed.load(in);
  resumed.train(opt_resumed, 9, 20);

  EXPECT_TRUE(torch::equal(resumed.r1, straight.r1));
  EXPECT_TRUE(torch::equal(resumed.r2, straight.r2));
  EXPECT_TRUE(torch::equal(resumed.scale, straight.scale));
  EXPECT_FALSE(torch::equal(first.r1, straight.r1));  // the second half did move the parameters

  // Without the state (momenta, Adam moments, step counts) the continuation differs.
  Model fresh(99);
  {
    torch::NoGradGuard no_grad;
    fresh.r1.copy_(first.r1);
    fresh.r2.copy_(first.r2);
    fresh.scale.copy_(first.scale);
    fresh.target1 = first.target1;
    fresh.target2 = first.target2;
  }
  auto opt_fresh = fresh.optimizer();
  fresh.train(opt_fresh, 9, 20);
  EXPECT_FALSE(torch::equal(fresh.r1, straight.r1));
  EXPECT_LT(opt_resumed.max_orthogonality_error(), 1e-5);
}

TEST(Hybrid, LoadRejectsMismatchedState) {
  Model m(4);
  auto opt = m.optimizer();
  m.train(opt, 0, 2);
  std::stringstream buffer;
  {
    torch::serialize::OutputArchive out;
    opt.save(out);
    out.save_to(buffer);
  }
  torch::Tensor r = so::qr_orthonormalize(torch::randn({8, 8})).requires_grad_();
  so::HybridOptimizer other({so::stiefel_group({r}, so::CayleySGDOptions{})});
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  try {
    other.load(in);
    FAIL() << "expected spin::Error";
  } catch (const spin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'groups' is 3 but the optimizer has 1"), std::string::npos) << e.what();
  }
}

TEST(Hybrid, ClosureLossIsReturnedAndParamsWithoutGradSkipped) {
  torch::Tensor a = torch::ones({2}).requires_grad_(), b = torch::ones({2}).requires_grad_();
  so::HybridOptimizer opt({so::euclidean_group({a, b}, so::AdamOptions{})});
  torch::Tensor loss = opt.step([&] {
    opt.zero_grad();
    torch::Tensor l = a.square().sum();
    l.backward();
    return l;
  });
  EXPECT_FLOAT_EQ(loss.item<float>(), 2.0f);
  EXPECT_LT(a[0].item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(b.detach(), torch::ones({2})));
}
