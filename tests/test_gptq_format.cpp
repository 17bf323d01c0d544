// The GPTQ checkpoint format as the clients read it: every spin-gptq export variant (bits, groups,
// sym/asym, act-order, rotated or not, padded) is dequantized by tests/reference/gptq_dequant.py — an
// independent reader written from the format's description — and must equal the --format fake export
// of the same run; our loader reads each back (the spin-eval tool one per bit width). Also:
// --pad-intermediate keeps the model's function and GPTQ's numbers, the refusals of models that do not
// pack, and a spintrain --learn-clip model through spin-gptq. Needs spin-gptq, spin-eval, spin-rotate
// and spintrain built.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <future>
#include <limits>

#include "data/calib_dataset.h"
#include "src/base/check.h"
#include "src/io/safetensors.h"
#include "src/kernels/hadamard.h"
#include "src/model/forward.h"
#include "src/quant/gptq_format.h"
#include "src/rotation/format.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

std::string stories() { return test::asset("models/stories260K").string(); }
std::string calib() { return test::asset("data/stories260K-calib.h5").string(); }

// /usr/bin/python3 with numpy, which tests/reference/gptq_dequant.py needs.
bool have_numpy() { return test::run("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }
const char* kNoNumpy = "/usr/bin/python3 with numpy is not available: the independent GPTQ dequantizer "
                       "(tests/reference/gptq_dequant.py) cannot run";

// Runs the independent dequantizer on (gptq, fake); returns its exit status, its one line in `line`.
int reference(const fs::path& gptq, const fs::path& fake, std::string& line) {
  const fs::path log = gptq.parent_path() / (gptq.filename().string() + ".reference.txt");
  const int rc = test::run("/usr/bin/python3 " + (test::root() / "tests/reference/gptq_dequant.py").string() + " " +
                               gptq.string() + " " + fake.string(),
                           log);
  line = test::read_text(log);
  return rc;
}

// spin-gptq on `model` with `flags` (both formats share them), writing dir/gptq and dir/fake
// concurrently (one thread each: the machine has two cores). True when both exit 0.
bool gptq_both(const std::string& model, const std::string& flags, const fs::path& dir) {
  const std::string base = test::bin("spin-gptq").string() + " --model " + model + " --calib " + calib() +
                           " --nsamples 8 --seq-len 64 --threads 1 --quiet " + flags;
  auto packed = std::async(std::launch::async, [&] {
    return test::run(base + " --out " + (dir / "gptq").string(), dir / "gptq.log");
  });
  const int fake = test::run(base + " --format fake --out " + (dir / "fake").string(), dir / "fake.log");
  const int rc = packed.get();
  EXPECT_EQ(rc, 0) << flags << ": " << test::read_text(dir / "gptq.log");
  EXPECT_EQ(fake, 0) << flags << ": " << test::read_text(dir / "fake.log");
  return rc == 0 && fake == 0;
}

// spin-eval on a few rows: the tool loads the checkpoint (and applies its online Hadamards).
int spin_eval(const fs::path& model, const fs::path& log) {
  return test::run(test::bin("spin-eval").string() + " --model " + model.string() + " --data " +
                       test::asset("data/stories260K-eval.h5").string() + " --rows 2 --seq-len 32 --threads 1",
                   log);
}

// stories260K edited by `edit` (config and weights), written as a float32 checkpoint.
void write_edited(const fs::path& dir, const std::function<void(ModelConfig&, ModelWeights&)>& edit) {
  Checkpoint ck = load_checkpoint(stories());
  edit(ck.config, ck.weights);
  SaveOptions so;
  so.config_json = ck.config.json;
  so.dtype = torch::kFloat32;
  so.copy_from = stories();
  save_checkpoint(dir, ck.config, ck.weights, so);
}

}  // namespace

// ---- in-process pieces ------------------------------------------------------------------------

TEST(GptqPacking, PaddedQuantizedWeightDequantizesToZeros) {
  torch::manual_seed(20);
  torch::Tensor x = torch::randn({256, 44});
  HessianAccumulator acc(44);
  acc.add(x);
  GptqOptions o;
  o.grid = {3, 16, true, 1.0};
  o.act_order = true;
  QuantizedWeight q = gptq_quantize(torch::randn({20, 44}), acc.hessian(), o, "w");
  QuantizedWeight p = pad_quantized(q, 32, 64, 16);
  ASSERT_EQ(p.scales.sizes(), torch::IntArrayRef({4, 32}));  // ceil(64 / 16) groups, the 4th only padding
  torch::Tensor d = p.dequantize(), d0 = q.dequantize();
  EXPECT_TRUE(torch::equal(d.narrow(0, 0, 20).narrow(1, 0, 44), d0));
  EXPECT_EQ(d.narrow(0, 20, 12).abs().max().item<float>(), 0.f);
  EXPECT_EQ(d.narrow(1, 44, 20).abs().max().item<float>(), 0.f);
  for (int64_t j = 44; j < 64; ++j) EXPECT_EQ(p.g_idx[j].item<int>(), j / 16);
  QuantizedWeight back = unpack_gptq(pack_gptq(p), 3, 32, 64, "w");
  EXPECT_TRUE(torch::equal(back.dequantize(), d));
}

TEST(GptqPacking, RefusalsNameTheTensorAndTheWayOut) {
  const ModelConfig c = load_model_config(stories() + "/config.json");  // intermediate 172
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string plain = message([&] { check_gptq_packable(c, false, false, "M"); });
  EXPECT_NE(plain.find("model.layers.0.mlp.gate_proj.weight [172, 64]: out_features 172"), std::string::npos) << plain;
  EXPECT_NE(plain.find("--format fake, or --pad-intermediate (zero-pads intermediate_size 172 to 192"),
            std::string::npos)
      << plain;
  EXPECT_NO_THROW(check_gptq_packable(c, true, false, "M"));
  EXPECT_NE(message([&] { check_gptq_packable(c, true, true, "M"); }).find("R4 online Hadamard"), std::string::npos);
  EXPECT_NE(message([&] { check_gptq_packable(c, false, true, "M"); }).find("cannot be used with the R4"),
            std::string::npos);
  // R4 with an intermediate_size that already packs: nothing to pad, nothing refused.
  EXPECT_NO_THROW(check_pad_intermediate(with_intermediate_size(c, 160), true, "M"));
  EXPECT_NO_THROW(check_gptq_packable(with_intermediate_size(c, 160), false, true, "M"));
  ModelConfig kv = c;  // k/v_proj [16, 64]: a head size that padding the MLP cannot fix
  kv.num_key_value_heads = 2;
  const std::string narrow = message([&] { check_gptq_packable(kv, false, false, "M"); });
  EXPECT_NE(narrow.find("self_attn.k_proj.weight [16, 64]: out_features 16"), std::string::npos) << narrow;
  EXPECT_EQ(narrow.find("or --pad-intermediate"), std::string::npos) << narrow;
  EXPECT_NE(message([&] { check_gptq_packable(kv, true, false, "M"); }).find("pads only intermediate_size"),
            std::string::npos);
}

TEST(GptqPacking, DropLearnedClipRemovesTheReference) {
  nlohmann::json cfg = {
      {"rotation", {{"format", "spintrain-rotation/1"}, {"weight_clip_file", "weight_clip.safetensors"}}}};
  nlohmann::json note = drop_learned_clip(cfg);
  EXPECT_FALSE(cfg["rotation"].contains("weight_clip_file"));
  EXPECT_EQ(note["applied"], false);
  EXPECT_EQ(note["source_file"], "weight_clip.safetensors");
  EXPECT_TRUE(drop_learned_clip(cfg).is_null());
  nlohmann::json plain = {{"hidden_size", 64}};
  EXPECT_TRUE(drop_learned_clip(plain).is_null());
}

// Zero-padding intermediate_size 172 -> 192 keeps the function: silu(0) · 0 = 0 in the new channels,
// times zero down_proj columns, adds exact zeros. What can differ is only the order in which a BLAS
// kernel sums down_proj's longer product (192 vs 172 terms, blocked differently), i.e. rounding: in
// float64 the padded logits are within 1e-12 of the unpadded ones; in float32 both are compared with
// the float64 logits, and the padded model's error may be at most twice the unpadded model's own
// (a padded channel that contributed anything would add error of the size of the logits).
TEST(GptqPadding, SwiGluOutputUnchanged) {
  Checkpoint ck = load_checkpoint(stories());
  const ModelConfig& c = ck.config;
  data::CalibOptions dopt;
  dopt.rows = 2;
  dopt.seq_len = 128;
  const torch::Tensor ids = data::load_calib(test::asset("data/stories260K-eval.h5").string(), c.vocab_size, dopt);
  const ModelConfig pc = with_intermediate_size(c, gptq_packable_size(c.intermediate_size));
  ASSERT_EQ(pc.intermediate_size, 192);
  ASSERT_EQ(pc.json["intermediate_size"], 192);
  torch::NoGradGuard no_grad;
  // Unpadded and padded logits in `dtype`.
  auto logits = [&](torch::ScalarType dtype) {
    ModelWeights w = map_weights(c, ck.weights, [&](const torch::Tensor& t) { return t.to(dtype); });
    ModelWeights p = pad_intermediate(c, w, pc.intermediate_size);
    EXPECT_EQ(p.layers[0].gate_proj.sizes(), torch::IntArrayRef({192, 64}));
    EXPECT_EQ(p.layers[0].down_proj.sizes(), torch::IntArrayRef({64, 192}));
    EXPECT_EQ(p.layers[0].up_proj.narrow(0, 172, 20).abs().max().item<double>(), 0.0);
    return std::pair{lm_logits(w, forward_hidden(c, w, ids, {})), lm_logits(p, forward_hidden(pc, p, ids, {}))};
  };
  auto max_diff = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kFloat64) - b).abs().max().item<double>();
  };
  const auto [ref, ref_padded] = logits(torch::kFloat64);
  EXPECT_LE(max_diff(ref_padded, ref), 1e-12);
  const auto [a, b] = logits(torch::kFloat32);
  const double err = max_diff(a, ref), err_padded = max_diff(b, ref);
  EXPECT_GT(err, 0.0);
  EXPECT_LE(err_padded, 2 * err) << "max |logit| " << ref.abs().max().item<double>();
  std::cerr << "float64 padded vs unpadded: " << max_diff(ref_padded, ref) << "; float32 vs float64: unpadded "
            << err << ", padded " << err_padded << "\n";
}

