// The hostile-input corpus, generated at test time (no binary files are committed).
//
// build(dir) derives every bad input from the bundled stories260K model and eval set: a damaged copy
// of a checkpoint directory or token file per case, each paired with the file the error must name and
// message fragments it must contain. Used by tests/test_reliability_corpus.cpp, which feeds each case
// to the loaders in-process and to spin-eval; helpers here are shared with the mutation fuzz test.
#pragma once

#include <H5Cpp.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/hdf5_file.h"
#include "src/io/safetensors.h"
#include "tests/test_util.h"

namespace spin::test::corpus {

namespace fs = std::filesystem;

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file split into its JSON header and its data area.
struct RawSafetensors {
  nlohmann::json header;
  std::string data;

  static RawSafetensors read(const fs::path& path) {
    const std::string bytes = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    return {nlohmann::json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
  }
  // header_text replaces the dumped header; declared_len replaces its true length.
  void write(const fs::path& path, const std::string& header_text = {}, int64_t declared_len = -1) const {
    const std::string h = header_text.empty() ? header.dump() : header_text;
    write_bytes(path, le64(declared_len >= 0 ? uint64_t(declared_len) : h.size()) + h + data);
  }
};

// Copies the regular files of a checkpoint directory into a fresh `dst` (made writable).
inline void copy_model(const fs::path& src, const fs::path& dst) {
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(src)) {
    fs::copy_file(e.path(), dst / e.path().filename());
    fs::permissions(dst / e.path().filename(), fs::perms::owner_read | fs::perms::owner_write);
  }
}

inline void edit_json(const fs::path& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_bytes(path));
  edit(j);
  write_bytes(path, j.dump(2));
}

// Writes dataset `name` (type `file_type`, shape `dims`, values 0, 1, 2, ...) with the raw HDF5 API,
// to build token files that data::write_token_ids refuses to produce.
inline void write_h5(const fs::path& path, const std::string& name, const H5::PredType& file_type,
                     const std::vector<hsize_t>& dims) {
  H5::H5File f(path.string(), H5F_ACC_TRUNC);
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = f.createDataSet(name, file_type, space);
  hsize_t n = 1;
  for (hsize_t d : dims) n *= d;
  if (n == 0) return;
  std::vector<double> values(n);
  for (hsize_t i = 0; i < n; ++i) values[i] = static_cast<double>(i % 7);
  ds.write(values.data(), H5::PredType::NATIVE_DOUBLE);
}

// A rotated checkpoint per src/rotation/format.h: the model with identity R1/R2 "fused" (so the
// weights are unchanged and the checkpoint stays correct) and the given online Hadamards.
inline void make_rotated(const fs::path& model, const fs::path& dst, const nlohmann::json& online = nlohmann::json::array()) {
  copy_model(model, dst);
  edit_json(dst / "config.json", [&](nlohmann::json& j) {
    j["rotation"] = {{"format", "spintrain-rotation/1"}, {"fused", {"r1", "r2"}}, {"online_hadamard", online},
                     {"init", "identity"}, {"seed", 0}, {"learned", false}, {"norms_folded", true},
                     {"rotations_file", "rotations.safetensors"}};
  });
  const nlohmann::json c = nlohmann::json::parse(read_bytes(model / "config.json"));
  const int64_t hidden = c["hidden_size"], head_dim = c["head_dim"], layers = c["num_hidden_layers"];
  std::vector<std::pair<std::string, torch::Tensor>> mats = {{"R1", torch::eye(hidden, torch::kFloat64)}};
  for (int64_t i = 0; i < layers; ++i)
    mats.emplace_back("layers." + std::to_string(i) + ".R2", torch::eye(head_dim, torch::kFloat64));
  save_safetensors((dst / "rotations.safetensors").string(), mats);
}

// The model re-saved as two shards plus model.safetensors.index.json (HF layout).
inline void make_sharded(const fs::path& model, const fs::path& dst) {
  copy_model(model, dst);
  fs::remove(dst / "model.safetensors");
  SafetensorsFile f((model / "model.safetensors").string());
  std::vector<std::pair<std::string, torch::Tensor>> shard[2];
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  const std::string names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const std::string& name = f.tensors()[i].name;
    const int s = i < f.tensors().size() / 2 ? 0 : 1;
    shard[s].emplace_back(name, f.get(name));
    index["weight_map"][name] = names[s];
  }
  for (int s = 0; s < 2; ++s) save_safetensors((dst / names[s]).string(), shard[s], {{"format", "pt"}});
  write_bytes(dst / "model.safetensors.index.json", index.dump(2));
}

