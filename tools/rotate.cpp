// spin-rotate: QuaRot-style rotate-and-save with no training: fold norms, untie, apply fixed
// R1/R2 (any init) and R4's weight half, record R3/R4 as online Hadamards, export.
#include <iostream>

#include "src/base/check.h"
#include "src/cli/flags.h"
#include "src/rotation/format.h"

using namespace spin;

int main(int argc, char** argv) {
  return cli::guarded_main([&] {
    cxxopts::Options o("spin-rotate", "Rotate a checkpoint with fixed rotations (no training) and save it");
    o.add_options()
        ("model", "input model directory", cxxopts::value<std::string>())
        ("out", "output directory (written atomically)", cxxopts::value<std::string>())
        ("rotations", "subset of r1,r2,r3,r4", cxxopts::value<std::string>()->default_value("r1,r2,r3,r4"))
        ("init", "hadamard, random-hadamard, random or identity", cxxopts::value<std::string>()->default_value("random-hadamard"))
        ("seed", "seed of the random inits", cxxopts::value<uint64_t>()->default_value("0"))
        ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"));
    auto r = cli::parse(o, argc, argv);
    SPIN_CHECK(r.count("model") && r.count("out"), "spin-rotate: --model and --out are required (see --help)");
    cli::set_threads(r["threads"].as<int>());
    RotationConfig rc = RotationConfig::parse_list(r["rotations"].as<std::string>(), "--rotations");
    rc.init = r["init"].as<std::string>();
    rc.seed = r["seed"].as<uint64_t>();
    LoadedModel m = load_model(r["model"].as<std::string>());
    SPIN_CHECK(!m.rotation.any(), r["model"].as<std::string>(), ": is already a rotated checkpoint");
    const ModelConfig& c = m.checkpoint.config;
    const Rotations rot = init_rotations(c, rc);
    const ModelWeights fused = rotate_weights(c, rotation_base(c, m.checkpoint.weights, rc), rot);
    export_rotated(r["out"].as<std::string>(), m.checkpoint, fused, rc, rot);
    std::cout << "wrote " << r["out"].as<std::string>() << " (" << r["rotations"].as<std::string>() << ", init "
              << rc.init << ", seed " << rc.seed << ")" << std::endl;
    return 0;
  });
}