// ---- the tools --------------------------------------------------------------------------------

class GptqExports : public ::testing::Test {
 protected:
  // Built once: "mlp160" (stories260K with its MLP cut to the first 160 channels: every linear packs
  // without padding — a different model, for format tests), its rotation, and two models that must be
  // refused.
  static void SetUpTestSuite() {
    dir_ = test::suite_scratch("gptq_format_models");
    write_edited(dir_ / "mlp160", [](ModelConfig& c, ModelWeights& w) {
      c = with_intermediate_size(c, 160);
      for (LayerWeights& L : w.layers) {
        L.gate_proj = L.gate_proj.narrow(0, 0, 160).contiguous();
        L.up_proj = L.up_proj.narrow(0, 0, 160).contiguous();
        L.down_proj = L.down_proj.narrow(1, 0, 160).contiguous();
      }
    });
    write_edited(dir_ / "kv2", [](ModelConfig& c, ModelWeights& w) {  // k/v_proj [16, 64]
      c.num_key_value_heads = 2;
      c.json["num_key_value_heads"] = 2;
      for (LayerWeights& L : w.layers) {
        L.k_proj = L.k_proj.narrow(0, 0, 16).contiguous();
        L.v_proj = L.v_proj.narrow(0, 0, 16).contiguous();
      }
    });
    // Rotated with every rotation spin-rotate has (R4 needs a Hadamard of order 160).
    rotations160_ = hadamard_supported(160) ? "r1,r2,r3,r4" : "r1,r2,r3";
    const std::string rotate = test::bin("spin-rotate").string() + " --threads 1 --model ";
    ASSERT_EQ(test::run(rotate + (dir_ / "mlp160").string() + " --rotations " + rotations160_ + " --out " +
                            (dir_ / "mlp160_rot").string(),
                        dir_ / "rot160.log"),
              0);
    ASSERT_EQ(test::run(rotate + stories() + " --rotations r1,r2,r4 --out " + (dir_ / "r4").string(), dir_ / "r4.log"),
              0);
  }
  static fs::path dir_;
  static std::string rotations160_;
};
fs::path GptqExports::dir_;
std::string GptqExports::rotations160_;

