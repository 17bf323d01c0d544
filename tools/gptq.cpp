// spin-gptq: sequential GPTQ of a (rotated) checkpoint on HDF5 calibration ids, written in the GPTQ
// checkpoint format (src/quant/gptq_format.h) or as dequantized float weights for spin-eval (--format fake).
// A rotated checkpoint keeps its `rotation` section (less spintrain --learn-clip's weight_clip_file:
// GPTQ picks its own scales) and its online Hadamards are honoured. A model whose linears do not pack
// in the GPTQ format is refused before any work, unless --pad-intermediate makes them pack.
#include <iostream>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/io/output_guard.h"
#include "src/quant/gptq_export.h"
#include "src/rotation/format.h"

using namespace spin;
using cli::Type;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-gptq", "Layer-by-layer GPTQ weight quantization of a (rotated) checkpoint",
      std::vector<cli::Option>{
          {"model", Type::text, "", "io", "model directory (HF layout, optionally rotated)"},
          {"calib", Type::text, "", "io", "HDF5 file with dataset input_ids [N, T]"},
          {"out", Type::text, "", "io", "output directory"},
          {"format", Type::text, "gptq", "io",
           "gptq (packed int32, quantization_config) or fake (dequantized float32 checkpoint)"},
          {"nsamples", Type::integer, "128", "io", "calibration rows (-1: all)"},
          {"seq-len", Type::integer, "-1", "io", "tokens per calibration row (-1: as stored)"},
          {"batch-size", Type::integer, "8", "io", "calibration rows per forward pass"},
          {"sym", Type::boolean, "false", "gptq", "symmetric quantization (zero point 2^(bits-1))"},
          {"quiet", Type::boolean, "false", "run", "no per-layer progress"},
      } +
          cli::with_defaults(cli::select(cli::quant_options(), {"wbits", "groupsize"}),
                             {{"wbits", "4"}, {"groupsize", "128"}}) +
          cli::gptq_options() + cli::output_options() + cli::with_defaults(cli::run_options(), {{"device", "cpu"}})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    SPIN_CHECK(!v.text("model").empty() && !v.text("calib").empty() && !v.text("out").empty(),
               "spin-gptq: --model, --calib and --out are required (see --help)");
    const cli::RunFlags run = cli::run_flags(v);
    GptqExportOptions opt = cli::gptq_flags(v, {int(v.integer("wbits")), v.integer("groupsize"), !v.flag("sym"), 1.0});
    opt.format = parse_gptq_format(v.text("format"));
    opt.model.batch_size = v.integer("batch-size");
    opt.quiet = v.flag("quiet");

    const fs::path model_dir = v.text("model");
    OutputGuard guard("spin-gptq");
    guard.add_input(model_dir, "--model");
    guard.add_input(v.text("calib"), "--calib");
    const fs::path out = guard.add_output(v.text("out"), OutputKind::checkpoint_dir, "--out");
    guard.check(v.flag("overwrite"));
    LoadedModel m = load_model(model_dir);
    const ModelConfig& c = m.checkpoint.config;
    opt.model.r3 = m.rotation.r3;
    opt.model.r4 = m.rotation.r4;
    // Refusals come before the calibration data is read and any GPTQ work starts.
    check_gptq_export(c, opt, model_dir.string());
    data::CalibOptions dopt;
    dopt.rows = v.integer("nsamples");
    dopt.seq_len = v.integer("seq-len");
    const torch::Tensor ids = data::load_calib(v.text("calib"), c.vocab_size, dopt);

    GptqSource source{&m.checkpoint, map_weights(c, m.checkpoint.weights, [&](const torch::Tensor& t) {
                        return t.to(run.device, run.dtype);
                      }),
                      c.json};
    if (nlohmann::json clip = drop_learned_clip(source.config_json); !clip.is_null()) {
      source.notes["learned_weight_clip"] = clip;
      std::cerr << "spin-gptq: the learned clip ratios (" << clip["source_file"].get<std::string>()
                << ") are not applied: GPTQ chooses its own scales\n";
    }
    source.extra_files = [&](const fs::path& tmp) {
      copy_rotations_file(c.json, model_dir, tmp);
      write_dir_marker(tmp, OutputKind::checkpoint_dir, "spin-gptq");
    };
    export_gptq(out, source, ids, opt);
    std::cerr << "spin-gptq: wrote " << out.string() << " (" << to_string(opt.format) << ")" << std::endl;
    return 0;
  });
}
