#include "src/io/checkpoint.h"

#include <fstream>
#include <iterator>
#include <memory>
#include <set>

#include "src/io/atomic_file.h"
#include "src/io/output_guard.h"
#include "src/base/check.h"
#include "src/base/json_input.h"
#include "src/io/resources.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const char* kIndexFile = "model.safetensors.index.json";
const char* kSingleFile = "model.safetensors";

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  SPIN_CHECK(in.good(), path.string(), ": cannot open");
  return parse_untrusted_json(std::istreambuf_iterator<char>(in), {}, path.string());
}

// tensor name -> shard file name, from the index (or every tensor of the single file).
std::map<std::string, std::string> weight_map(const fs::path& dir) {
  std::map<std::string, std::string> map;
  const fs::path index = dir / kIndexFile;
  if (fs::exists(index)) {
    nlohmann::json j = read_json(index);
    SPIN_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
               ": missing object 'weight_map'");
    for (const auto& [name, file] : j["weight_map"].items()) {
      SPIN_CHECK(file.is_string(), index.string(), ": weight_map['", name, "'] is not a string");
      const std::string f = file.get<std::string>();
      SPIN_CHECK(f.find('/') == std::string::npos, index.string(), ": weight_map['", name, "'] = '", f,
                 "' must be a file name inside the directory");
      map[name] = f;
    }
    return map;
  }
  SPIN_CHECK(fs::exists(dir / kSingleFile), dir.string(), ": neither ", kSingleFile, " nor ", kIndexFile, " found");
  SafetensorsFile file((dir / kSingleFile).string());
  for (const auto& t : file.tensors()) map[t.name] = kSingleFile;
  return map;
}

}  // namespace

Checkpoint load_checkpoint(const fs::path& dir) {
  SPIN_CHECK(fs::is_directory(dir), dir.string(), ": model directory not found");
  Checkpoint ck;
  ck.dir = dir;
  ck.config = load_model_config((dir / "config.json").string());
  const auto map = weight_map(dir);
  const bool sharded = fs::exists(dir / kIndexFile);

  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  auto file_for = [&](const std::string& name) -> SafetensorsFile& {
    const std::string& f = map.at(name);
    auto& slot = files[f];
    if (!slot) {
      SPIN_CHECK(fs::exists(dir / f), (dir / f).string(), ": shard listed in ", kIndexFile, " is missing");
      slot = std::make_unique<SafetensorsFile>((dir / f).string());
    }
    return *slot;
  };

  // Checked before for_each_slot allocates a slot per layer: a config claiming 10^12 layers must not.
  const std::string last_layer = cat("model.layers.", ck.config.num_hidden_layers - 1, ".input_layernorm.weight");
  SPIN_CHECK(map.count(last_layer), dir.string(), ": tensor '", last_layer, "' is missing from the checkpoint (",
             "config.json has num_hidden_layers ", ck.config.num_hidden_layers, ")");

  std::set<torch::ScalarType> dtypes;
  std::set<std::string> used;
  for_each_slot(ck.config, ck.weights, [&](const std::string& name, torch::Tensor& slot) {
    if (is_tied_half(ck.config, name) && !map.count(name)) return;  // tied below
    SPIN_CHECK(map.count(name), dir.string(), ": tensor '", name, "' is missing from the checkpoint");
    SafetensorsFile& file = file_for(name);
    SPIN_CHECK(file.contains(name), file.path(), ": tensor '", name, "' listed in the index is not in this shard");
    const TensorInfo& info = file.info(name);
    const auto want = expected_shape(ck.config, name);
    SPIN_CHECK(info.shape == want, file.path(), ": tensor '", name, "' has shape ", c10::IntArrayRef(info.shape),
               " but config.json implies ", c10::IntArrayRef(want));
    SPIN_CHECK(info.dtype == torch::kFloat32 || info.dtype == torch::kBFloat16 || info.dtype == torch::kFloat16,
               file.path(), ": tensor '", name, "' has dtype ", c10::toString(info.dtype),
               " (supported: F32, BF16, F16)");
    slot = file.get(name);
    SPIN_CHECK(torch::isfinite(slot).all().item<bool>(), file.path(), ": tensor '", name,
               "' contains NaN or inf values");
    dtypes.insert(info.dtype);
    used.insert(name);
    if (sharded) ck.shard_of[name] = map.at(name);
  });
  if (ck.config.tie_word_embeddings) tie_embeddings(ck.weights, dir.string());
  SPIN_CHECK(dtypes.size() == 1, dir.string(), ": weights mix several dtypes");
  ck.dtype = *dtypes.begin();
  return ck;
}

void copy_non_weight_files(const fs::path& source_dir, const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(source_dir)) {
    const std::string name = entry.path().filename().string();
    const bool weights_or_config = entry.path().extension() == ".safetensors" || name == kIndexFile ||
                                   entry.path().extension() == ".bin" || name == "config.json";
    // The source's output marker describes the source; the writer marks the new directory itself.
    if (entry.is_regular_file() && !weights_or_config && name != kOutputMarkerFile)
      fs::copy_file(entry.path(), dir / name);
  }
}

void save_checkpoint(const fs::path& dir, const ModelConfig& config, const ModelWeights& weights,
                     const SaveOptions& opt) {
  SPIN_CHECK(!weights.r1_online.defined(), dir.string(), ": weights with R1 on the activations cannot be saved (fuse it)");
  auto tensors = named_tensors(config, weights);
  uint64_t bytes = 0;
  for (const auto& [name, t] : tensors) bytes += t.numel() * torch::elementSize(opt.dtype);
  require_disk(dir, bytes, "checkpoint export");
  write_dir_atomic(dir, [&](const fs::path& tmp) {
    if (!opt.copy_from.empty()) copy_non_weight_files(opt.copy_from, tmp);
    write_text_atomic(tmp / "config.json", opt.config_json.dump(2) + "\n");
    for (auto& [name, t] : tensors) t = t.to(opt.dtype);
    if (opt.shard_of.empty()) {
      save_safetensors((tmp / kSingleFile).string(), tensors, {{"format", "pt"}});
    } else {
      // Group tensors by shard; a tensor new to this checkpoint (an untied lm_head) joins the shard of
      // the tensor before it.
      std::map<std::string, std::vector<std::pair<std::string, torch::Tensor>>> shards;
      nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
      std::string current = opt.shard_of.begin()->second;
      int64_t total = 0;
      for (auto& [name, t] : tensors) {
        auto it = opt.shard_of.find(name);
        if (it != opt.shard_of.end()) current = it->second;
        shards[current].emplace_back(name, t);
        index["weight_map"][name] = current;
        total += t.numel() * t.element_size();
      }
      index["metadata"]["total_size"] = total;
      for (const auto& [file, list] : shards) save_safetensors((tmp / file).string(), list, {{"format", "pt"}});
      write_text_atomic(tmp / kIndexFile, index.dump(2) + "\n");
    }
    if (opt.extra) opt.extra(tmp);
  });
}

}  // namespace spin