struct Variant {
  std::string model;  // "mlp160", "mlp160_rot" or "stories" (intermediate 172: padded)
  int bits;
  int64_t group;  // 0: per row
  bool sym, act_order;
  bool eval = false;  // also through the spin-eval tool (every variant is loaded in-process)
  std::string name() const {
    return cat(model, "_w", bits, "_g", group, sym ? "_sym" : "_asym", act_order ? "_act" : "");
  }
};

// Each bit width, group size (32, 128, per row), sym/asym, act-order on/off, rotated/unrotated and
// padded/unpadded at least twice (3 bits, new, three times). Each variant costs two spin-gptq
// processes (about 1 s of start-up each here), so the set is the smallest that covers every value twice.
TEST_F(GptqExports, EveryVariantDequantizesAsTheClientsRead) {
  if (!have_numpy()) GTEST_SKIP() << kNoNumpy;
  const std::vector<Variant> variants = {
      {"mlp160", 2, 32, true, false, true},      {"mlp160_rot", 2, 128, false, true},
      {"mlp160", 3, 0, true, true},              {"mlp160_rot", 3, 32, false, false, true},
      {"stories", 3, 128, true, false},          {"mlp160_rot", 4, 0, false, true},
      {"stories", 4, 32, false, true, true},     {"mlp160_rot", 8, 0, true, false},
      {"stories", 8, 128, true, true, true},
  };
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name());
    const fs::path dir = test::scratch("gptq_format_" + v.name());
    const bool padded = v.model == "stories";
    const std::string model = padded ? stories() : (dir_ / v.model).string();
    const std::string flags = cat("--wbits ", v.bits, " --groupsize ", v.group, v.sym ? " --sym" : "",
                                  v.act_order ? " --act-order" : "", padded ? " --pad-intermediate" : "");
    if (!gptq_both(model, flags, dir)) continue;
    std::string line;
    EXPECT_EQ(reference(dir / "gptq", dir / "fake", line), 0) << line;
    std::cerr << v.name() << ": " << line;

    // Our own loader (spin-eval's) reads the same numbers.
    LoadedModel packed = load_model(dir / "gptq");
    Checkpoint fake = load_checkpoint(dir / "fake");
    EXPECT_EQ(packed.checkpoint.config.intermediate_size, padded ? 192 : 160);
    EXPECT_EQ(packed.rotation.r4, v.model == "mlp160_rot" && rotations160_.find("r4") != std::string::npos);
    auto pn = named_tensors(packed.checkpoint.config, packed.checkpoint.weights);
    auto fn = named_tensors(fake.config, fake.weights);
    ASSERT_EQ(pn.size(), fn.size());
    for (size_t k = 0; k < pn.size(); ++k) {
      if (find_linear(pn[k].first)) {
        EXPECT_TRUE(torch::equal(pn[k].second, fn[k].second)) << pn[k].first;
      }
    }
    const nlohmann::json& qc = packed.checkpoint.config.json["quantization_config"];
    EXPECT_EQ(qc["bits"], v.bits);
    EXPECT_EQ(qc["spintrain"].contains("intermediate_size_padded"), padded);
    if (v.eval) {
      EXPECT_EQ(spin_eval(dir / "gptq", dir / "eval.log"), 0) << test::read_text(dir / "eval.log");
    }
  }
}

