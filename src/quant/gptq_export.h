// GPTQ of a whole checkpoint, written as a checkpoint (spin-gptq, spintrain --gptq): the refusals that
// come before any work, sequential GPTQ (src/quant/gptq_model.h), the optional zero padding of
// intermediate_size, and the output in the GPTQ format (packed, src/quant/gptq_format.h) or as
// dequantized float32 weights ("fake", for spin-eval and any float runtime).
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "src/io/checkpoint.h"
#include "src/quant/gptq_model.h"

namespace spin {

enum class GptqFormat { gptq, fake };
GptqFormat parse_gptq_format(const std::string& name);  // "gptq" or "fake"
const char* to_string(GptqFormat format);

struct GptqExportOptions {
  GptqModelOptions model;  // grid, act order, damp, block size, calibration batch, the online r3/r4
  GptqFormat format = GptqFormat::gptq;
  bool pad_intermediate = false;  // zero-pad intermediate_size to the next size that packs
  bool quiet = false;             // no line per quantized linear
};

// Refuses (one line naming `model` and the tensor) what cannot be written: bits the format does not
// pack, dimensions that do not pack, padding where it changes the function (R4). Call it before any
// long work.
void check_gptq_export(const ModelConfig& config, const GptqExportOptions& options, const std::string& model);

// What a GPTQ export is made from: the source checkpoint (its non-weight files are copied), its
// weights in the compute dtype and device, and the output's config.json before the quantization
// fields (the caller removes what does not apply to a GPTQ model, e.g. learned clip ratios).
struct GptqSource {
  const Checkpoint* checkpoint;
  ModelWeights weights;
  nlohmann::json config_json;
  nlohmann::json notes = nlohmann::json::object();  // recorded with the quantization settings
  std::function<void(const std::filesystem::path& tmp_dir)> extra_files = {};  // e.g. a rotated source's rotations
};

// GPTQ of `source` on calibration ids [rows, T] (int64), written to `out` atomically after
// check_gptq_export. Returns the dequantized weights (padded when options.pad_intermediate), i.e.
// exactly what the output's quantized linears hold.
ModelWeights export_gptq(const std::filesystem::path& out, const GptqSource& source, const torch::Tensor& ids,
                         const GptqExportOptions& options);

}  // namespace spin
