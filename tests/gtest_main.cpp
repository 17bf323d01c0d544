// main() of every test binary: GoogleTest's, after the same runtime settings as the tools
// (src/base/runtime_env.h: OpenBLAS's kernels, OpenMP's waiting), so that tests run as a user's run would.
#include <gtest/gtest.h>

#include "src/base/runtime_env.h"

int main(int argc, char** argv) {
  spin::prefer_fast_runtime(argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