// --pad-intermediate only appends zeros to GPTQ's results: GPTQ runs on the model as it is, so the
// real rows and columns of the padded export are exactly those of the unpadded one.
TEST_F(GptqExports, PaddingLeavesGptqNumbersUnchanged) {
  const fs::path dir = test::scratch("gptq_format_padding");
  const std::string base = test::bin("spin-gptq").string() + " --model " + stories() + " --calib " + calib() +
                           " --nsamples 8 --seq-len 64 --threads 1 --quiet --format fake --wbits 4 --groupsize 32" +
                           " --act-order";
  auto padded = std::async(std::launch::async, [&] {
    return test::run(base + " --pad-intermediate --out " + (dir / "padded").string(), dir / "padded.log");
  });
  ASSERT_EQ(test::run(base + " --out " + (dir / "plain").string(), dir / "plain.log"), 0);
  ASSERT_EQ(padded.get(), 0) << test::read_text(dir / "padded.log");
  const Checkpoint a = load_checkpoint(dir / "plain"), b = load_checkpoint(dir / "padded");
  ASSERT_EQ(b.config.intermediate_size, 192);
  EXPECT_EQ(b.config.json["gptq_fake_quant"]["intermediate_size_padded"]["from"], 172);
  for (size_t i = 0; i < a.weights.layers.size(); ++i) {
    const LayerWeights &x = a.weights.layers[i], &y = b.weights.layers[i];
    EXPECT_TRUE(torch::equal(x.q_proj, y.q_proj));
    EXPECT_TRUE(torch::equal(x.gate_proj, y.gate_proj.narrow(0, 0, 172)));
    EXPECT_TRUE(torch::equal(x.up_proj, y.up_proj.narrow(0, 0, 172)));
    EXPECT_TRUE(torch::equal(x.down_proj, y.down_proj.narrow(1, 0, 172)));
    EXPECT_EQ(y.down_proj.narrow(1, 172, 20).abs().max().item<float>(), 0.f);
  }
}

