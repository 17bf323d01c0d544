// spin-stiefel-bench: runs the Stiefel optimizers on an orthogonal Procrustes or Brockett problem
// read from HDF5 and writes JSON lines (step, objective, relative error, orthogonality error,
// seconds), then one summary line per optimizer with the steps and seconds to reach --target.
//
//   spin-stiefel-bench --make-problem p.h5 --mode procrustes --size 64 [--det-flip]
//   spin-stiefel-bench --problem p.h5 --mode procrustes --steps 500 --lr 0.1 --adam-lr 0.3 --output runs.jsonl
//
// Problem file: datasets A [m,n] and B [m,n] (Procrustes: min ||A R - B||_F^2), or A [n,n]
// symmetric and B [n,n] diagonal (Brockett: min tr(R^T A R B)); optional R0 [n,n] (default I).
// The relative error is (f(R) - f*) / |f*| with f* the optimum reachable from R0: a Cayley step
// never changes det R, so for Procrustes it is U diag(1, .., det(U V^T) det R0) V^T from
// A^T B = U S V^T.
#include <H5Cpp.h>

#include <chrono>
#include <iostream>
#include <sstream>

#include "optim/hybrid.h"
#include "src/io/atomic_file.h"
#include "src/base/check.h"
#include "src/cli/main.h"

using namespace spin;
namespace so = spin::optim;

namespace {

torch::Tensor read_matrix(H5::H5File& file, const std::string& path, const std::string& name) {
  H5::DataSet ds = file.openDataSet(name);
  H5::DataSpace space = ds.getSpace();
  SPIN_CHECK(space.getSimpleExtentNdims() == 2, path, ": dataset '", name, "': expected a 2-D matrix, got rank ",
             space.getSimpleExtentNdims());
  hsize_t dims[2];
  space.getSimpleExtentDims(dims);
  torch::Tensor t = torch::empty({static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1])}, torch::kFloat64);
  ds.read(t.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
  SPIN_CHECK(torch::isfinite(t).all().item<bool>(), path, ": dataset '", name, "': contains NaN or inf");
  return t;
}

