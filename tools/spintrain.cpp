// spintrain: learn R1/R2 rotations under an RTN fake-quant proxy, fuse them (float64) and save a
// rotated checkpoint. See README.md for the recipe and defaults.
#include "src/check.h"
#include "src/trainer.h"

int main(int argc, char** argv) {
  return spin::cli::guarded_main([&] {
    cxxopts::Options options = spin::train_options();
    auto flags = spin::cli::parse(options, argc, argv);
    spin::run_spintrain(spin::resolve_train_config(flags));
    return 0;
  });
}
