// The GPTQ checkpoint format (AutoGPTQ / transformers, quant_method "gptq", checkpoint_format "gptq"):
// pack and unpack one linear, write and read a whole checkpoint directory.
//
// Each quantized linear "<prefix>.weight" W [out, in] is stored as (b bits, p = 32 / b codes per int32):
//   <prefix>.qweight  int32 [ceil(in / p), out]        code of W[o, i] at bits b·(i mod p) of qweight[i / p, o]
//   <prefix>.qzeros   int32 [groups, ceil(out / p)]    zero point − 1 of (g, o) at bits b·(o mod p) of qzeros[g, o / p]
//   <prefix>.scales   float16 [groups, out]
//   <prefix>.g_idx    int32 [in]                       group of input column i
// and W[o, i] = scales[g, o] · (code − zero), g = g_idx[i]. Padding codes (in or out not a multiple of p) are 0.
// The linears of every layer (layer_linears(), src/model/weights.h) are quantized; every other tensor (embeddings, norms,
// lm_head, biases) is stored as float16. config.json gets
//   "quantization_config": {"quant_method": "gptq", "bits", "group_size" (-1: per row), "desc_act", "sym",
//                            "damp_percent", "static_groups": false, "true_sequential": true,
//                            "checkpoint_format": "gptq"}
// and keeps every other field, including spintrain's `rotation` section (see src/rotation/format.h).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "src/io/checkpoint.h"
#include "src/quant/gptq.h"

namespace spin {

struct PackedLinear {
  torch::Tensor qweight, qzeros, scales, g_idx;  // see the file comment
};

// bits must be 2, 4 or 8.
PackedLinear pack_gptq(const QuantizedWeight& q);
// Validates shapes, dtypes and g_idx against W [out, in]; `where` names the tensor in error messages.
QuantizedWeight unpack_gptq(const PackedLinear& p, int bits, int64_t out, int64_t in, const std::string& where);

struct GptqExport {
  GptqOptions options;  // recorded in quantization_config
  int64_t nsamples = 0;
  int64_t seq_len = 0;
  // Writes further files (e.g. a rotated source's rotations.safetensors) into the directory before it
  // is published.
  std::function<void(const std::filesystem::path& tmp_dir)> extra_files;
};

// Writes `source`'s config (plus quantization_config) and non-weight files, the float tensors of
// `weights` other than the layer linears (as float16), and `packed` (keyed by HF weight name, one
// entry per layer linear, find_linear), atomically.
void save_gptq_checkpoint(const std::filesystem::path& dir, const Checkpoint& source, const ModelWeights& weights,
                          const std::map<std::string, PackedLinear>& packed, const GptqExport& info);

// True when dir/config.json has quantization_config.quant_method == "gptq".
bool is_gptq_checkpoint(const std::filesystem::path& dir);

// Loads a GPTQ checkpoint (single model.safetensors, checkpoint_format "gptq") as float32 weights with
// every quantized linear dequantized; the returned Checkpoint's dtype is float32.
Checkpoint load_gptq_checkpoint(const std::filesystem::path& dir);

}  // namespace spin
