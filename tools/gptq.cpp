// spin-gptq: sequential GPTQ of a (rotated) checkpoint on HDF5 calibration ids, written in the GPTQ
// checkpoint format (src/quant/gptq_format.h) or as dequantized float weights for spin-eval (--format fake).
// A rotated checkpoint keeps its `rotation` section (less spintrain --learn-clip's weight_clip_file:
// GPTQ picks its own scales) and its online Hadamards are honoured. A model whose linears do not pack
// in the GPTQ format is refused before any work, unless --pad-intermediate makes them pack.
#include <chrono>
#include <iostream>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/cli/flags.h"
#include "src/quant/gptq_format.h"
#include "src/quant/gptq_model.h"
#include "src/rotation/format.h"

using namespace spin;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  return cli::guarded_main([&] {
    cxxopts::Options o("spin-gptq", "Layer-by-layer GPTQ weight quantization of a (rotated) checkpoint");
    o.add_options()
        ("model", "model directory (HF layout, optionally rotated)", cxxopts::value<std::string>())
        ("calib", "HDF5 file with dataset input_ids [N, T]", cxxopts::value<std::string>())
        ("out", "output directory", cxxopts::value<std::string>())
        ("wbits", "weight bits (2, 3, 4 or 8 for --format gptq; 2..8 for fake)", cxxopts::value<int>()->default_value("4"))
        ("groupsize", "group size along the input dim (<= 0: per row)", cxxopts::value<int64_t>()->default_value("128"))
        ("sym", "symmetric quantization (zero point 2^(bits-1))")
        ("act-order", "quantize columns in decreasing Hessian-diagonal order (desc_act)")
        ("damp", "dampening, fraction of mean(diag H)", cxxopts::value<double>()->default_value("0.01"))
        ("block-size", "lazy-batch block width", cxxopts::value<int64_t>()->default_value("128"))
        ("nsamples", "calibration rows (-1: all)", cxxopts::value<int64_t>()->default_value("128"))
        ("seq-len", "tokens per calibration row (-1: as stored)", cxxopts::value<int64_t>()->default_value("-1"))
        ("batch-size", "calibration rows per forward pass", cxxopts::value<int64_t>()->default_value("8"))
        ("format", "gptq (packed int32, quantization_config) or fake (dequantized float32 checkpoint)",
         cxxopts::value<std::string>()->default_value("gptq"))
        ("pad-intermediate", "zero-pad intermediate_size to the next multiple of 32 so gate/up/down pack in the GPTQ "
         "format (zero gate/up rows and down columns: the model's output is unchanged; not with the R4 online Hadamard)")
        ("dtype", "compute dtype for the calibration forwards: f32, bf16 or f64", cxxopts::value<std::string>()->default_value("f32"))
        ("device", "cpu, cuda or auto", cxxopts::value<std::string>()->default_value("cpu"))
        ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
        ("quiet", "no per-layer progress");
    auto r = cli::parse(o, argc, argv);
    SPIN_CHECK(r.count("model") && r.count("calib") && r.count("out"),
               "spin-gptq: --model, --calib and --out are required (see --help)");
    const std::string format = r["format"].as<std::string>();
    SPIN_CHECK(format == "gptq" || format == "fake", "--format: unknown format '", format, "' (choose gptq or fake)");
    cli::set_threads(r["threads"].as<int>());
    const auto dtype = cli::parse_dtype(r["dtype"].as<std::string>());
    const auto device = cli::parse_device(r["device"].as<std::string>());

    GptqModelOptions opt;
    opt.gptq.grid = {r["wbits"].as<int>(), r["groupsize"].as<int64_t>(), r.count("sym") == 0, 1.0};
    opt.gptq.act_order = r.count("act-order") > 0;
    opt.gptq.damp = r["damp"].as<double>();
    opt.gptq.block_size = r["block-size"].as<int64_t>();
    opt.batch_size = r["batch-size"].as<int64_t>();
    const int bits = opt.gptq.grid.bits;
    SPIN_CHECK(bits >= 2 && bits <= 8, "--wbits: GPTQ needs 2 to 8 bits, got ", bits);
    SPIN_CHECK(format == "fake" || bits == 2 || bits == 3 || bits == 4 || bits == 8,
               "--wbits: the GPTQ format packs 2, 3, 4 or 8 bits, got ", bits, " (use --format fake)");
    const bool pad = r.count("pad-intermediate") > 0;

    const fs::path model_dir = r["model"].as<std::string>(), out = r["out"].as<std::string>();
    LoadedModel m = load_model(model_dir);
    const ModelConfig& c = m.checkpoint.config;
    opt.r3 = m.rotation.r3;
    opt.r4 = m.rotation.r4;
    // Refusals come before the calibration data is read and any GPTQ work starts.
    if (format == "gptq") check_gptq_packable(c, pad, m.rotation.r4, model_dir.string());
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
    dopt.rows = r["nsamples"].as<int64_t>();
    dopt.seq_len = r["seq-len"].as<int64_t>();
    torch::Tensor ids = data::load_calib(r["calib"].as<std::string>(), c.vocab_size, dopt);

    const bool quiet = r.count("quiet") > 0;
    std::map<std::string, PackedLinear> packed;
    const auto start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    ModelWeights q = gptq_model(c, map_weights(c, m.checkpoint.weights, [&](const torch::Tensor& t) {
                                  return t.to(device, dtype);
                                }),
                                ids, opt, [&](const std::string& name, const QuantizedWeight& qw) {
                                  if (format == "gptq") {
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
    if (format == "gptq") {
      Checkpoint source = m.checkpoint;  // its directory's other files, with the output's config
      source.config = out_config;
      save_gptq_checkpoint(out, source, q, packed, {opt.gptq, ids.size(0), ids.size(1), notes});
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
      so.extra = [&](const fs::path& tmp) { copy_rotations_file(cfg, model_dir, tmp); };
      save_checkpoint(out, out_config, map_weights(out_config, q, [](const torch::Tensor& t) { return t.cpu(); }), so);
    }
    std::cerr << "spin-gptq: wrote " << out.string() << " (" << format << ")" << std::endl;
    return 0;
  });
}
