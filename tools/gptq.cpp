// spin-gptq: sequential GPTQ of a (rotated) checkpoint on HDF5 calibration ids, written in the GPTQ
// checkpoint format (src/quant/gptq_format.h) or as dequantized float weights for spin-eval (--format fake).
// A rotated checkpoint keeps its `rotation` section (less spintrain --learn-clip's weight_clip_file:
// GPTQ picks its own scales) and its online Hadamards are honoured. A model whose linears do not pack
// in the GPTQ format is refused before any work, unless --pad-intermediate makes them pack.
#include <chrono>
#include <iostream>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/base/names.h"
#include "src/cli/main.h"
#include "src/quant/gptq_format.h"
#include "src/quant/gptq_model.h"
#include "src/rotation/format.h"

using namespace spin;
using cli::Type;
namespace fs = std::filesystem;

namespace {

enum class Format { gptq, fake };
const std::pair<const char*, Format> kFormats[] = {{"gptq", Format::gptq}, {"fake", Format::fake}};

}  // namespace

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
          {"pad-intermediate", Type::boolean, "false", "io",
           "zero-pad intermediate_size to the next multiple of 32 so gate/up/down pack in the GPTQ format (zero "
           "gate/up rows and down columns: the model's output is unchanged; not with the R4 online Hadamard)"},
      } +
          cli::with_defaults(cli::select(cli::quant_options(), {"wbits", "groupsize"}),
                             {{"wbits", "4"}, {"groupsize", "128"}}) +
          std::vector<cli::Option>{
              {"sym", Type::boolean, "false", "gptq", "symmetric quantization (zero point 2^(bits-1))"},
              {"act-order", Type::boolean, "false", "gptq", "quantize columns in decreasing Hessian-diagonal order (desc_act)"},
              {"damp", Type::real, "0.01", "gptq", "dampening, fraction of mean(diag H)"},
              {"block-size", Type::integer, "128", "gptq", "lazy-batch block width"},
              {"quiet", Type::boolean, "false", "run", "no per-layer progress"},
          } +
          cli::with_defaults(cli::run_options(), {{"device", "cpu"}})};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    SPIN_CHECK(!v.text("model").empty() && !v.text("calib").empty() && !v.text("out").empty(),
               "spin-gptq: --model, --calib and --out are required (see --help)");
    const Format format = from_name(kFormats, v.text("format"), "--format", "format");
    const cli::RunFlags run = cli::run_flags(v);

    GptqModelOptions opt;
    opt.gptq.grid = {int(v.integer("wbits")), v.integer("groupsize"), !v.flag("sym"), 1.0};
    opt.gptq.act_order = v.flag("act-order");
    opt.gptq.damp = v.real("damp");
    opt.gptq.block_size = v.integer("block-size");
    opt.batch_size = v.integer("batch-size");
    const int bits = opt.gptq.grid.bits;
    SPIN_CHECK(bits >= 2 && bits <= 8, "--wbits: GPTQ needs 2 to 8 bits, got ", bits);
    SPIN_CHECK(format == Format::fake || bits == 2 || bits == 3 || bits == 4 || bits == 8,
               "--wbits: the GPTQ format packs 2, 3, 4 or 8 bits, got ", bits, " (use --format fake)");
    const bool pad = v.flag("pad-intermediate");

    const fs::path model_dir = v.text("model"), out = v.text("out");
    LoadedModel m = load_model(model_dir);
    const ModelConfig& c = m.checkpoint.config;
    opt.r3 = m.rotation.r3;
    opt.r4 = m.rotation.r4;
    // Refusals come before the calibration data is read and any GPTQ work starts.
    if (format == Format::gptq) check_gptq_packable(c, pad, m.rotation.r4, model_dir.string());
    if (pad) check_pad_intermediate(c, m.rotation.r4, model_dir.string());
    // The output's config: intermediate_size padded (GPTQ itself runs on the model as it is; the
    // padding is appended to its results) and the learned clip reference dropped.
    const int64_t inter = pad ? gptq_packable_size(c.intermediate_size) : c.intermediate_size;
    ModelConfig out_config = with_intermediate_size(c, inter);
    nlohmann::json notes = nlohmann::json::object();
    if (nlohmann::json clip = drop_learned_clip(out_config.json); !clip.is_null()) {
      notes["learned_weight_clip"] = clip;
      std::cerr << "spin-gptq: the learned clip ratios (" << clip["source_file"].get<std::string>()
                << ") are not applied: GPTQ chooses its own scales\n";
    }
    if (inter != c.intermediate_size)
      notes["intermediate_size_padded"] = {
          {"from", c.intermediate_size},
          {"to", inter},
          {"how", "zero rows appended to gate_proj/up_proj, zero columns to down_proj"}};
    data::CalibOptions dopt;
    dopt.rows = v.integer("nsamples");
    dopt.seq_len = v.integer("seq-len");
    torch::Tensor ids = data::load_calib(v.text("calib"), c.vocab_size, dopt);

    const bool quiet = v.flag("quiet");
    std::map<std::string, PackedLinear> packed;
    const auto start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    ModelWeights q = gptq_model(c, map_weights(c, m.checkpoint.weights, [&](const torch::Tensor& t) {
                                  return t.to(run.device, run.dtype);
                                }),
                                ids, opt, [&](const std::string& name, const QuantizedWeight& qw) {
                                  if (format == Format::gptq) {
                                    const auto shape = expected_shape(out_config, name);  // [out, in], padded
                                    packed[name] = pack_gptq(
                                        pad_quantized(qw, shape[0], shape[1], opt.gptq.grid.groupsize), name);
                                  }
                                  if (!quiet) std::cerr << cat("[", seconds(), " s] ", name, "\n");
                                });
    std::cerr << cat("spin-gptq: ", ids.size(0), " rows x ", ids.size(1), " tokens, W", bits, " ",
                     opt.gptq.grid.describe(), opt.gptq.act_order ? " act-order" : "", ", ", seconds(),
                     " s\n");

    if (inter != c.intermediate_size) q = pad_intermediate(c, q, inter);

    auto keep_rotations = [&](const fs::path& tmp) { copy_rotations_file(c.json, model_dir, tmp); };
    if (format == Format::gptq) {
      Checkpoint source = m.checkpoint;  // its directory's other files, with the output's config
      source.config = out_config;
      save_gptq_checkpoint(out, source, q, packed, {opt.gptq, ids.size(0), ids.size(1), notes, keep_rotations});
    } else {
      nlohmann::json cfg = out_config.json;
      cfg["torch_dtype"] = "float32";
      cfg["gptq_fake_quant"] = {{"bits", bits},
                                {"group_size", opt.gptq.grid.groupsize > 0 ? opt.gptq.grid.groupsize : -1},
                                {"sym", !opt.gptq.grid.asym},
                                {"desc_act", opt.gptq.act_order},
                                {"damp_percent", opt.gptq.damp},
                                {"nsamples", ids.size(0)},
                                {"seq_len", ids.size(1)}};
      cfg["gptq_fake_quant"].update(notes);
      SaveOptions so;
      so.config_json = cfg;
      so.dtype = torch::kFloat32;  // dequantized values are exact in float32
      so.shard_of = m.checkpoint.shard_of;
      so.copy_from = model_dir;
      so.extra = keep_rotations;
      save_checkpoint(out, out_config, map_weights(out_config, q, [](const torch::Tensor& t) { return t.cpu(); }), so);
    }
    std::cerr << "spin-gptq: wrote " << out.string() << " (" << v.text("format") << ")" << std::endl;
    return 0;
  });
}
