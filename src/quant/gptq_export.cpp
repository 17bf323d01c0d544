#include "src/quant/gptq_export.h"

#include <chrono>
#include <iostream>

#include "src/base/check.h"
#include "src/base/names.h"
#include "src/quant/gptq_format.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const std::pair<const char*, GptqFormat> kFormats[] = {{"gptq", GptqFormat::gptq}, {"fake", GptqFormat::fake}};

}  // namespace

GptqFormat parse_gptq_format(const std::string& name) { return from_name(kFormats, name, "--format", "format"); }
const char* to_string(GptqFormat format) { return name_of(kFormats, format); }

void check_gptq_export(const ModelConfig& c, const GptqExportOptions& o, const std::string& model) {
  const int bits = o.model.gptq.grid.bits;
  SPIN_CHECK(bits >= 2 && bits <= 8, "--wbits: GPTQ needs 2 to 8 bits, got ", bits);
  SPIN_CHECK(o.format == GptqFormat::fake || bits == 2 || bits == 3 || bits == 4 || bits == 8,
             "--wbits: the GPTQ format packs 2, 3, 4 or 8 bits, got ", bits, " (use --format fake)");
  if (o.format == GptqFormat::gptq) check_gptq_packable(c, o.pad_intermediate, o.model.r4, model);
  if (o.pad_intermediate) check_pad_intermediate(c, o.model.r4, model);
}

ModelWeights export_gptq(const fs::path& out, const GptqSource& src, const torch::Tensor& ids,
                         const GptqExportOptions& o) {
  const Checkpoint& source = *src.checkpoint;
  const ModelConfig& c = source.config;
  check_gptq_export(c, o, source.dir.string());
  const GptqOptions& g = o.model.gptq;
  // The output's config: intermediate_size padded (GPTQ itself runs on the model as it is; the padding
  // is appended to its results).
  const int64_t inter = o.pad_intermediate ? gptq_packable_size(c.intermediate_size) : c.intermediate_size;
  ModelConfig out_config = c;
  out_config.json = src.config_json;
  out_config = with_intermediate_size(out_config, inter);
  nlohmann::json notes = src.notes;
  if (inter != c.intermediate_size)
    notes["intermediate_size_padded"] = {{"from", c.intermediate_size},
                                         {"to", inter},
                                         {"how", "zero rows appended to gate_proj/up_proj, zero columns to down_proj"}};

  std::map<std::string, PackedLinear> packed;
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  ModelWeights q = gptq_model(c, src.weights, ids, o.model, [&](const std::string& name, const QuantizedWeight& qw) {
    if (o.format == GptqFormat::gptq) {
      const auto shape = expected_shape(out_config, name);  // [out, in], padded
      packed[name] = pack_gptq(pad_quantized(qw, shape[0], shape[1], g.grid.groupsize), name);
    }
    if (!o.quiet) std::cerr << cat("[", seconds(), " s] ", name, "\n");
  });
  std::cerr << cat("gptq: ", ids.size(0), " rows x ", ids.size(1), " tokens, W", g.grid.bits, " ", g.grid.describe(),
                   g.act_order ? " act-order" : "", ", ", seconds(), " s\n");
  if (inter != c.intermediate_size) q = pad_intermediate(c, q, inter);

  if (o.format == GptqFormat::gptq) {
    Checkpoint with_config = source;  // its directory's other files, with the output's config
    with_config.weights = {};
    with_config.config = out_config;
    save_gptq_checkpoint(out, with_config, q, packed, {g, ids.size(0), ids.size(1), notes, src.extra_files});
  } else {
    nlohmann::json cfg = out_config.json;
    cfg["torch_dtype"] = "float32";
    cfg["gptq_fake_quant"] = {{"bits", g.grid.bits},
                              {"group_size", g.grid.groupsize > 0 ? g.grid.groupsize : -1},
                              {"sym", !g.grid.asym},
                              {"desc_act", g.act_order},
                              {"damp_percent", g.damp},
                              {"nsamples", ids.size(0)},
                              {"seq_len", ids.size(1)}};
    cfg["gptq_fake_quant"].update(notes);
    SaveOptions so;
    so.config_json = cfg;
    so.dtype = torch::kFloat32;  // dequantized values are exact in float32
    so.shard_of = source.shard_of;
    so.copy_from = source.dir;
    so.extra = src.extra_files;
    save_checkpoint(out, out_config, map_weights(out_config, q, [](const torch::Tensor& t) { return t.cpu(); }), so);
  }
  return q;
}

}  // namespace spin