struct Case {
  std::string name;                    // e.g. "safetensors/truncated"
  fs::path model, data;                // what spin-eval gets as --model and --data
  fs::path culprit;                    // the file (or directory) the error message must name
  std::vector<std::string> fragments;  // further text the message must contain
};

// Builds every case under `dir` from the valid `model` directory and token file `data`.
inline std::vector<Case> build(const fs::path& dir, const fs::path& model, const fs::path& data) {
  std::vector<Case> cases;
  const fs::path st_name = "model.safetensors";
  const RawSafetensors raw = RawSafetensors::read(model / st_name);

  // A model copy whose model.safetensors is rewritten by `make(path)`.
  // culprit_name "" means the directory itself.
  auto in = [](const fs::path& m, const fs::path& culprit_name) { return culprit_name.empty() ? m : m / culprit_name; };
  auto st_case = [&](const std::string& name, std::vector<std::string> fragments,
                     const std::function<void(const fs::path&)>& make, const fs::path& culprit_name = "model.safetensors") {
    const fs::path m = dir / ("st_" + name);
    copy_model(model, m);
    make(m / st_name);
    cases.push_back({"safetensors/" + name, m, data, in(m, culprit_name), std::move(fragments)});
  };
  auto with_header = [&](const std::function<void(nlohmann::json&)>& edit) {
    return [&raw, edit](const fs::path& p) {
      RawSafetensors r = raw;
      edit(r.header);
      r.write(p);
    };
  };
  const std::string norm0 = "model.layers.0.input_layernorm.weight";  // [64] F32
  const std::string norm0b = "model.layers.0.post_attention_layernorm.weight";

  st_case("truncated", {"exceeds the data area"}, [&](const fs::path& p) {
    const std::string bytes = read_bytes(model / st_name);
    write_bytes(p, bytes.substr(0, bytes.size() - 1000));
  });
  st_case("empty_file", {"too short"}, [&](const fs::path& p) { write_bytes(p, ""); });
  st_case("header_length_past_end", {"header length", "past the end"},
          [&](const fs::path& p) { raw.write(p, {}, 8 * int64_t(raw.data.size())); });
  st_case("header_100MB", {"header length 104857600", "exceeds the limit"}, [&](const fs::path& p) {
    // A real (sparse) 100 MiB header of spaces after a valid one: the reader must refuse it unread.
    const std::string h = raw.header.dump();
    write_bytes(p, le64(100ull << 20) + h);
    fs::resize_file(p, 8 + (100ull << 20) + raw.data.size());
  });
  st_case("invalid_json", {"header: not valid JSON"}, [&](const fs::path& p) {
    std::string h = raw.header.dump();
    h.back() = ',';  // the closing brace
    raw.write(p, h);
  });
  st_case("header_not_object", {"header is not a JSON object"}, [&](const fs::path& p) { raw.write(p, "[1, 2]"); });
  st_case("overlapping_offsets", {"'" + norm0 + "'", "'" + norm0b + "'", "overlap"},
          with_header([&](nlohmann::json& h) { h[norm0b]["data_offsets"] = h[norm0]["data_offsets"]; }));
  st_case("offsets_outside_data", {"'" + norm0 + "'", "exceeds the data area"}, with_header([&](nlohmann::json& h) {
            const uint64_t end = raw.data.size() + 256;
            h[norm0]["data_offsets"] = {end, end + 256};
          }));
  st_case("reversed_offsets", {"'" + norm0 + "'", "reversed"},
          with_header([&](nlohmann::json& h) { h[norm0]["data_offsets"] = {256, 0}; }));
  st_case("negative_shape", {"'" + norm0 + "'", "negative"},
          with_header([&](nlohmann::json& h) { h[norm0]["shape"] = {-64}; }));
  st_case("absurd_shape", {"'" + norm0 + "'", "larger than the file's data area"},
          with_header([&](nlohmann::json& h) { h[norm0]["shape"] = {1ll << 40, 1ll << 40, 1ll << 40}; }));
  st_case("deeply_nested_shape", {"header: JSON nested deeper than 100 levels"}, [&](const fs::path& p) {
    // A 1-million-deep array in the header: copying or printing it recursively would overflow the stack.
    std::string h = raw.header.dump();
    const std::string shape = "\"shape\":[64]";
    const size_t at = h.find(shape, h.find("\"" + norm0 + "\""));
    h.replace(at, shape.size(), "\"shape\":[1099511627776," + std::string(1000000, '[') + std::string(1000000, ']') + "]");
    raw.write(p, h);
  });
  st_case("shape_mismatch_bytes", {"'" + norm0 + "'", "need 512"},
          with_header([&](nlohmann::json& h) { h[norm0]["shape"] = {128}; }));
  st_case("unknown_dtype", {"'" + norm0 + "'", "unknown dtype 'F8_E4M3'"},
          with_header([&](nlohmann::json& h) { h[norm0]["dtype"] = "F8_E4M3"; }));
  st_case("integer_weights", {"'" + norm0 + "'", "has dtype Int"},
          with_header([&](nlohmann::json& h) { h[norm0]["dtype"] = "I32"; }));
  st_case("missing_tensor", {"'model.layers.4.mlp.down_proj.weight'", "is missing from the checkpoint"},
          [&](const fs::path& p) {
            SafetensorsFile f((model / st_name).string());
            std::vector<std::pair<std::string, torch::Tensor>> ts;
            for (const auto& t : f.tensors())
              if (t.name != "model.layers.4.mlp.down_proj.weight") ts.emplace_back(t.name, f.get(t.name));
            save_safetensors(p.string(), ts);
          },
          "");
  st_case("nan_weight", {"'model.layers.2.mlp.up_proj.weight'", "NaN or inf"}, [&](const fs::path& p) {
    SafetensorsFile f((model / st_name).string());
    std::vector<std::pair<std::string, torch::Tensor>> ts;
    for (const auto& t : f.tensors()) ts.emplace_back(t.name, f.get(t.name));
    for (auto& [n, t] : ts)
      if (n == "model.layers.2.mlp.up_proj.weight") t[17][3] = std::numeric_limits<float>::quiet_NaN();
    save_safetensors(p.string(), ts);
  });

  // config.json damaged or inconsistent with the weights.
  auto cfg_case = [&](const std::string& name, std::vector<std::string> fragments,
                      const std::function<void(nlohmann::json&)>& edit, const fs::path& culprit_name = "config.json") {
    const fs::path m = dir / ("cfg_" + name);
    copy_model(model, m);
    edit_json(m / "config.json", edit);
    cases.push_back({"config/" + name, m, data, in(m, culprit_name), std::move(fragments)});
  };
  cfg_case("missing_hidden_size", {"missing field 'hidden_size'"}, [](nlohmann::json& j) { j.erase("hidden_size"); });
  cfg_case("missing_model_type", {"missing field 'model_type'"}, [](nlohmann::json& j) { j.erase("model_type"); });
  cfg_case("hidden_size_not_divisible", {"hidden_size 65 is not divisible by num_attention_heads 8"},
           [](nlohmann::json& j) { j["hidden_size"] = 65; j.erase("head_dim"); });
  cfg_case("heads_not_multiple_of_kv_heads", {"num_attention_heads 8 is not a multiple of num_key_value_heads 3"},
           [](nlohmann::json& j) { j["num_key_value_heads"] = 3; });
  cfg_case("unknown_architecture", {"architecture 'GPT2LMHeadModel' is not supported"},
           [](nlohmann::json& j) { j["architectures"] = {"GPT2LMHeadModel"}; });
  cfg_case("string_field", {"field 'vocab_size' must be a positive integer"}, [](nlohmann::json& j) { j["vocab_size"] = "512"; });
  cfg_case("negative_field", {"field 'intermediate_size' must be a positive integer below 2^31, got -172"},
           [](nlohmann::json& j) { j["intermediate_size"] = -172; });
  cfg_case("odd_head_dim", {"head_dim 7 must be even"}, [](nlohmann::json& j) { j["head_dim"] = 7; });
  cfg_case("unsupported_activation", {"hidden_act \"gelu\" is not supported"}, [](nlohmann::json& j) { j["hidden_act"] = "gelu"; });
  cfg_case("bad_rope_scaling_type", {"rope_scaling type 'yarn' is not supported"},
           [](nlohmann::json& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; });
  cfg_case("rope_scaling_type_not_string", {"field 'rope_scaling.rope_type' must be a string"}, [](nlohmann::json& j) { j["rope_scaling"] = {{"rope_type", 3}}; });
  cfg_case("shape_vs_config", {"'model.layers.0.self_attn.q_proj.weight'", "[64, 64]", "config.json implies [128, 64]"},
           [](nlohmann::json& j) { j["head_dim"] = 16; }, st_name);
  {
    // A 1-million-deep value: copying or quoting it recursively would overflow the stack.
    const fs::path m = dir / "cfg_deeply_nested";
    copy_model(model, m);
    std::string text = read_bytes(m / "config.json");
    const std::string key = "\"hidden_size\": 64";
    text.replace(text.find(key), key.size(), "\"hidden_size\": " + std::string(1000000, '[') + std::string(1000000, ']'));
    write_bytes(m / "config.json", text);
    cases.push_back({"config/deeply_nested_value", m, data, m / "config.json", {"JSON nested deeper than 100 levels"}});
  }
  cfg_case("absurd_size", {"field 'hidden_size' must be a positive integer below 2^31, got 4611686018427387904"},
           [](nlohmann::json& j) { j["hidden_size"] = 1ll << 62; });
  cfg_case("absurd_layer_count", {"'model.layers.1999999999.input_layernorm.weight'", "is missing"},
           [](nlohmann::json& j) { j["num_hidden_layers"] = 2000000000; }, "");
  {
    const fs::path m = dir / "cfg_invalid_json";
    copy_model(model, m);
    std::string text = read_bytes(m / "config.json");
    write_bytes(m / "config.json", text.substr(0, text.size() / 2));
    cases.push_back({"config/invalid_json", m, data, m / "config.json", {"not valid JSON"}});
    const fs::path n = dir / "cfg_missing";
    copy_model(model, n);
    fs::remove(n / "config.json");
    cases.push_back({"config/missing_file", n, data, n / "config.json", {"cannot open"}});
    cases.push_back({"model/missing_dir", dir / "no_such_model", data, dir / "no_such_model", {"model directory not found"}});
  }

  // Sharded checkpoints.
  {
    const fs::path m = dir / "shard_missing";
    make_sharded(model, m);
    fs::remove(m / "model-00002-of-00002.safetensors");
    cases.push_back({"shards/missing_shard", m, data, m / "model-00002-of-00002.safetensors",
                     {"shard listed in model.safetensors.index.json is missing"}});
    const fs::path w = dir / "shard_wrong_file";
    make_sharded(model, w);
    edit_json(w / "model.safetensors.index.json", [&](nlohmann::json& j) {
      j["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";  // it lives in shard 2
    });
    cases.push_back({"shards/tensor_not_in_shard", w, data, w / "model-00001-of-00002.safetensors",
                     {"'model.norm.weight' listed in the index is not in this shard"}});
    const fs::path e = dir / "shard_escaping_path";
    make_sharded(model, e);
    edit_json(e / "model.safetensors.index.json",
              [&](nlohmann::json& j) { j["weight_map"]["model.norm.weight"] = "../model.safetensors"; });
    cases.push_back({"shards/path_outside_dir", e, data, e / "model.safetensors.index.json",
                     {"must be a file name inside the directory"}});
  }

  // Rotated checkpoints.
  auto rot_case = [&](const std::string& name, std::vector<std::string> fragments, const fs::path& culprit_name,
                      const std::function<void(const fs::path&)>& damage) {
    const fs::path m = dir / ("rot_" + name);
    make_rotated(model, m);
    damage(m);
    cases.push_back({"rotations/" + name, m, data, m / culprit_name, std::move(fragments)});
  };
  auto rewrite_rotation = [](const fs::path& m, const std::string& name, const torch::Tensor& value) {
    SafetensorsFile f((m / "rotations.safetensors").string());
    std::vector<std::pair<std::string, torch::Tensor>> ts;
    for (const auto& t : f.tensors())
      if (t.name != name) ts.emplace_back(t.name, f.get(t.name));
    if (value.defined()) ts.emplace_back(name, value);
    save_safetensors((m / "rotations.safetensors.new").string(), ts);
    fs::rename(m / "rotations.safetensors.new", m / "rotations.safetensors");
  };
  rot_case("r1_wrong_size", {"'R1'", "has shape [32, 32] but the model needs [64, 64]"}, "rotations.safetensors",
           [&](const fs::path& m) { rewrite_rotation(m, "R1", torch::eye(32, torch::kFloat64)); });
  rot_case("r2_not_orthogonal", {"'layers.3.R2'", "is not orthogonal"}, "rotations.safetensors",
           [&](const fs::path& m) { rewrite_rotation(m, "layers.3.R2", 1.5 * torch::eye(8, torch::kFloat64)); });
  rot_case("r2_missing", {"'layers.4.R2'", "is missing"}, "rotations.safetensors",
           [&](const fs::path& m) { rewrite_rotation(m, "layers.4.R2", {}); });
  rot_case("file_missing", {"rotations file named in config.json is missing"}, "rotations.safetensors",
           [&](const fs::path& m) { fs::remove(m / "rotations.safetensors"); });
  rot_case("file_corrupt", {"too short"}, "rotations.safetensors",
           [&](const fs::path& m) { write_bytes(m / "rotations.safetensors", "abc"); });
  rot_case("r3_wrong_size", {"online_hadamard r3 has size 16 but head_dim is 8"}, "config.json", [&](const fs::path& m) {
    edit_json(m / "config.json", [](nlohmann::json& j) {
      j["rotation"]["online_hadamard"] = {{{"name", "r3"}, {"size", 16}, {"apply_to", "q,k after RoPE"}}};
    });
  });
  rot_case("unknown_format", {"rotation.format must be"}, "config.json", [&](const fs::path& m) {
    edit_json(m / "config.json", [](nlohmann::json& j) { j["rotation"]["format"] = "spintrain-rotation/9"; });
  });

  // Token files (the model is valid).
  auto h5_case = [&](const std::string& name, std::vector<std::string> fragments,
                     const std::function<void(const fs::path&)>& make) {
    const fs::path d = dir / ("h5_" + name + ".h5");
    fs::remove(d);
    make(d);
    cases.push_back({"hdf5/" + name, model, d, d, std::move(fragments)});
  };
  h5_case("not_hdf5", {"not an HDF5 file"}, [&](const fs::path& d) { write_bytes(d, "input_ids\n1 2 3\n"); });
  h5_case("truncated", {"truncated or corrupt"}, [&](const fs::path& d) { write_bytes(d, read_bytes(data).substr(0, 1500)); });
  h5_case("missing_file", {"no such file"}, [](const fs::path&) {});
  h5_case("wrong_dataset_name", {"dataset 'input_ids' not found"},
          [](const fs::path& d) { write_h5(d, "tokens", H5::PredType::STD_I32LE, {4, 16}); });
  h5_case("wrong_rank", {"dataset 'input_ids'", "expected rank 2 [N, T], found rank 1"},
          [](const fs::path& d) { write_h5(d, "input_ids", H5::PredType::STD_I32LE, {64}); });
  h5_case("float_ids", {"dataset 'input_ids'", "must be integers", "found float"},
          [](const fs::path& d) { write_h5(d, "input_ids", H5::PredType::IEEE_F32LE, {4, 16}); });
  h5_case("empty_dataset", {"dataset 'input_ids'", "empty dataset [0, 16]"},
          [](const fs::path& d) { write_h5(d, "input_ids", H5::PredType::STD_I32LE, {0, 16}); });
  h5_case("ids_at_vocab_size", {"token id 512 at row 1, col 5 outside [0, 512)"}, [](const fs::path& d) {
    torch::Tensor ids = torch::ones({3, 16}, torch::kInt32);
    ids[1][5] = 512;
    data::write_token_ids(d.string(), ids, {});
  });
  h5_case("negative_ids", {"token id -1 at row 0, col 0"}, [](const fs::path& d) {
    torch::Tensor ids = torch::ones({3, 16}, torch::kInt32);
    ids[0][0] = -1;
    data::write_token_ids(d.string(), ids, {});
  });
  return cases;
}

}  // namespace spin::test::corpus
