#include "src/rotation/format.h"

#include "optim/stiefel.h"
#include "src/base/check.h"
#include "src/io/safetensors.h"
#include "src/quant/gptq_format.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const char* kRotationsFile = "rotations.safetensors";

std::string r2_name(int64_t layer) { return cat("layers.", layer, ".R2"); }

// The validated float64 rotation `name` [n, n] of `file`.
torch::Tensor read_rotation(const SafetensorsFile& file, const std::string& name, int64_t n) {
  SPIN_CHECK(file.contains(name), file.path(), ": tensor '", name, "' is missing");
  torch::Tensor r = file.get(name);
  SPIN_CHECK(r.sizes() == torch::IntArrayRef({n, n}), file.path(), ": tensor '", name, "' has shape ", r.sizes(),
             " but the model needs [", n, ", ", n, "]");
  SPIN_CHECK(r.is_floating_point(), file.path(), ": tensor '", name, "' is not floating point");
  const double err = optim::orthogonality_error(r);
  SPIN_CHECK(err < 1e-6, file.path(), ": tensor '", name, "' is not orthogonal (max |R^T R - I| = ", err, ")");
  return r.to(torch::kFloat64);
}

}  // namespace

void export_rotated(const fs::path& out, const Checkpoint& source, const ModelWeights& fused,
                    const RotationConfig& rc, const Rotations& rotations, const nlohmann::json& extra_section,
                    const std::function<void(const fs::path&)>& extra_files) {
  const ModelConfig& c = source.config;
  nlohmann::json cfg = c.json;
  cfg["tie_word_embeddings"] = false;
  nlohmann::json fused_list = nlohmann::json::array(), online = nlohmann::json::array();
  if (rc.r1) fused_list.push_back("r1");
  if (rc.r2) fused_list.push_back("r2");
  if (rc.r4) fused_list.push_back("r4-weight");
  if (rc.r3) online.push_back({{"name", "r3"}, {"size", c.head_dim}, {"apply_to", "q,k after RoPE"}});
  if (rc.r4) online.push_back({{"name", "r4"}, {"size", c.intermediate_size}, {"apply_to", "down_proj input"}});
  nlohmann::json section = {{"format", "spintrain-rotation/1"},
                            {"fused", fused_list},
                            {"online_hadamard", online},
                            {"init", to_string(rc.init)},
                            {"seed", rc.seed},
                            {"learned", rc.learned},
                            {"norms_folded", true},
                            {"convention", "activations x·R; consumers W·R; producers Rᵀ·W"},
                            {"rotations_file", kRotationsFile}};
  if (extra_section.is_object()) section.update(extra_section);
  cfg["rotation"] = section;

  SaveOptions opt;
  opt.config_json = cfg;
  opt.dtype = source.dtype;
  opt.shard_of = source.shard_of;
  opt.copy_from = source.dir;
  opt.extra = [&](const fs::path& tmp) {
    std::vector<std::pair<std::string, torch::Tensor>> mats;
    if (rotations.r1.defined()) mats.emplace_back("R1", rotations.r1.to(torch::kFloat64));
    for (size_t i = 0; i < rotations.r2.size(); ++i) mats.emplace_back(r2_name(i), rotations.r2[i].to(torch::kFloat64));
    save_safetensors((tmp / kRotationsFile).string(), mats, {{"format", "spintrain-rotations/1"}});
    if (extra_files) extra_files(tmp);
  };
  save_checkpoint(out, c, fused, opt);
}

void copy_rotations_file(const nlohmann::json& config_json, const fs::path& source_dir, const fs::path& dir) {
  if (!config_json.contains("rotation") || !config_json["rotation"].is_object()) return;
  const std::string file = config_json["rotation"].value("rotations_file", std::string());
  if (!file.empty() && fs::exists(source_dir / file)) fs::copy_file(source_dir / file, dir / file);
}

nlohmann::json drop_learned_clip(nlohmann::json& config_json) {
  if (!config_json.contains("rotation") || !config_json["rotation"].is_object() ||
      !config_json["rotation"].contains("weight_clip_file"))
    return nullptr;
  const nlohmann::json file = config_json["rotation"]["weight_clip_file"];
  config_json["rotation"].erase("weight_clip_file");
  return {{"applied", false},
          {"source_file", file},
          {"reason", "GPTQ chooses its own scales; the learned clip ratios of spintrain --learn-clip were not used "
                     "and their file is not part of this checkpoint"}};
}

LoadedModel load_model(const fs::path& dir) {
  LoadedModel m{is_gptq_checkpoint(dir) ? load_gptq_checkpoint(dir) : load_checkpoint(dir), {}, {}, {}};
  const auto& j = m.checkpoint.config.json;
  if (!j.contains("rotation")) return m;
  const std::string where = (dir / "config.json").string() + ": rotation";
  const ModelConfig& c = m.checkpoint.config;
  std::string rotations_file, clip_file;
  try {
    const auto& s = j["rotation"];
    SPIN_CHECK(s.is_object(), where, " must be an object");
    SPIN_CHECK(s.value("format", std::string()) == "spintrain-rotation/1", where, ".format must be \"spintrain-rotation/1\"");
    for (const auto& h : s.value("online_hadamard", nlohmann::json::array())) {
      const std::string name = h.value("name", std::string());
      const int64_t size = h.value("size", int64_t(0));
      if (name == "r3") {
        SPIN_CHECK(size == c.head_dim, where, ".online_hadamard r3 has size ", size, " but head_dim is ", c.head_dim);
        m.rotation.r3 = true;
      } else if (name == "r4") {
        SPIN_CHECK(size == c.intermediate_size, where, ".online_hadamard r4 has size ", size,
                   " but intermediate_size is ", c.intermediate_size);
        m.rotation.r4 = true;
      } else {
        fail(where, ".online_hadamard: unknown entry '", name, "'");
      }
    }
    for (const auto& f : s.value("fused", nlohmann::json::array())) {
      if (f == "r1") m.rotation.r1 = true;
      if (f == "r2") m.rotation.r2 = true;
    }
    if (s.contains("init")) {
      try {
        m.rotation.init = parse_rotation_init(s["init"].get<std::string>());
      } catch (const Error& e) {
        fail(where, ".init: ", e.what());
      }
    }
    m.rotation.seed = s.value("seed", uint64_t(0));
    m.rotation.learned = s.value("learned", false);
    rotations_file = s.value("rotations_file", std::string(kRotationsFile));
    clip_file = s.value("weight_clip_file", std::string());
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": a field has the wrong type (", e.what(), ")");
  }
  if (m.rotation.r1 || m.rotation.r2) {
    const fs::path rot_path = dir / rotations_file;
    SPIN_CHECK(fs::exists(rot_path), rot_path.string(), ": rotations file named in config.json is missing");
    SafetensorsFile file(rot_path.string());
    if (m.rotation.r1) m.rotations.r1 = read_rotation(file, "R1", c.hidden_size);
    if (m.rotation.r2)
      for (int64_t i = 0; i < c.num_hidden_layers; ++i) m.rotations.r2.push_back(read_rotation(file, r2_name(i), c.head_dim));
  }
  if (!clip_file.empty()) m.weight_clip = load_weight_clip(dir / clip_file, c);
  return m;
}

}  // namespace spin
