// The runtime settings every program makes before LibTorch's libraries matter (src/base/runtime_env.h):
// OpenBLAS's kernels for this CPU and OpenMP's spin count, set where unset, a user's own kept.
#include <gtest/gtest.h>

#include <fstream>

#include "src/base/runtime_env.h"
#include "tests/test_util.h"

namespace {

using nlohmann::json;
namespace t = spin::test;

// spin-bench's report of its own runtime after one tiny step, under the environment prefix `env`.
json bench_runtime(const std::string& name, const std::string& env) {
  const auto dir = t::scratch(name);
  const auto out = dir / "out.json";
  const std::string cmd = env + " " + t::bin("spin-bench").string() +
                          " --models random --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --layers 1 --vocab 64"
                          " --seq 16 --steps 1 --gemm-size 0 --threads 1 --out " + out.string();
  EXPECT_EQ(t::run(cmd, dir / "log.txt"), 0) << cmd << "\n" << t::read_text(dir / "log.txt");
  std::ifstream in(out);
  return json::parse(in);
}

TEST(RuntimeEnv, ModernOpenblasCoresStandAndOldOnesAreReplacedWhereTheCpuAllows) {
  for (const char* core : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator", ""})
    EXPECT_EQ(spin::openblas_core_to_request(core), "") << core;
  const std::string request = spin::openblas_core_to_request("Prescott");
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd"))
    EXPECT_EQ(request, "SkylakeX");
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    EXPECT_EQ(request, "Haswell");
  else
    EXPECT_EQ(request, "");
}

// This binary went through the same main (tests/gtest_main.cpp): OpenBLAS now runs kernels as new as
// the CPU allows, whatever it would have chosen by itself.
TEST(RuntimeEnv, ThisProcessRunsOpenblasKernelsForItsCpu) {
  const std::string core = spin::openblas_core();
  if (core.empty()) GTEST_SKIP() << "the BLAS of this LibTorch is not OpenBLAS";
  EXPECT_EQ(spin::openblas_core_to_request(core), "") << "OpenBLAS runs " << core;
}

TEST(RuntimeEnv, ToolsSetWhatIsUnsetAndKeepTheUsersValues) {
  const json fresh = bench_runtime("runtime_env_fresh", "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_CORETYPE");
  EXPECT_EQ(fresh["gomp_spincount"], spin::kSpinCount);
  EXPECT_EQ(fresh["omp_wait_policy"], "");
  EXPECT_EQ(spin::openblas_core_to_request(fresh["openblas_core"].get<std::string>()), "") << fresh["openblas_core"];
  // A wait policy of the user's own means no spin count from us.
  const json own = bench_runtime("runtime_env_own",
                                 "env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=ACTIVE OPENBLAS_CORETYPE=Haswell");
  EXPECT_EQ(own["omp_wait_policy"], "ACTIVE");
  EXPECT_EQ(own["gomp_spincount"], "");
  if (!own["openblas_core"].get<std::string>().empty()) {
    EXPECT_EQ(own["openblas_core"], "Haswell");
  }
  const json count = bench_runtime("runtime_env_count", "env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=123");
  EXPECT_EQ(count["gomp_spincount"], "123");
}


// spin-runtime-env prints what a program would set, as export lines a shell can eval, and nothing
// once everything is set.
TEST(RuntimeEnv, PrintsTheMissingSettingsAsExports) {
  const auto dir = t::scratch("runtime_env_print");
  const std::string tool = t::bin("spin-runtime-env").string();
  ASSERT_EQ(t::run("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_CORETYPE " + tool, dir / "fresh.txt"), 0);
  const std::string fresh = t::read_text(dir / "fresh.txt");
  EXPECT_NE(fresh.find(std::string("export GOMP_SPINCOUNT=") + spin::kSpinCount + "\n"), std::string::npos) << fresh;
  if (const auto at = fresh.find("export OPENBLAS_CORETYPE="); at != std::string::npos) {
    // Only where OpenBLAS fell back by itself, and then to the CPU's own choice.
    EXPECT_EQ(fresh.substr(at, fresh.find('\n', at) - at),
              "export OPENBLAS_CORETYPE=" + spin::openblas_core_to_request("Prescott"));
  }
  ASSERT_EQ(t::run("env OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=Haswell " + tool, dir / "set.txt"), 0);
  EXPECT_EQ(t::read_text(dir / "set.txt"), "");
  // The output applied by a shell: a program started after it sees both values.
  ASSERT_EQ(t::run("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT bash -c 'eval \"$(" + tool +
                       ")\"; echo \"$GOMP_SPINCOUNT\"'",
                   dir / "eval.txt"),
            0);
  EXPECT_EQ(t::read_text(dir / "eval.txt"), std::string(spin::kSpinCount) + "\n");
}

}  // namespace
