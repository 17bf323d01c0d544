// spintrain: learn R1/R2 rotations under an RTN fake-quant proxy, fuse them (float64) and save a
// rotated checkpoint. See README.md for the recipe and defaults; --nproc N (or torchrun's
// environment) trains data-parallel.
#include "src/base/check.h"
#include "src/dist/launcher.h"
#include "src/train/trainer.h"

int main(int argc, char** argv) {
  return spin::cli::guarded_main([&] {
    cxxopts::Options options = spin::train_options();
    auto flags = spin::cli::parse(options, argc, argv);
    const spin::TrainConfig config = spin::resolve_train_config(flags);
    if (config.nproc > 1 && !spin::dist::launched_as_rank()) return spin::dist::launch_local_ranks(config.nproc, argv);
    spin::run_spintrain(config);
    return 0;
  });
}
