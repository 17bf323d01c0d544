// spin-runtime-env: prints, as shell `export` lines, the runtime settings every spintrain program sets
// for itself and restarts to apply (src/base/runtime_env.h: OpenBLAS's kernels, OpenMP's spin count);
// nothing where none is missing. A script that starts many programs sets them once, so that none of
// them restarts:
//   eval "$(build/bin/spin-runtime-env)"
#include <iostream>

#include "src/base/runtime_env.h"

int main() {
  for (const auto& [name, value] : spin::runtime_settings_to_add()) std::cout << "export " << name << "=" << value << "\n";
  return 0;
}
