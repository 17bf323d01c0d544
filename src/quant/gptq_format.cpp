#include "src/quant/gptq_format.h"

#include <fstream>
#include <numeric>
#include <optional>

#include "src/io/atomic_file.h"
#include "src/base/check.h"
#include "src/io/resources.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const char* kWeightsFile = "model.safetensors";

void check_bits(int bits, const std::string& where) {
  SPIN_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8, where, ": the GPTQ format packs 2, 3, 4 or 8 bits, got ",
             bits);
}

// The smallest run of codes that fills whole words: 32 / gcd(32, bits) codes (32 for 3 bits, 16, 8
// and 4 for 2, 4 and 8 bits) in bits / gcd(32, bits) words (3 for 3 bits, else 1).
int64_t codes_per_block(int bits) { return 32 / std::gcd(32, bits); }
int64_t words_per_block(int bits) { return bits / std::gcd(32, bits); }

const int64_t kWordMask = 0xFFFFFFFF;

// Codes [rows, n] (int64, integers in [0, 2^bits), n a multiple of codes_per_block) -> int32
// [rows, n · bits / 32]: the codes of each row as one little-endian bit stream cut into 32-bit words
// (see the header). Code k of a block starts at stream bit bits·k, i.e. bit s = bits·k mod 32 of the
// block's word w = bits·k / 32, and spills its top bits + s − 32 bits into word w + 1 when s + bits > 32.
torch::Tensor pack_stream(const torch::Tensor& codes, int bits) {
  const int64_t rows = codes.size(0), per = codes_per_block(bits), wpb = words_per_block(bits);
  torch::Tensor c = codes.to(torch::kLong).reshape({rows, -1, per});     // [rows, blocks, per]
  torch::Tensor words = torch::zeros({rows, c.size(1), wpb}, c.options());  // [rows, blocks, wpb], unsigned values
  for (int64_t k = 0; k < per; ++k) {
    const int64_t bit = bits * k, w = bit / 32, s = bit % 32;
    const torch::Tensor ck = c.select(2, k);
    words.select(2, w).bitwise_or_(torch::bitwise_left_shift(ck, s).bitwise_and(kWordMask));
    if (s + bits > 32) words.select(2, w + 1).bitwise_or_(torch::bitwise_right_shift(ck, 32 - s));
  }
  words = words.reshape({rows, -1});
  // [0, 2^32) -> the int32 with the same bits.
  return torch::where(words >= (int64_t(1) << 31), words - (int64_t(1) << 32), words).to(torch::kInt32);
}

// Inverse of pack_stream: int32 [rows, words] (words a multiple of words_per_block) -> int64 [rows, n].
torch::Tensor unpack_stream(const torch::Tensor& packed, int bits) {
  const int64_t rows = packed.size(0), per = codes_per_block(bits), wpb = words_per_block(bits);
  torch::Tensor w = packed.to(torch::kLong).bitwise_and(kWordMask).reshape({rows, -1, wpb});  // unsigned
  std::vector<torch::Tensor> codes;
  for (int64_t k = 0; k < per; ++k) {
    const int64_t bit = bits * k, wi = bit / 32, s = bit % 32;
    torch::Tensor c = torch::bitwise_right_shift(w.select(2, wi), s);
    if (s + bits > 32) c = c.bitwise_or(torch::bitwise_left_shift(w.select(2, wi + 1), 32 - s));
    codes.push_back(c.bitwise_and((int64_t(1) << bits) - 1));
  }
  return torch::stack(codes, 2).reshape({rows, -1});  // [rows, blocks, per] -> [rows, n]
}

// A quantized linear of `config` that does not pack: its name, shape, and the failing dimension.
struct Unpackable {
  std::string name;
  std::vector<int64_t> shape;
  std::string dim;  // "out_features" or "in_features"
  int64_t size = 0;
};

// The first linear of layer 0 (every layer has the same shapes) whose out or in is not a multiple of
// 32, in layer_linears() order.
std::optional<Unpackable> first_unpackable(const ModelConfig& config) {
  for (const Linear& l : layer_linears()) {
    const std::vector<int64_t> shape = l.shape(config);
    if (shape[0] % kGptqPackMultiple != 0) return Unpackable{l.hf_name(0), shape, "out_features", shape[0]};
    if (shape[1] % kGptqPackMultiple != 0) return Unpackable{l.hf_name(0), shape, "in_features", shape[1]};
  }
  return std::nullopt;
}

std::string describe(const Unpackable& u) {
  return cat(u.name, " ", c10::IntArrayRef(u.shape), ": ", u.dim, " ", u.size, " is not a multiple of ",
             kGptqPackMultiple, ", so its ", u.dim == "out_features" ? "qzeros" : "qweight",
             " cannot be packed as the GPTQ clients allocate it");
}

