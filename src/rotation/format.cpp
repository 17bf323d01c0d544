#include "src/rotation/format.h"

#include <sstream>

#include "optim/stiefel.h"
#include "src/base/check.h"
#include "src/quant/gptq_format.h"
#include "src/rotation/init.h"
#include "src/io/safetensors.h"

namespace fs = std::filesystem;

namespace spin {
namespace {

const char* kRotationsFile = "rotations.safetensors";

std::string r2_name(int64_t layer) { return cat("layers.", layer, ".R2"); }
std::string clip_name(int64_t layer, size_t linear) { return cat("layers.", layer, ".", LayerClip::kLinearNames[linear]); }

// The clip ratios of `file` for every layer of `c`, validated (shape [out], values in [kMinClip, 1]).
std::vector<LayerClip> read_weight_clip(const fs::path& path, const ModelConfig& c) {
  SPIN_CHECK(fs::exists(path), path.string(), ": weight clip file named in config.json is missing");
  SafetensorsFile file(path.string());
  std::vector<LayerClip> clip = init_clip(c, 1.0, torch::kCPU);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    for (size_t j = 0; j < LayerClip::kLinearNames.size(); ++j) {
      const std::string name = clip_name(i, j);
      SPIN_CHECK(file.contains(name), path.string(), ": tensor '", name, "' is missing");
      torch::Tensor r = file.get(name).to(torch::kFloat32);
      SPIN_CHECK(r.sizes() == clip[i].ratio[j].sizes(), path.string(), ": tensor '", name, "' has shape ", r.sizes(),
                 " but the model needs ", clip[i].ratio[j].sizes());
      SPIN_CHECK(r.ge(kMinClip).all().item<bool>() && r.le(1.0).all().item<bool>(), path.string(), ": tensor '", name,
                 "' has clip ratios outside [", kMinClip, ", 1]");
      clip[i].ratio[j] = r;
    }
  return clip;
}

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

RotationConfig RotationConfig::parse_list(const std::string& list, const std::string& where) {
  RotationConfig rc;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "r1") rc.r1 = true;
    else if (item == "r2") rc.r2 = true;
    else if (item == "r3") rc.r3 = true;
    else if (item == "r4") rc.r4 = true;
    else if (!item.empty()) fail(where, ": unknown rotation '", item, "' (choose from r1, r2, r3, r4)");
  }
  return rc;
}

Rotations init_rotations(const ModelConfig& c, const RotationConfig& rc) {
  Rotations r;
  const RotationInit init = parse_rotation_init(rc.init);
  if (rc.r1) r.r1 = make_rotation(init, c.hidden_size, rc.seed);
  if (rc.r2)
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) r.r2.push_back(make_rotation(init, c.head_dim, rc.seed + 1 + i));
  return r;
}

ModelWeights rotation_base(const ModelConfig& c, const ModelWeights& weights, const RotationConfig& rc,
                           torch::ScalarType dtype) {
  return fold_norms(c, weights, rc.r4, dtype);
}

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
                            {"init", rc.init},
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

const char* const kWeightClipFile = "weight_clip.safetensors";

void save_weight_clip(const fs::path& file, const std::vector<LayerClip>& clip) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (size_t i = 0; i < clip.size(); ++i)
    for (size_t j = 0; j < LayerClip::kLinearNames.size(); ++j)
      tensors.emplace_back(clip_name(int64_t(i), j), clip[i].ratio[j].detach().to(torch::kCPU, torch::kFloat32));
  save_safetensors(file.string(), tensors, {{"format", "spintrain-weight-clip/1"}});
}

torch::Tensor nearest_orthogonal(const torch::Tensor& r) {
  auto [u, s, vh] = torch::linalg::svd(r.detach().to(torch::kCPU, torch::kFloat64), false, c10::nullopt);
  return u.matmul(vh);
}

ForwardOptions LoadedModel::online() const {
  ForwardOptions o;
  o.r3 = rotation.r3;
  o.r4 = rotation.r4;
  return o;
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
    m.rotation.init = s.value("init", std::string());
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
  if (!clip_file.empty()) m.weight_clip = read_weight_clip(dir / clip_file, c);
  return m;
}

}  // namespace spin