void write_matrix(H5::H5File& file, const std::string& name, const torch::Tensor& t) {
  torch::Tensor f = t.to(torch::kFloat32).contiguous();
  hsize_t dims[2] = {static_cast<hsize_t>(f.size(0)), static_cast<hsize_t>(f.size(1))};
  H5::DataSpace space(2, dims);
  file.createDataSet(name, H5::PredType::IEEE_F32LE, space).write(f.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
}

struct Problem {
  std::string mode;
  torch::Tensor A, B, R0;  // float64
  double f_star = 0;
};

// Objective in R's dtype (differentiable).
torch::Tensor objective(const Problem& p, const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& R) {
  if (p.mode == "procrustes") return (A.mm(R) - B).square().sum();
  return torch::trace(R.t().mm(A).mm(R).mm(B));
}

double reachable_optimum(const Problem& p) {
  if (p.mode == "procrustes") {
    auto [U, S, Vh] = torch::linalg::svd(p.A.t().mm(p.B), false, c10::nullopt);
    torch::Tensor D = torch::ones({S.size(0)}, torch::kFloat64);
    if (torch::det(U.mm(Vh)).item<double>() * torch::det(p.R0).item<double>() < 0) D[-1] = -1;
    return objective(p, p.A, p.B, U.mm(torch::diag(D)).mm(Vh)).item<double>();
  }
  // Brockett with diagonal B: eigenvalues of A ascending against diag(B) descending; flipping a
  // column's sign leaves the cost unchanged, so both determinant classes reach it.
  torch::Tensor lambda = std::get<0>(torch::linalg::eigh(p.A, "L"));
  torch::Tensor d = std::get<0>(p.B.diagonal().sort(0, /*descending=*/true));
  return (lambda * d).sum().item<double>();
}

Problem load_problem(const std::string& path, const std::string& mode) {
  SPIN_CHECK(mode == "procrustes" || mode == "brockett", "--mode: expected procrustes or brockett, got '", mode, "'");
  Problem p;
  p.mode = mode;
  try {
    H5::H5File file(path, H5F_ACC_RDONLY);
    for (const char* name : {"A", "B"})
      SPIN_CHECK(file.nameExists(name), path, ": dataset '", name, "' is missing");
    p.A = read_matrix(file, path, "A");
    p.B = read_matrix(file, path, "B");
    int64_t n = p.A.size(1);
    p.R0 = file.nameExists("R0") ? read_matrix(file, path, "R0") : torch::eye(n, torch::kFloat64);
    SPIN_CHECK(p.B.sizes() == p.A.sizes(), path, ": dataset 'B': shape ", p.B.sizes(), " differs from A's ", p.A.sizes());
    SPIN_CHECK(p.R0.size(0) == n && p.R0.size(1) == n, path, ": dataset 'R0': expected [", n, ", ", n, "], got ", p.R0.sizes());
    if (mode == "brockett") {
      SPIN_CHECK(p.A.size(0) == n, path, ": dataset 'A': Brockett needs a square matrix, got ", p.A.sizes());
      SPIN_CHECK(torch::allclose(p.A, p.A.t()), path, ": dataset 'A': Brockett needs a symmetric matrix");
      SPIN_CHECK(torch::equal(p.B, torch::diag(p.B.diagonal())), path, ": dataset 'B': Brockett needs a diagonal matrix");
    }
  } catch (const H5::Exception& e) {
    fail(path, ": cannot read problem: ", e.getDetailMsg());
  }
  // The stored R0 is float32; re-orthonormalise it to float64 precision.
  double err = so::orthogonality_error(p.R0);
  SPIN_CHECK(err < 1e-4, path, ": dataset 'R0': not orthogonal (max |R^T R - I| = ", err, ")");
  p.R0 = so::qr_orthonormalize(p.R0);
  p.f_star = reachable_optimum(p);
  return p;
}

void make_problem(const std::string& path, const std::string& mode, int64_t n, bool det_flip, int64_t seed) {
  SPIN_CHECK(mode == "procrustes" || mode == "brockett", "--mode: expected procrustes or brockett, got '", mode, "'");
  SPIN_CHECK(n >= 2, "--size: expected >= 2, got ", n);
  torch::manual_seed(seed);
  torch::Tensor A, B;
  if (mode == "procrustes") {
    A = torch::randn({2 * n, n}, torch::kFloat64) / std::sqrt(2.0 * n);  // [2n,n], singular values in ~[0.3, 1.7]
    torch::Tensor Q = so::qr_orthonormalize(torch::randn({n, n}, torch::kFloat64));
    if ((torch::det(Q).item<double>() < 0) != det_flip) Q.select(1, 0).neg_();  // det Q = -1 iff det_flip
    B = A.mm(Q) + 0.1 / std::sqrt(static_cast<double>(n)) * torch::randn({2 * n, n}, torch::kFloat64);
  } else {
    torch::Tensor M = torch::randn({n, n}, torch::kFloat64) / std::sqrt(static_cast<double>(n));
    A = (M + M.t()) * 0.5;
    B = torch::diag(torch::linspace(1.0 / n, 1.0, n, torch::kFloat64));
  }
  torch::Tensor R0 = so::qr_orthonormalize(torch::randn({n, n}, torch::kFloat64));
  if (torch::det(R0).item<double>() < 0) R0.select(1, 0).neg_();  // det R0 = +1
  write_file_atomic(path, [&](const std::filesystem::path& tmp) {
    H5::H5File file(tmp.string(), H5F_ACC_TRUNC);
    write_matrix(file, "A", A);
    write_matrix(file, "B", B);
    write_matrix(file, "R0", R0);
  });
}

struct RunOptions {
  int64_t steps;
  double lr, adam_lr, momentum, beta2, target, max_seconds;
  int iterations, log_every;
  torch::ScalarType dtype;
  so::LrSchedule schedule;
};

// Runs one optimizer; appends JSON lines to `out`.
void run(const Problem& p, const std::string& name, const RunOptions& ro, std::ostream& out) {
  torch::Tensor A = p.A.to(ro.dtype), B = p.B.to(ro.dtype);
  torch::Tensor R = p.R0.to(ro.dtype).clone().requires_grad_();  // a fresh copy per optimizer
  so::RetractionOptions retraction;
  retraction.iterations = ro.iterations;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (name == "cayley_adam") {
    so::CayleyAdamOptions o;
    o.lr = ro.adam_lr;
    o.beta1 = ro.momentum;
    o.beta2 = ro.beta2;
    o.retraction = retraction;
    groups.push_back(so::stiefel_group({R}, o));
  } else {
    SPIN_CHECK(name == "cayley_sgd" || name == "cayley_exact" || name == "qr_sgd", "--optimizers: unknown optimizer '", name,
               "' (expected cayley_sgd, cayley_adam, qr_sgd, cayley_exact)");
    so::CayleySGDOptions o;
    o.lr = ro.lr;
    o.momentum = ro.momentum;
    o.retraction = retraction;
    o.retraction.kind = name == "cayley_sgd" ? so::Retraction::cayley_iterative
                        : name == "qr_sgd"   ? so::Retraction::qr
                                             : so::Retraction::cayley_exact;
    groups.push_back(so::stiefel_group({R}, o));
  }
  so::HybridOptimizer opt(std::move(groups));
  double grad_seconds = 0, step_seconds = 0;
  int64_t steps_to_target = -1;
  double seconds_to_target = -1;
  int64_t step = 0;
  auto relative = [&](double f) { return (f - p.f_star) / std::abs(p.f_star); };
  auto log = [&](double f) {
    out << nlohmann::json{{"optimizer", name}, {"n", R.size(0)}, {"step", step}, {"objective", f}, {"rel_error", relative(f)},
                          {"orth_error", so::orthogonality_error(R)}, {"seconds", grad_seconds + step_seconds}}
               .dump()
        << "\n";
  };
  using clock = std::chrono::steady_clock;
  while (true) {
    opt.zero_grad();
    auto t0 = clock::now();
    torch::Tensor f = objective(p, A, B, R);
    f.backward();
    auto t1 = clock::now();
    grad_seconds += std::chrono::duration<double>(t1 - t0).count();
    double fv = f.item<double>();  // objective at the current R, in the run's dtype
    if (steps_to_target < 0 && relative(fv) <= ro.target) {
      steps_to_target = step;
      seconds_to_target = grad_seconds + step_seconds;
    }
    bool last = step == ro.steps || grad_seconds + step_seconds > ro.max_seconds;
    if (step % ro.log_every == 0 || last) log(fv);
    if (last) break;
    auto t2 = clock::now();
    opt.set_lr_factor(ro.schedule.factor(step));
    opt.step();
    step_seconds += std::chrono::duration<double>(clock::now() - t2).count();
    ++step;
  }
  out << nlohmann::json{{"optimizer", name},
                        {"n", R.size(0)},
                        {"summary", true},
                        {"steps", step},
                        {"target", ro.target},
                        {"steps_to_target", steps_to_target},
                        {"seconds_to_target", seconds_to_target},
                        {"step_seconds_mean", step ? step_seconds / step : 0.0},
                        {"grad_seconds_mean", step ? grad_seconds / step : 0.0},
                        {"final_orth_error", so::orthogonality_error(R)}}
             .dump()
      << "\n";
}

}  // namespace