// The independent check has teeth: one flipped bit in a qweight word (bit 31 of word 0, which holds
// the middle bit of code 10 — one of the two codes that straddle 3-bit words) is reported, naming the tensor.
TEST_F(GptqExports, ReferenceCatchesAWrongPacking) {
  if (!have_numpy()) GTEST_SKIP() << kNoNumpy;
  const fs::path dir = test::scratch("gptq_format_tampered");
  ASSERT_TRUE(gptq_both((dir_ / "mlp160").string(), "--wbits 3 --groupsize 32", dir));
  std::string line;
  ASSERT_EQ(reference(dir / "gptq", dir / "fake", line), 0) << line;

  const fs::path bad = dir / "bad";
  fs::create_directories(bad);
  fs::copy_file(dir / "gptq" / "config.json", bad / "config.json");
  SafetensorsFile file((dir / "gptq" / "model.safetensors").string());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const std::string target = "model.layers.1.mlp.up_proj.qweight";
  for (const TensorInfo& info : file.tensors()) {
    const std::string& name = info.name;
    torch::Tensor t = file.get(name).clone();
    if (name == target) t[0][5] = t[0][5].item<int32_t>() ^ std::numeric_limits<int32_t>::min();  // bit 31
    tensors.emplace_back(name, t);
  }
  save_safetensors((bad / "model.safetensors").string(), tensors, {{"format", "pt"}});
  EXPECT_EQ(reference(bad, dir / "fake", line), 1) << line;
  EXPECT_NE(line.find("mismatch: model.layers.1.mlp.up_proj"), std::string::npos) << line;
}