nlohmann::json read_config_json(const fs::path& path) {
  std::ifstream in(path);
  SPIN_CHECK(in.good(), path.string(), ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": not valid JSON (", e.what(), ")");
  }
}

std::string prefix_of(const std::string& weight_name) { return weight_name.substr(0, weight_name.size() - 7); }

}  // namespace

int64_t gptq_packable_size(int64_t n) { return (n + kGptqPackMultiple - 1) / kGptqPackMultiple * kGptqPackMultiple; }

PackedLinear pack_gptq(const QuantizedWeight& q, const std::string& where) {
  check_bits(q.bits, where);
  const int64_t out = q.codes.size(0), in = q.codes.size(1);
  SPIN_CHECK(out % kGptqPackMultiple == 0 && in % kGptqPackMultiple == 0, where, ": weight [", out, ", ", in,
             "] does not pack in the GPTQ format (out and in must be multiples of ", kGptqPackMultiple, ")");
  PackedLinear p;
  p.qweight = pack_stream(q.codes, q.bits).t().contiguous();   // codes [out, in] -> [out, in·b/32] -> [in·b/32, out]
  p.qzeros = pack_stream(q.zeros.to(torch::kLong) - 1, q.bits);   // [groups, out] -> [groups, out·b/32]
  p.scales = q.scales.to(torch::kHalf);
  p.g_idx = q.g_idx.to(torch::kInt32);
  return p;
}

QuantizedWeight unpack_gptq(const PackedLinear& p, int bits, int64_t out, int64_t in, const std::string& where) {
  check_bits(bits, where);
  const int64_t per = codes_per_block(bits);
  SPIN_CHECK(in % per == 0 && out % per == 0, where, ": weight [", out, ", ", in, "] cannot be stored in ", bits,
             "-bit GPTQ words (in and out must be multiples of ", per, ")");
  auto check = [&](const torch::Tensor& t, const char* name, torch::ScalarType dtype, std::vector<int64_t> shape) {
    SPIN_CHECK(t.defined(), where, ".", name, " is missing");
    SPIN_CHECK(t.scalar_type() == dtype, where, ".", name, " has dtype ", c10::toString(t.scalar_type()),
               ", expected ", c10::toString(dtype));
    SPIN_CHECK(t.sizes() == torch::IntArrayRef(shape), where, ".", name, " has shape ", t.sizes(), ", expected ",
               c10::IntArrayRef(shape));
  };
  SPIN_CHECK(p.scales.defined() && p.scales.dim() == 2, where, ".scales must be [groups, out]");
  const int64_t groups = p.scales.size(0);
  check(p.qweight, "qweight", torch::kInt32, {in * bits / 32, out});
  check(p.qzeros, "qzeros", torch::kInt32, {groups, out * bits / 32});
  check(p.scales, "scales", torch::kHalf, {groups, out});
  check(p.g_idx, "g_idx", torch::kInt32, {in});
  SPIN_CHECK(groups > 0 && p.g_idx.min().item<int64_t>() >= 0 && p.g_idx.max().item<int64_t>() < groups, where,
             ".g_idx has entries outside [0, ", groups, ")");
  SPIN_CHECK(torch::isfinite(p.scales).all().item<bool>(), where, ".scales contains NaN or inf values");
  QuantizedWeight q;
  q.bits = bits;
  q.codes = unpack_stream(p.qweight.t(), bits).to(torch::kUInt8);  // [in·b/32, out]ᵀ -> [out, in]
  // v1 stores zero − 1; a stored all-ones field wraps back to zero 0.
  q.zeros = (unpack_stream(p.qzeros, bits) + 1).bitwise_and((int64_t(1) << bits) - 1).to(torch::kInt32);
  q.scales = p.scales.to(torch::kFloat32);
  q.g_idx = p.g_idx;
  return q;
}

void check_gptq_packable(const ModelConfig& config, bool pad_intermediate, bool r4, const std::string& model) {
  const std::string who = model + ": --format gptq";
  const int64_t inter = config.intermediate_size, padded = gptq_packable_size(inter);
  if (pad_intermediate) {
    check_pad_intermediate(config, r4, model);
    if (auto u = first_unpackable(with_intermediate_size(config, padded)))
      fail(who, ": ", describe(*u), "; --pad-intermediate pads only intermediate_size (padding hidden_size or the",
           " head sizes is not supported): use --format fake");
    return;
  }
  const auto u = first_unpackable(config);
  if (!u) return;
  if (first_unpackable(with_intermediate_size(config, padded)))  // not intermediate_size alone
    fail(who, ": ", describe(*u), "; use --format fake (padding hidden_size or the head sizes is not supported)");
  if (r4)
    fail(who, ": ", describe(*u),
         "; use --format fake (--pad-intermediate cannot be used with the R4 online Hadamard)");
  fail(who, ": ", describe(*u), "; use --format fake, or --pad-intermediate (zero-pads intermediate_size ", inter,
       " to ", padded, ", the model's output unchanged)");
}