using cli::Type;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-stiefel-bench", "Stiefel optimizers on Procrustes / Brockett problems from HDF5, JSON lines out",
      std::vector<cli::Option>{
          {"problem", Type::text, "", "", "HDF5 problem file (datasets A, B, optional R0)"},
          {"make-problem", Type::text, "", "", "write a random problem to this HDF5 file and exit"},
          {"mode", Type::text, "procrustes", "", "procrustes or brockett"},
          {"size", Type::integer, "64", "", "--make-problem: matrix size n"},
          {"det-flip", Type::boolean, "false", "", "--make-problem (procrustes): det of the unconstrained optimum is -det R0"},
          {"seed", Type::integer, "0", "", "--make-problem: random seed"},
          {"optimizers", Type::text, "cayley_sgd,cayley_adam,qr_sgd,cayley_exact", "", "comma-separated: cayley_sgd, cayley_adam, qr_sgd, cayley_exact"},
          {"steps", Type::integer, "500", "", "maximum optimizer steps"},
          {"max-seconds", Type::real, "1e9", "", "stop an optimizer after this much optimizer time"},
          {"lr", Type::real, "0.1", "", "learning rate (Cayley SGD, QR SGD, exact Cayley)"},
          {"adam-lr", Type::real, "0.3", "", "Cayley Adam learning rate"},
          {"schedule", Type::text, "constant", "", "lr schedule over --steps: constant, linear, cosine or step (to 1% of lr)"},
          {"momentum", Type::real, "0.9", "", "momentum (Cayley Adam: beta1)"},
          {"beta2", Type::real, "0.99", "", "Cayley Adam beta2"},
          {"iterations", Type::integer, "5", "", "Cayley fixed-point iterations"},
          {"target", Type::real, "1e-3", "", "relative error whose first crossing is reported"},
          {"dtype", Type::text, "f32", "", "f32 or f64"},
          {"log-every", Type::integer, "10", "", "write a progress line every k steps"},
          {"threads", Type::integer, "0", "", "CPU threads (0: all cores)"},
          {"output", Type::text, "", "", "write the JSON lines to this file (atomically) instead of stdout"},
      }};
  return cli::tool_main(argc, argv, program, [](const cli::Values& r) {
    std::string mode = r.text("mode");
    if (!r.text("make-problem").empty()) {
      make_problem(r.text("make-problem"), mode, r.integer("size"), r.flag("det-flip"), r.integer("seed"));
      return 0;
    }
    SPIN_CHECK(!r.text("problem").empty(), "spin-stiefel-bench: --problem or --make-problem is required (see --help)");
    so::LrSchedule schedule;
    schedule.kind = so::parse_schedule_kind(r.text("schedule"), "--schedule");
    schedule.total_steps = r.integer("steps");
    schedule.min_factor = 0.01;
    schedule.step_size = std::max<int64_t>(1, schedule.total_steps / 3);
    schedule.validate();
    RunOptions ro{r.integer("steps"), r.real("lr"), r.real("adam-lr"), r.real("momentum"),
                  r.real("beta2"), r.real("target"), r.real("max-seconds"), int(r.integer("iterations")),
                  int(r.integer("log-every")), cli::parse_dtype(r.text("dtype")), schedule};
    SPIN_CHECK(ro.dtype == torch::kFloat32 || ro.dtype == torch::kFloat64, "--dtype: expected f32 or f64");
    SPIN_CHECK(ro.log_every >= 1, "--log-every: expected >= 1, got ", ro.log_every);
    Problem p = load_problem(r.text("problem"), mode);
    std::ostringstream buffer;
    std::ostream& out = !r.text("output").empty() ? buffer : std::cout;
    std::stringstream names(r.text("optimizers"));
    for (std::string name; std::getline(names, name, ',');) run(p, name, ro, out);
    if (!r.text("output").empty()) write_text_atomic(r.text("output"), buffer.str());
    return 0;
  });
}
