// spin-rotate: QuaRot-style rotate-and-save with no training: fold norms, untie, apply fixed
// R1/R2 (any init) and R4's weight half, record R3/R4 as online Hadamards, export.
#include <iostream>

#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/io/output_guard.h"
#include "src/rotation/format.h"
#include "src/rotation/fusion.h"

using namespace spin;
using cli::Type;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-rotate", "Rotate a checkpoint with fixed rotations (no training) and save it",
      std::vector<cli::Option>{
          {"model", Type::text, "", "io", "input model directory"},
          {"out", Type::text, "", "io", "output directory (written atomically)"},
          {"rotations", Type::text, "r1,r2,r3,r4", "rotation", "subset of r1,r2,r3,r4"},
          {"init", Type::text, "random-hadamard", "rotation", "hadamard, random-hadamard, random or identity"},
          {"seed", Type::integer, "0", "rotation", "seed of the random inits"},
          {"threads", Type::integer, "0", "run", "CPU threads (0: all cores)"},
      } + cli::output_options()};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    const std::string model = v.text("model");
    SPIN_CHECK(!model.empty() && !v.text("out").empty(), "spin-rotate: --model and --out are required (see --help)");
    OutputGuard guard("spin-rotate");
    guard.add_input(model, "--model");
    const fs::path out = guard.add_output(v.text("out"), OutputKind::checkpoint_dir, "--out");
    guard.check(v.flag("overwrite"));
    RotationConfig rc = RotationConfig::parse_list(v.text("rotations"), "--rotations");
    rc.init = parse_rotation_init(v.text("init"));
    rc.seed = uint64_t(v.integer("seed"));
    LoadedModel m = load_model(model);
    SPIN_CHECK(!m.rotation.any(), model, ": is already a rotated checkpoint");
    const ModelConfig& c = m.checkpoint.config;
    const Rotations rot = init_rotations(c, rc);
    const ModelWeights fused = rotate_weights(c, fold_norms(c, m.checkpoint.weights, rc.r4), rot);
    export_rotated(out, m.checkpoint, fused, rc, rot, {}, [](const fs::path& dir) {
      write_dir_marker(dir, OutputKind::checkpoint_dir, "spin-rotate");
    });
    std::cout << "wrote " << out.string() << " (" << v.text("rotations") << ", init " << to_string(rc.init) << ", seed " << rc.seed
              << ")" << std::endl;
    return 0;
  });
}