void check_pad_intermediate(const ModelConfig& config, bool r4, const std::string& model) {
  const int64_t inter = config.intermediate_size, padded = gptq_packable_size(inter);
  SPIN_CHECK(!r4 || padded == inter, model, ": --pad-intermediate would pad intermediate_size ", inter, " to ", padded,
             ", but the model applies the R4 online Hadamard of size ", inter,
             " to down_proj's input, which padding would break: drop --pad-intermediate and use --format fake");
}

ModelConfig with_intermediate_size(const ModelConfig& config, int64_t size) {
  ModelConfig c = config;
  c.intermediate_size = size;
  c.json["intermediate_size"] = size;
  return c;
}

ModelWeights pad_intermediate(const ModelConfig& config, const ModelWeights& weights, int64_t size) {
  const int64_t extra = size - config.intermediate_size;
  SPIN_CHECK(extra >= 0, "pad_intermediate: size ", size, " is below intermediate_size ", config.intermediate_size);
  namespace F = torch::nn::functional;
  ModelWeights w = weights;
  for (LayerWeights& L : w.layers) {
    L.gate_proj = F::pad(L.gate_proj, F::PadFuncOptions({0, 0, 0, extra}));  // [I, H] -> [size, H]
    L.up_proj = F::pad(L.up_proj, F::PadFuncOptions({0, 0, 0, extra}));
    L.down_proj = F::pad(L.down_proj, F::PadFuncOptions({0, extra}));  // [H, I] -> [H, size]
  }
  return w;
}

QuantizedWeight pad_quantized(const QuantizedWeight& q, int64_t out, int64_t in, int64_t groupsize) {
  const int64_t out0 = q.codes.size(0), in0 = q.codes.size(1);
  SPIN_CHECK(out >= out0 && in >= in0, "pad_quantized: cannot pad [", out0, ", ", in0, "] to [", out, ", ", in, "]");
  if (out == out0 && in == in0) return q;
  // gptq_quantize's group width for `in` columns, hence the group count the clients expect.
  const int64_t g = groupsize > 0 && groupsize < in ? groupsize : in;
  const int64_t groups = (in + g - 1) / g, groups0 = q.scales.size(0);
  SPIN_CHECK(groups >= groups0, "pad_quantized: ", groups0, " groups do not fit in ", groups);
  const int64_t mid = int64_t(1) << (q.bits - 1);
  QuantizedWeight p;
  p.bits = q.bits;
  p.scales = torch::ones({groups, out}, q.scales.options());  // padding rows and groups: scale 1, zero 2^(bits−1)
  p.zeros = torch::full({groups, out}, mid, q.zeros.options());
  p.scales.narrow(0, 0, groups0).narrow(1, 0, out0).copy_(q.scales);
  p.zeros.narrow(0, 0, groups0).narrow(1, 0, out0).copy_(q.zeros);
  const torch::Tensor pad_cols = torch::arange(in0, in, q.g_idx.options().dtype(torch::kLong));
  p.g_idx = torch::cat({q.g_idx.to(torch::kInt32), torch::div(pad_cols, g, "floor").to(torch::kInt32)});
  // codes [out, in]: the zero point of each entry's (group, row), then the real codes over the top.
  p.codes = p.zeros.index_select(0, p.g_idx.to(torch::kLong)).t().to(torch::kUInt8).contiguous();
  p.codes.narrow(0, 0, out0).narrow(1, 0, in0).copy_(q.codes);
  return p;
}

