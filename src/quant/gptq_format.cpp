#include "src/quant/gptq_format.h"

#include <fstream>

#include "src/io/atomic_file.h"
#include "src/io/output_guard.h"
#include "src/base/check.h"
#include "src/io/resources.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const char* kWeightsFile = "model.safetensors";

void check_bits(int bits, const std::string& where) {
  SPIN_CHECK(bits == 2 || bits == 4 || bits == 8, where, ": the GPTQ format packs 2, 4 or 8 bits, got ", bits);
}

// Codes [rows, n] (integers in [0, 2^bits)) -> int32 [rows, ceil(n / p)], p codes per word, low bits first.
torch::Tensor pack_rows(const torch::Tensor& codes, int bits) {
  const int64_t p = 32 / bits, n = codes.size(1), words = (n + p - 1) / p;
  torch::Tensor c = torch::zeros({codes.size(0), words * p}, codes.options().dtype(torch::kLong));
  c.narrow(1, 0, n).copy_(codes);
  torch::Tensor shifts = torch::pow(2, torch::arange(p, c.options()) * bits);  // 2^(bits·k)
  torch::Tensor word = (c.view({codes.size(0), words, p}) * shifts).sum(-1);  // [rows, words] in [0, 2^32)
  return torch::where(word >= (int64_t(1) << 31), word - (int64_t(1) << 32), word).to(torch::kInt32);
}

// Inverse of pack_rows: int32 [rows, words] -> int64 [rows, n].
torch::Tensor unpack_rows(const torch::Tensor& words, int bits, int64_t n) {
  const int64_t p = 32 / bits;
  torch::Tensor w = words.to(torch::kLong).bitwise_and(int64_t(0xFFFFFFFF)).unsqueeze(-1);  // unsigned value
  torch::Tensor shifts = torch::pow(2, torch::arange(p, w.options()) * bits);
  torch::Tensor c = torch::div(w, shifts, "floor").bitwise_and((int64_t(1) << bits) - 1);
  return c.reshape({words.size(0), -1}).narrow(1, 0, n);
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

PackedLinear pack_gptq(const QuantizedWeight& q) {
  check_bits(q.bits, "pack_gptq");
  PackedLinear p;
  p.qweight = pack_rows(q.codes.to(torch::kLong), q.bits).t().contiguous();  // [out, words] -> [words, out]
  p.qzeros = pack_rows(q.zeros.to(torch::kLong) - 1, q.bits);
  p.scales = q.scales.to(torch::kHalf);
  p.g_idx = q.g_idx.to(torch::kInt32);
  return p;
}

QuantizedWeight unpack_gptq(const PackedLinear& p, int bits, int64_t out, int64_t in, const std::string& where) {
  check_bits(bits, where);
  const int64_t per = 32 / bits;
  auto check = [&](const torch::Tensor& t, const char* name, torch::ScalarType dtype, std::vector<int64_t> shape) {
    SPIN_CHECK(t.defined(), where, ".", name, " is missing");
    SPIN_CHECK(t.scalar_type() == dtype, where, ".", name, " has dtype ", c10::toString(t.scalar_type()),
               ", expected ", c10::toString(dtype));
    SPIN_CHECK(t.sizes() == torch::IntArrayRef(shape), where, ".", name, " has shape ", t.sizes(), ", expected ",
               c10::IntArrayRef(shape));
  };
  SPIN_CHECK(p.scales.defined() && p.scales.dim() == 2, where, ".scales must be [groups, out]");
  const int64_t groups = p.scales.size(0);
  check(p.qweight, "qweight", torch::kInt32, {(in + per - 1) / per, out});
  check(p.qzeros, "qzeros", torch::kInt32, {groups, (out + per - 1) / per});
  check(p.scales, "scales", torch::kHalf, {groups, out});
  check(p.g_idx, "g_idx", torch::kInt32, {in});
  SPIN_CHECK(groups > 0 && p.g_idx.min().item<int64_t>() >= 0 && p.g_idx.max().item<int64_t>() < groups, where,
             ".g_idx has entries outside [0, ", groups, ")");
  SPIN_CHECK(torch::isfinite(p.scales).all().item<bool>(), where, ".scales contains NaN or inf values");
  QuantizedWeight q;
  q.bits = bits;
  q.codes = unpack_rows(p.qweight.t(), bits, in).to(torch::kUInt8);
  // v1 stores zero − 1; a stored all-ones field wraps back to zero 0.
  q.zeros = (unpack_rows(p.qzeros, bits, out) + 1).bitwise_and((int64_t(1) << bits) - 1).to(torch::kInt32);
  q.scales = p.scales.to(torch::kFloat32);
  q.g_idx = p.g_idx;
  return q;
}

bool is_quantized_linear(const std::string& name) {
  if (name.rfind("model.layers.", 0) != 0) return false;
  for (const char* s : {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
                        ".self_attn.o_proj.weight", ".mlp.gate_proj.weight", ".mlp.up_proj.weight",
                        ".mlp.down_proj.weight"}) {
    const std::string suffix(s);
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

void copy_rotations_file(const nlohmann::json& config_json, const fs::path& source_dir, const fs::path& dir) {
  if (!config_json.contains("rotation") || !config_json["rotation"].is_object()) return;
  const std::string file = config_json["rotation"].value("rotations_file", std::string());
  if (!file.empty() && fs::exists(source_dir / file)) fs::copy_file(source_dir / file, dir / file);
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
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : named_tensors(source.config, weights)) {
    if (!is_quantized_linear(name)) {
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
    for (const auto& entry : fs::directory_iterator(source.dir)) {
      const std::string name = entry.path().filename().string();
      const bool weights_or_config = entry.path().extension() == ".safetensors" || entry.path().extension() == ".bin" ||
                                     name == "model.safetensors.index.json" || name == "config.json";
      // The source's output marker describes the source; the writer marks the new directory itself.
      if (entry.is_regular_file() && !weights_or_config && name != kOutputMarkerFile)
        fs::copy_file(entry.path(), tmp / name);
    }
    copy_rotations_file(cfg, source.dir, tmp);
    write_text_atomic(tmp / "config.json", cfg.dump(2) + "\n");
    save_safetensors((tmp / kWeightsFile).string(), tensors, {{"format", "pt"}});
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
    if (is_quantized_linear(name)) {
      const std::string prefix = prefix_of(name);
      PackedLinear p{get(prefix + ".qweight"), get(prefix + ".qzeros"), get(prefix + ".scales"),
                     get(prefix + ".g_idx")};
      slot = unpack_gptq(p, bits, want[0], want[1], file.path() + ": '" + prefix + "'").dequantize();
      return;
    }
    if (name == "lm_head.weight" && !file.contains(name) && ck.config.tie_word_embeddings) return;  // tied below
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
  if (!ck.weights.lm_head.defined()) ck.weights.lm_head = ck.weights.embed_tokens;
  ck.dtype = torch::kFloat32;
  return ck;
}

}  // namespace spin
