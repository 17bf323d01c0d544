// The GPTQ checkpoint format (AutoGPTQ / GPTQModel / transformers, quant_method "gptq",
// checkpoint_format "gptq", the "v1" zero points): pack and unpack one linear, write and read a whole
// checkpoint directory, and the zero padding of intermediate_size that makes a model packable.
//
// Each quantized linear "<prefix>.weight" W [out, in] with b bits (2, 3, 4 or 8) is stored as
//   <prefix>.qweight  int32 [in / 32 · b, out]        the codes of column o, down the input dimension
//   <prefix>.qzeros   int32 [groups, out / 32 · b]    zero point − 1 of (g, o), along the output dimension
//   <prefix>.scales   float16 [groups, out]
//   <prefix>.g_idx    int32 [in]                      group of input column i
// and W[o, i] = scales[g, o] · (code − zero), g = g_idx[i], groups = ceil(in / group_size) (1 per row).
// Packing, for both qweight (per column o) and qzeros (per group g): the codes c_0, c_1, ... of the
// packed dimension form one little-endian bit stream, c_k at stream bits [b·k, b·k + b), and word w
// (an int32 read as unsigned) holds stream bits [32·w, 32·w + 32) with bit 0 the lowest. 32 codes
// therefore fill exactly b words; for b = 3 the codes 10 and 21 straddle a word boundary (c_10: bits
// 30..31 of word 0 and bit 0 of word 1; c_21: bit 31 of word 1 and bits 0..1 of word 2). This is
// AutoGPTQ's QuantLinear.pack (qlinear_cuda_old.py) and GPTQModel's dequantize_weight read back.
// The clients allocate those shapes as in // 32 · b and out // 32 · b (AutoGPTQ; its exllama and
// triton kernels also assert in, out % 32 == 0) or ceil(in · b / 32) (GPTQModel), which agree only for
// multiples of 32: pack_gptq refuses any other in or out (see check_gptq_packable and
// pad_intermediate for the ways out).
// The linears of every layer (layer_linears(), src/model/weights.h) are quantized; every other tensor (embeddings, norms,
// lm_head, biases) is stored as float16. config.json gets
//   "quantization_config": {"quant_method": "gptq", "bits", "group_size" (-1: per row), "desc_act", "sym",
//                            "damp_percent", "static_groups": false, "true_sequential": true,
//                            "checkpoint_format": "gptq", "spintrain": {nsamples, seq_len, notes...}}
// and keeps every other field, including spintrain's `rotation` section (see src/rotation/format.h;
// spin-gptq drops its weight_clip_file: drop_learned_clip).
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

// The dimensions of a packed weight must be multiples of this (see the file comment).
constexpr int64_t kGptqPackMultiple = 32;
// The smallest multiple of kGptqPackMultiple that is >= n.
int64_t gptq_packable_size(int64_t n);

// bits must be 2, 3, 4 or 8 and q's out and in multiples of 32; `where` names the weight in errors.
PackedLinear pack_gptq(const QuantizedWeight& q, const std::string& where = "pack_gptq");
// Validates shapes, dtypes and g_idx against W [out, in]; `where` names the tensor in error messages.
// Reads every layout the format defines exactly: in · bits and out · bits multiples of 32 (so also a
// GPTQModel checkpoint with, e.g., 8 bits and in = 172), not only the multiples of 32 pack_gptq writes.
QuantizedWeight unpack_gptq(const PackedLinear& p, int bits, int64_t out, int64_t in, const std::string& where);

// Refuses (spin::Error, one line) a model whose quantized linears do not all pack, before any GPTQ
// work: names the first such tensor of `model` (a directory, for the message) and the ways out —
// --format fake, or --pad-intermediate when intermediate_size alone is at fault and the model has no
// R4 online Hadamard (`r4`). With `pad_intermediate` the check is of the padded model, and R4 or a
// hidden / head size that does not pack is refused.
void check_gptq_packable(const ModelConfig& config, bool pad_intermediate, bool r4, const std::string& model);
// --pad-intermediate on its own (also with --format fake): refused for a model with the R4 online
// Hadamard, whose size is intermediate_size, unless intermediate_size already packs (nothing to pad).
void check_pad_intermediate(const ModelConfig& config, bool r4, const std::string& model);

// --pad-intermediate: intermediate_size zero-padded to `size` (>= the current one). A SwiGLU MLP's
// output is unchanged: the new gate/up rows give silu(0) · 0 = 0, which the new down_proj columns (also
// zero) multiply. The config (and its JSON) with the new intermediate_size:
ModelConfig with_intermediate_size(const ModelConfig& config, int64_t size);
// The weights under `config` with gate_proj/up_proj [size, hidden] (zero rows appended) and down_proj
// [hidden, size] (zero columns appended); every other tensor shared.
ModelWeights pad_intermediate(const ModelConfig& config, const ModelWeights& weights, int64_t size);
// q (of a weight [q.out, q.in]) padded to [out, in] as GPTQ with `groupsize` (<= 0: per row) lays it
// out: every padding code equals its zero point, so it dequantizes to exactly 0; a padding column j
// joins group j / groupsize, and groups that only padding columns fill get scale 1, zero 2^(bits−1).
// The real rows and columns keep their codes, scales, zeros and groups.
QuantizedWeight pad_quantized(const QuantizedWeight& q, int64_t out, int64_t in, int64_t groupsize);

struct GptqExport {
  GptqOptions options;  // recorded in quantization_config
  int64_t nsamples = 0;
  int64_t seq_len = 0;
  nlohmann::json notes = nlohmann::json::object();  // merged into quantization_config.spintrain
  // Writes further files (e.g. a rotated source's rotations.safetensors, the output marker) into the
  // directory after the weights, before it is published.
  std::function<void(const std::filesystem::path& tmp_dir)> extra_files;
};

// Writes `source`'s config (plus quantization_config; source.config, not source.dir's config.json, so
// a padded or clip-free config is what is written) and non-weight files, the float tensors of
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
