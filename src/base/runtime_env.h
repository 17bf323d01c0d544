// The two settings of LibTorch's CPU runtime that are read once, when its libraries load, and that
// decide how fast a step runs here (docs/BENCHMARKS.md, "OpenBLAS kernels and OpenMP waiting"):
//   - OPENBLAS_CORETYPE: OpenBLAS (built with DYNAMIC_ARCH, as Debian's) picks its GEMM kernels from
//     the CPU's family and model number; a release older than the CPU does not know the model and
//     falls back to its SSE3 "Prescott" kernels even on a CPU with AVX-512 (Debian 12's OpenBLAS
//     0.3.21 on Intel's Emerald Rapids, family 6 model 207: float32 GEMMs at a quarter of the speed).
//   - GOMP_SPINCOUNT: Debian's LibTorch runs its elementwise kernels on OpenMP (libgomp) threads and
//     its GEMMs on OpenBLAS's own threads. libgomp's idle workers spin for 300000 iterations after
//     every parallel region by default and take the cores from the OpenBLAS threads of the GEMM that
//     follows; sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every short region pay a wake-up.
//     kSpinCount iterations measured fastest for whole spintrain runs (both extremes 10-80% slower).
// A program sets what is unset and restarts itself (prefer_fast_runtime, first thing in main);
// scripts that start many programs set them once beforehand (`eval "$(spin-runtime-env)"`).
// Header only: the tools, the benchmarks and every test binary call it, whatever libraries they link.
#pragma once

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace spin {

inline constexpr const char* kSpinCount = "10000";

// The kernel set OpenBLAS is running ("Prescott", "Haswell", "SkylakeX", ...); "" when the BLAS in
// this process is not OpenBLAS.
inline std::string openblas_core() {
  using Corename = char* (*)();
  auto corename = reinterpret_cast<Corename>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? std::string(corename()) : std::string();
}

// The OPENBLAS_CORETYPE to ask for: "SkylakeX" on a CPU with AVX-512 (F, CD, BW, DQ, VL), "Haswell" on
// one with AVX2 and FMA, when OpenBLAS chose `core`, a kernel set older than that; "" when its own
// choice stands (it chose an AVX2 or newer set, or the BLAS is not OpenBLAS).
inline std::string openblas_core_to_request(const std::string& core) {
  if (core.empty()) return "";
  for (const char* modern : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator"})
    if (core == modern) return "";
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return "";
}

// The variables prefer_fast_runtime sets, as {name, value}: OPENBLAS_CORETYPE =
// openblas_core_to_request() where it is unset and OpenBLAS fell back to kernels older than the CPU;
// GOMP_SPINCOUNT = kSpinCount where neither it nor OMP_WAIT_POLICY is set. Empty when nothing is
// missing (a user's own values are kept).
inline std::vector<std::pair<std::string, std::string>> runtime_settings_to_add() {
  std::vector<std::pair<std::string, std::string>> add;
  if (!std::getenv("OPENBLAS_CORETYPE"))
    if (const std::string core = openblas_core_to_request(openblas_core()); !core.empty())
      add.emplace_back("OPENBLAS_CORETYPE", core);
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) add.emplace_back("GOMP_SPINCOUNT", kSpinCount);
  return add;
}

// Sets runtime_settings_to_add() and, if there were any, replaces this process by a fresh run of the
// same program with the same arguments (execv of /proc/self/exe, so nothing before this call has
// effects); if that fails, the process goes on as it was. The variables are inherited, so neither the
// restarted process nor the processes it starts restart again.
inline void prefer_fast_runtime(char** argv) {
  const auto add = runtime_settings_to_add();
  if (add.empty()) return;
  for (const auto& [name, value] : add) setenv(name.c_str(), value.c_str(), 1);
  execv("/proc/self/exe", argv);
}

}  // namespace spin