void save_gptq_checkpoint(const fs::path& dir, const Checkpoint& source, const ModelWeights& weights,
                          const std::map<std::string, PackedLinear>& packed, const GptqExport& info) {
  const GptqOptions& o = info.options;
  check_bits(o.grid.bits, "--wbits");
  nlohmann::json cfg = source.config.json;
  cfg["torch_dtype"] = "float16";
  cfg["quantization_config"] = {{"quant_method", "gptq"},
                                {"bits", o.grid.bits},
                                {"group_size", o.grid.groupsize > 0 ? o.grid.groupsize : -1},
                                {"desc_act", o.act_order},
                                {"sym", !o.grid.asym},
                                {"damp_percent", o.damp},
                                {"static_groups", false},
                                {"true_sequential", true},
                                {"checkpoint_format", "gptq"},
                                {"spintrain", {{"nsamples", info.nsamples}, {"seq_len", info.seq_len}}}};
  if (info.notes.is_object()) cfg["quantization_config"]["spintrain"].update(info.notes);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : named_tensors(source.config, weights)) {
    if (!find_linear(name)) {
      torch::Tensor h = t.to(torch::kCPU, torch::kHalf);
      SPIN_CHECK(torch::isfinite(h).all().item<bool>(), dir.string(), ": tensor '", name, "' overflows float16");
      tensors.emplace_back(name, h);
      continue;
    }
    auto it = packed.find(name);
    SPIN_CHECK(it != packed.end(), dir.string(), ": no quantized weights for '", name, "'");
    const std::string prefix = prefix_of(name);
    tensors.emplace_back(prefix + ".qweight", it->second.qweight.cpu());
    tensors.emplace_back(prefix + ".qzeros", it->second.qzeros.cpu());
    tensors.emplace_back(prefix + ".scales", it->second.scales.cpu());
    tensors.emplace_back(prefix + ".g_idx", it->second.g_idx.cpu());
  }
  uint64_t bytes = 0;
  for (const auto& [name, t] : tensors) bytes += t.nbytes();
  require_disk(dir, bytes, "GPTQ export");
  write_dir_atomic(dir, [&](const fs::path& tmp) {
    copy_non_weight_files(source.dir, tmp);
    write_text_atomic(tmp / "config.json", cfg.dump(2) + "\n");
    save_safetensors((tmp / kWeightsFile).string(), tensors, {{"format", "pt"}});
    if (info.extra_files) info.extra_files(tmp);
  });
}

bool is_gptq_checkpoint(const fs::path& dir) {
  const fs::path path = dir / "config.json";
  if (!fs::exists(path)) return false;
  const nlohmann::json j = read_config_json(path);
  return j.contains("quantization_config") && j["quantization_config"].is_object() &&
         j["quantization_config"].value("quant_method", std::string()) == "gptq";
}

Checkpoint load_gptq_checkpoint(const fs::path& dir) {
  Checkpoint ck;
  ck.dir = dir;
  ck.config = load_model_config((dir / "config.json").string());
  const std::string where = (dir / "config.json").string() + ": quantization_config";
  const nlohmann::json& qc = ck.config.json["quantization_config"];
  SPIN_CHECK(qc.value("quant_method", std::string()) == "gptq", where, ".quant_method must be \"gptq\"");
  const std::string format = qc.value("checkpoint_format", std::string("gptq"));
  SPIN_CHECK(format == "gptq", where, ".checkpoint_format '", format, "' is not supported (only \"gptq\")");
  SPIN_CHECK(qc.contains("bits") && qc["bits"].is_number_integer(), where, ".bits is missing or not an integer");
  const int bits = qc["bits"].get<int>();
  check_bits(bits, where + ".bits");
  SPIN_CHECK(fs::exists(dir / kWeightsFile), (dir / kWeightsFile).string(),
             ": not found (sharded GPTQ checkpoints are not supported)");
  SafetensorsFile file((dir / kWeightsFile).string());
  auto get = [&](const std::string& name) { return file.contains(name) ? file.get(name) : torch::Tensor(); };

  for_each_slot(ck.config, ck.weights, [&](const std::string& name, torch::Tensor& slot) {
    const auto want = expected_shape(ck.config, name);
    if (find_linear(name)) {
      const std::string prefix = prefix_of(name);
      PackedLinear p{get(prefix + ".qweight"), get(prefix + ".qzeros"), get(prefix + ".scales"),
                     get(prefix + ".g_idx")};
      slot = unpack_gptq(p, bits, want[0], want[1], file.path() + ": '" + prefix + "'").dequantize();
      return;
    }
    if (is_tied_half(ck.config, name) && !file.contains(name)) return;  // tied below
    SPIN_CHECK(file.contains(name), file.path(), ": tensor '", name, "' is missing");
    const TensorInfo& info = file.info(name);
    SPIN_CHECK(info.shape == want, file.path(), ": tensor '", name, "' has shape ", c10::IntArrayRef(info.shape),
               " but config.json implies ", c10::IntArrayRef(want));
    SPIN_CHECK(info.dtype == torch::kFloat32 || info.dtype == torch::kBFloat16 || info.dtype == torch::kFloat16,
               file.path(), ": tensor '", name, "' has dtype ", c10::toString(info.dtype),
               " (supported: F32, BF16, F16)");
    slot = file.get(name).to(torch::kFloat32);
    SPIN_CHECK(torch::isfinite(slot).all().item<bool>(), file.path(), ": tensor '", name, "' contains NaN or inf values");
  });
  if (ck.config.tie_word_embeddings) tie_embeddings(ck.weights, file.path());
  ck.dtype = torch::kFloat32;
  return ck;
}

}  // namespace spin
