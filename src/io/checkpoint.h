// Hugging Face checkpoint directories: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Loading validates names, shapes and finiteness; saving keeps the
// source's sharding and copies every non-weight file (tokenizer, generation config) through.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "src/model/config.h"
#include "src/model/weights.h"

namespace spin {

struct Checkpoint {
  std::filesystem::path dir;
  ModelConfig config;
  ModelWeights weights;                          // CPU tensors in the stored dtype
  torch::ScalarType dtype = torch::kFloat32;     // dtype of the stored weights
  std::map<std::string, std::string> shard_of;   // tensor name -> file name; empty if not sharded
};

// Loads and validates a checkpoint directory. A tied lm_head shares embed_tokens' tensor.
Checkpoint load_checkpoint(const std::filesystem::path& dir);

// Copies every regular file of `source_dir` but the weights (*.safetensors, *.bin, the index), config.json
// and an output marker (src/io/output_guard.h) into `dir`: tokenizer, generation config, ...
void copy_non_weight_files(const std::filesystem::path& source_dir, const std::filesystem::path& dir);

struct SaveOptions {
  nlohmann::json config_json;                    // written as config.json
  torch::ScalarType dtype = torch::kFloat32;     // weights are cast to this
  std::map<std::string, std::string> shard_of;   // keep this sharding (new tensors join their neighbour's shard)
  std::filesystem::path copy_from;               // non-weight files to carry over (empty: none)
  // Writes further files (e.g. rotations.safetensors) into the directory before it is published.
  std::function<void(const std::filesystem::path& tmp_dir)> extra;
};

// Writes a complete checkpoint directory atomically (assembled aside, then swapped in).
void save_checkpoint(const std::filesystem::path& dir, const ModelConfig& config, const ModelWeights& weights,
                     const SaveOptions& options);

}  // namespace spin