// Models that do not pack are refused before any GPTQ work: exit 1, one line naming the tensor and
// the way out, no output directory.
TEST_F(GptqExports, RefusalsAreOneLineAndWriteNothing) {
  const fs::path dir = test::scratch("gptq_format_refusals");
  const fs::path out = dir / "out";
  auto gptq = [&](const std::string& model, const std::string& flags) {
    return test::bin("spin-gptq").string() + " --model " + model + " --calib " + calib() + " --out " + out.string() +
           " --nsamples 8 --seq-len 64 --threads 1 " + flags;
  };
  const std::string r4 = (dir_ / "r4").string(), kv2 = (dir_ / "kv2").string();
  const std::vector<test::ExpectedError> cases = {
      {gptq(stories(), ""), "model.layers.0.mlp.gate_proj.weight [172, 64]: out_features 172 is not a multiple of 32"},
      {gptq(stories(), ""), "use --format fake, or --pad-intermediate (zero-pads intermediate_size 172 to 192"},
      {gptq(r4, "--pad-intermediate"), "R4 online Hadamard of size 172"},
      {gptq(r4, "--pad-intermediate --format fake"), "drop --pad-intermediate and use --format fake"},
      {gptq(r4, ""), "--pad-intermediate cannot be used with the R4 online Hadamard"},
      {gptq(kv2, ""), "model.layers.0.self_attn.k_proj.weight [16, 64]: out_features 16 is not a multiple of 32"},
      {gptq(kv2, "--pad-intermediate"), "--pad-intermediate pads only intermediate_size"},
      {gptq((dir_ / "mlp160").string(), "--wbits 5"), "the GPTQ format packs 2, 3, 4 or 8 bits, got 5"},
  };
  for (const auto& c : cases) {
    test::expect_one_line_errors({c}, dir);
    EXPECT_FALSE(fs::exists(out)) << c.command;
  }
}

// spintrain --learn-clip writes weight_clip.safetensors and names it in the rotation section; GPTQ's
// output drops the reference (GPTQ picks its own scales), records that, and loads in spin-eval.
TEST_F(GptqExports, LearnedClipIsDroppedAndTheOutputLoads) {
  const fs::path dir = test::scratch("gptq_format_clip");
  const fs::path trained = dir / "trained";
  const std::string flags = "--steps 2 --nsamples 8 --seq-len 64 --learn-clip --threads 2 --quiet";
  ASSERT_EQ(test::run(test::spintrain_command(trained, flags), dir / "train.log"), 0)
      << test::read_text(dir / "train.log");
  ASSERT_FALSE(load_model(trained).weight_clip.empty());
  ASSERT_TRUE(gptq_both(trained.string(), "--wbits 4 --groupsize 32 --pad-intermediate", dir));
  for (const char* format : {"gptq", "fake"}) {
    SCOPED_TRACE(format);
    const nlohmann::json cfg = nlohmann::json::parse(test::read_text(dir / format / "config.json"));
    EXPECT_TRUE(cfg["rotation"].is_object());
    EXPECT_FALSE(cfg["rotation"].contains("weight_clip_file"));
    EXPECT_FALSE(fs::exists(dir / format / kWeightClipFile));
    const nlohmann::json& record = std::string(format) == "gptq" ? cfg["quantization_config"]["spintrain"]
                                                                 : cfg["gptq_fake_quant"];
    EXPECT_EQ(record["learned_weight_clip"]["applied"], false) << record.dump();
    EXPECT_TRUE(load_model(dir / format).weight_clip.empty());
    EXPECT_EQ(spin_eval(dir / format, dir / "eval.log"), 0) << test::read_text(dir / "eval.log");
  }
  EXPECT_NE(test::read_text(dir / "gptq.log").find("learned clip ratios (weight_clip.safetensors) are not applied"),
            std::string::npos);
  if (have_numpy()) {
    std::string line;
    EXPECT_EQ(reference(dir / "gptq", dir / "fake", line), 0) << line;
  }
}
