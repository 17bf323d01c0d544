// spintrain: learn R1/R2 rotations under an RTN fake-quant proxy, fuse them (float64) and save a
// rotated checkpoint. See README.md for the recipe and defaults; --nproc N (or torchrun's
// environment) trains data-parallel.
#include "src/base/runtime_env.h"
#include "src/cli/main.h"
#include "src/dist/launcher.h"
#include "src/train/trainer.h"

int main(int argc, char** argv) {
  spin::prefer_fast_runtime(argv);
  // Threads are set by run_spintrain (each rank of --nproc sets its own).
  return spin::cli::guarded_main([&] {
    const spin::TrainConfig config = spin::train_config(spin::cli::parse(spin::train_program(), argc, argv));
    if (config.nproc > 1 && !spin::dist::launched_as_rank()) return spin::dist::launch_local_ranks(config.nproc, argv);
    spin::run_spintrain(config);
    return 0;
  });
}
