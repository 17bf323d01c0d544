// GPTQ: the algorithm on one weight against RTN and against the paper's unbatched OBQ update, the
// GPTQ checkpoint format (bit layout, round trip), the per-layer forward the driver uses, and spin-gptq
// end to end on stories260K (NLL below RTN's).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "src/base/check.h"
#include "src/quant/gptq.h"
#include "src/quant/gptq_format.h"
#include "src/quant/gptq_model.h"
#include "src/model/forward.h"
#include "src/rotation/format.h"
#include "tests/test_util.h"

using namespace spin;

namespace {

// The header's grid for one group, w [out, n] (float64 reference): scale, zero.
std::pair<torch::Tensor, torch::Tensor> ref_grid(const torch::Tensor& w, const QuantSpec& s) {
  const double maxq = std::pow(2.0, s.bits) - 1;
  if (!s.asym) {
    const double half = std::pow(2.0, s.bits - 1);
    torch::Tensor scale = (w.abs().amax(1) / (half - 1)).to(torch::kHalf).to(torch::kFloat64);
    return {scale, torch::full_like(scale, half)};
  }
  torch::Tensor lo = w.amin(1).clamp_max(0), hi = w.amax(1).clamp_min(0);
  torch::Tensor scale = ((hi - lo) / maxq).to(torch::kHalf).to(torch::kFloat64);
  return {scale, torch::clamp(torch::round(-lo / scale), 1, maxq)};
}

// RTN onto the same grid: codes [out, in] (float64), groups of g consecutive columns.
torch::Tensor ref_rtn_codes(const torch::Tensor& w, const QuantSpec& s, int64_t g) {
  torch::Tensor codes = torch::empty_like(w);
  for (int64_t j = 0; j < w.size(1); j += g) {
    torch::Tensor wg = w.narrow(1, j, std::min(g, w.size(1) - j));
    auto [scale, zero] = ref_grid(wg, s);
    codes.narrow(1, j, wg.size(1)).copy_(
        torch::clamp(torch::round(wg / scale.unsqueeze(1)) + zero.unsqueeze(1), 0, std::pow(2.0, s.bits) - 1));
  }
  return codes;
}

// The paper's unbatched form (OBQ with a fixed order, eqs. 2-3), float64, per-row grid fixed up front:
// quantize column q, spread its error with the current inverse Hessian, remove q from the inverse.
torch::Tensor ref_obq_codes(torch::Tensor w, torch::Tensor h, const QuantSpec& s, double damp) {
  w = w.to(torch::kFloat64).clone();
  h = h.to(torch::kFloat64).clone();
  h.diagonal().add_(damp * h.diagonal().mean().item<double>());
  torch::Tensor hinv = torch::inverse(h);
  auto [scale, zero] = ref_grid(w, s);
  torch::Tensor codes = torch::empty_like(w);
  for (int64_t q = 0; q < w.size(1); ++q) {
    torch::Tensor c = torch::clamp(torch::round(w.select(1, q) / scale) + zero, 0, std::pow(2.0, s.bits) - 1);
    codes.select(1, q).copy_(c);
    torch::Tensor err = (w.select(1, q) - (c - zero) * scale) / hinv[q][q];
    w -= err.unsqueeze(1) * hinv.select(0, q).unsqueeze(0);
    hinv = hinv - hinv.select(1, q).unsqueeze(1) * hinv.select(0, q).unsqueeze(0) / hinv[q][q];
  }
  return codes;
}

// Correlated calibration inputs X [n, in] (a rank in/4 signal plus 10% noise, unequal feature
// scales, like real activations) and their Hessian 2/n XᵀX.
struct Calib {
  torch::Tensor x, h;
};
Calib make_calib(int64_t n, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t rank = std::max<int64_t>(in / 4, 1);
  torch::Tensor signal = torch::randn({n, rank}, torch::kFloat64).matmul(torch::randn({rank, in}, torch::kFloat64));
  torch::Tensor x = (signal + 0.1 * torch::randn({n, in}, torch::kFloat64)) * torch::linspace(0.2, 3, in, torch::kFloat64);
  HessianAccumulator acc(in);
  acc.add(x.narrow(0, 0, n / 2));
  acc.add(x.narrow(0, n / 2, n - n / 2));
  return {x, acc.hessian()};
}

double output_error(const torch::Tensor& w, const torch::Tensor& q, const torch::Tensor& x) {
  return (x.matmul(w.t()) - x.matmul(q.to(torch::kFloat64).t())).norm().item<double>();
}

torch::Tensor dequant(const torch::Tensor& codes, const torch::Tensor& w, const QuantSpec& s, int64_t g) {
  torch::Tensor out = torch::empty_like(w);
  for (int64_t j = 0; j < w.size(1); j += g) {
    auto [scale, zero] = ref_grid(w.narrow(1, j, std::min(g, w.size(1) - j)), s);
    out.narrow(1, j, std::min(g, w.size(1) - j))
        .copy_((codes.narrow(1, j, std::min(g, w.size(1) - j)) - zero.unsqueeze(1)) * scale.unsqueeze(1));
  }
  return out;
}

}  // namespace

TEST(GptqLayer, HessianIsTwiceTheMeanOuterProduct) {
  Calib c = make_calib(300, 12, 1);
  torch::Tensor expect = 2.0 / 300 * c.x.t().matmul(c.x);
  EXPECT_LT((c.h - expect).abs().max().item<double>(), 1e-5 * expect.abs().max().item<double>());
}

TEST(GptqLayer, DiagonalHessianGivesRtn) {
  // With a diagonal Hessian no error is propagated: GPTQ must reproduce RTN on its grid exactly.
  torch::manual_seed(2);
  torch::Tensor w = torch::randn({16, 64}, torch::kFloat64);
  torch::Tensor h = torch::diag(torch::rand({64}, torch::kFloat64) + 0.5);
  for (bool asym : {false, true}) {
    QuantSpec s{4, 16, asym, 1.0};
    GptqOptions o;
    o.grid = s;
    QuantizedWeight q = gptq_quantize(w.to(torch::kFloat32), h, o, "w");
    EXPECT_TRUE(torch::equal(q.codes.to(torch::kFloat64), ref_rtn_codes(w.to(torch::kFloat32).to(torch::kFloat64), s, 16)))
        << "asym " << asym;
  }
}

TEST(GptqLayer, MatchesUnbatchedObqUpdates) {
  // Lazy blocks of 8 columns over 40 columns (several blocks and a partial one) against the paper's
  // explicit-inverse form.
  Calib c = make_calib(400, 40, 3);
  torch::manual_seed(4);
  torch::Tensor w = torch::randn({24, 40}, torch::kFloat64);
  GptqOptions o;
  o.grid = {4, 0, true, 1.0};
  o.block_size = 8;
  QuantizedWeight q = gptq_quantize(w.to(torch::kFloat32), c.h, o, "w");
  torch::Tensor ref = ref_obq_codes(w.to(torch::kFloat32), c.h, o.grid, o.damp);
  const int64_t differ = (q.codes.to(torch::kFloat64) != ref).sum().item<int64_t>();
  EXPECT_LE(differ, 2) << "of " << ref.numel() << " codes";  // float32 vs float64 rounding ties only
}

TEST(GptqLayer, OutputErrorBelowRtn) {
  Calib c = make_calib(512, 64, 5);
  torch::manual_seed(6);
  torch::Tensor w = torch::randn({48, 64}, torch::kFloat64);
  struct Case {
    QuantSpec spec;
    bool act_order;
  };
  for (const Case& k : {Case{{4, 0, false, 1.0}, false}, Case{{4, 16, true, 1.0}, false},
                        Case{{3, 16, true, 1.0}, true}, Case{{2, 32, false, 1.0}, true}}) {
    GptqOptions o;
    o.grid = k.spec;
    o.act_order = k.act_order;
    QuantizedWeight q = gptq_quantize(w.to(torch::kFloat32), c.h, o, "w");
    const int64_t g = k.spec.groupsize > 0 ? k.spec.groupsize : 64;
    const torch::Tensor wf = w.to(torch::kFloat32).to(torch::kFloat64);
    const double rtn = output_error(wf, dequant(ref_rtn_codes(wf, k.spec, g), wf, k.spec, g), c.x);
    const double gptq = output_error(wf, q.dequantize(), c.x);
    EXPECT_LT(gptq, 0.9 * rtn) << k.spec.describe() << (k.act_order ? " act-order" : "") << ": gptq " << gptq
                               << " rtn " << rtn;
  }
}

TEST(GptqLayer, ActOrderGroupsFollowTheHessianDiagonal) {
  Calib c = make_calib(256, 48, 7);
  torch::manual_seed(8);
  torch::Tensor w = torch::randn({8, 48}, torch::kFloat32);
  GptqOptions o;
  o.grid = {4, 16, true, 1.0};
  o.act_order = true;
  QuantizedWeight q = gptq_quantize(w, c.h, o, "w");
  ASSERT_EQ(q.scales.size(0), 3);
  torch::Tensor order = std::get<1>(torch::sort(c.h.diagonal(), true, 0, true));
  for (int64_t j = 0; j < 48; ++j)
    EXPECT_EQ(q.g_idx[order[j].item<int64_t>()].item<int>(), j / 16) << "column " << order[j].item<int64_t>();
  // Every code is reproduced by its group's grid.
  torch::Tensor deq = q.dequantize();
  for (int64_t j = 0; j < 48; ++j) {
    const int64_t grp = q.g_idx[j].item<int>();
    torch::Tensor expect = (q.codes.select(1, j).to(torch::kFloat32) - q.zeros[grp].to(torch::kFloat32)) * q.scales[grp];
    EXPECT_TRUE(torch::equal(deq.select(1, j), expect));
  }
}

TEST(GptqLayer, DeadInputsAreZeroed) {
  torch::Tensor h = make_calib(128, 16, 9).h;
  h.select(0, 5).zero_();
  h.select(1, 5).zero_();
  torch::Tensor w = torch::randn({4, 16});
  GptqOptions o;
  o.grid = {4, 8, true, 1.0};
  torch::Tensor deq = gptq_quantize(w, h, o, "w").dequantize();
  EXPECT_EQ(deq.select(1, 5).abs().max().item<float>(), 0.f);
}

namespace {

// A weight [32, n] whose every row has the given codes (one group, zero point `zero`): 32 outputs,
// the fewest that pack.
QuantizedWeight rows_of(int bits, const std::vector<int64_t>& codes, int zero) {
  QuantizedWeight q;
  q.bits = bits;
  q.codes = torch::tensor(codes, torch::kLong).to(torch::kUInt8).view({1, -1}).expand({32, -1}).contiguous();
  q.scales = torch::ones({1, 32});
  q.zeros = torch::full({1, 32}, zero, torch::kInt32);
  q.g_idx = torch::zeros({q.codes.size(1)}, torch::kInt32);
  return q;
}

// Column 0 of qweight [in / 32 · bits, out] (output row 0's words), as uint32 values.
std::vector<uint32_t> words(const PackedLinear& p) {
  std::vector<uint32_t> w;
  for (int64_t i = 0; i < p.qweight.size(0); ++i) w.push_back(static_cast<uint32_t>(p.qweight[i][0].item<int32_t>()));
  return w;
}

std::vector<int64_t> pattern(int64_t n, int64_t mod) {
  std::vector<int64_t> v;
  for (int64_t k = 0; k < n; ++k) v.push_back(k % mod);
  return v;
}

}  // namespace

// The expected words were computed by hand from the format's definition (code k at stream bits
// [bits·k, bits·k + bits), 32-bit words lowest bit first), not with the code under test.
TEST(GptqFormat, BitLayout) {
  EXPECT_EQ(words(pack_gptq(rows_of(4, pattern(32, 8), 8))),
            (std::vector<uint32_t>{0x76543210, 0x76543210, 0x76543210, 0x76543210}));
  EXPECT_EQ(words(pack_gptq(rows_of(2, pattern(32, 4), 2))), (std::vector<uint32_t>{0xe4e4e4e4, 0xe4e4e4e4}));
  std::vector<int64_t> bytes;
  for (int64_t k = 0; k < 32; ++k) bytes.push_back((k % 4) * 0x11);
  EXPECT_EQ(words(pack_gptq(rows_of(8, bytes, 128))).front(), 0x33221100u);
  // 3 bits: codes k mod 8. Code 10 (= 2) straddles words 0 and 1 (bits 30, 31 = 0, 1; then bit 0 of
  // word 1 = 0), code 21 (= 5) words 1 and 2 (bit 31 of word 1 = 1; bits 0, 1 of word 2 = 0, 1).
  EXPECT_EQ(words(pack_gptq(rows_of(3, pattern(32, 8), 4))),
            (std::vector<uint32_t>{0x88fac688, 0xc688fac6, 0xfac688fa}));
  QuantizedWeight all = rows_of(4, std::vector<int64_t>(32, 15), 8);
  EXPECT_EQ(words(pack_gptq(all)).front(), 0xFFFFFFFFu);
  // qzeros: zero − 1 packed along the output dimension the same way (32 outputs, zero 8 -> 7 each).
  PackedLinear p = pack_gptq(all);
  ASSERT_EQ(p.qzeros.sizes(), torch::IntArrayRef({1, 4}));
  EXPECT_EQ(static_cast<uint32_t>(p.qzeros[0][0].item<int32_t>()), 0x77777777u);
}

TEST(GptqFormat, RoundTripsToIdenticalWeights) {
  // out = 32 and in = 96 (multiples of 32); groups of 40 leave a short last one.
  Calib c = make_calib(200, 96, 10);
  torch::manual_seed(11);
  torch::Tensor w = torch::randn({32, 96});
  for (int bits : {2, 3, 4, 8})
    for (bool act_order : {false, true})
      for (bool asym : {false, true}) {
        GptqOptions o;
        o.grid = {bits, 40, asym, 1.0};
        o.act_order = act_order;
        QuantizedWeight q = gptq_quantize(w, c.h, o, "w");
        PackedLinear p = pack_gptq(q);
        EXPECT_EQ(p.qweight.sizes(), torch::IntArrayRef({96 / 32 * bits, 32}));
        EXPECT_EQ(p.qzeros.sizes(), torch::IntArrayRef({3, 32 / 32 * bits}));
        EXPECT_EQ(p.scales.scalar_type(), torch::kHalf);
        QuantizedWeight back = unpack_gptq(p, bits, 32, 96, "w");
        EXPECT_TRUE(torch::equal(back.codes, q.codes)) << bits << " bits";
        EXPECT_TRUE(torch::equal(back.zeros, q.zeros));
        EXPECT_TRUE(torch::equal(back.g_idx, q.g_idx));
        EXPECT_TRUE(torch::equal(back.dequantize(), q.dequantize())) << bits << " bits";
      }
}

TEST(GptqFormat, RefusesDimensionsThatDoNotPack) {
  // in = 44 (or out = 12): AutoGPTQ would allocate in // 32 · bits words, GPTQModel ceil(in · bits / 32).
  for (auto shape : {std::vector<int64_t>{32, 44}, std::vector<int64_t>{12, 64}}) {
    QuantizedWeight q = gptq_quantize(torch::randn(shape), make_calib(64, shape[1], 12).h, GptqOptions{}, "w");
    try {
      pack_gptq(q, "model.layers.0.mlp.down_proj.weight");
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.down_proj.weight: weight ["), std::string::npos)
          << e.what();
    }
  }
  QuantizedWeight q = gptq_quantize(torch::randn({32, 32}), make_calib(64, 32, 12).h, GptqOptions{}, "w");
  q.bits = 5;
  EXPECT_THROW(pack_gptq(q), Error);
}

TEST(GptqFormat, ReadsAnExactEightBitLayoutOfAnyWidth) {
  // 8 bits, in = 172: 43 words per column (GPTQModel's ceil(in · bits / 32)). Built here byte by byte:
  // word j of column o holds codes 4j .. 4j+3 as its bytes, lowest first (a little-endian machine).
  torch::manual_seed(14);
  torch::Tensor codes = torch::randint(256, {32, 172}, torch::kLong).to(torch::kUInt8);  // [out, in]
  PackedLinear p;
  p.qweight = codes.t().reshape({43, 4, 32}).permute({0, 2, 1}).contiguous().view(torch::kInt32).view({43, 32});
  p.qzeros = torch::full({1, 8}, 0x7F7F7F7F, torch::kInt32);  // zero 128 everywhere
  p.scales = torch::ones({1, 32}, torch::kHalf);
  p.g_idx = torch::zeros({172}, torch::kInt32);
  QuantizedWeight q = unpack_gptq(p, 8, 32, 172, "w");
  EXPECT_TRUE(torch::equal(q.codes, codes));
  EXPECT_TRUE(torch::equal(q.zeros, torch::full({1, 32}, 128, torch::kInt32)));
  // 4 bits cannot store in = 172 in whole words.
  EXPECT_THROW(unpack_gptq(p, 4, 32, 172, "w"), Error);
}

TEST(GptqFormat, BadShapesNameTheTensor) {
  QuantizedWeight q = gptq_quantize(torch::randn({32, 64}), make_calib(64, 64, 12).h, GptqOptions{}, "w");
  PackedLinear p = pack_gptq(q);
  try {
    unpack_gptq(p, 4, 32, 96, "model.safetensors: 'layers.0.q_proj'");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'layers.0.q_proj'.qweight has shape"), std::string::npos) << e.what();
  }
  p.g_idx[3] = 5;
  EXPECT_THROW(unpack_gptq(p, 4, 32, 64, "w"), Error);
}

TEST(GptqModel, DecoderLayerTapSeesEveryLinearInputAndCanStop) {
  LoadedModel m = load_model(test::asset("models/stories260K"));
  const ModelConfig& c = m.checkpoint.config;
  ModelWeights w = map_weights(c, m.checkpoint.weights, [](const torch::Tensor& t) { return t.to(torch::kFloat64); });
  torch::manual_seed(13);
  torch::Tensor ids = torch::randint(c.vocab_size, {2, 24}, torch::kLong);
  const std::vector<LinearInput> order = {LinearInput::attn_in, LinearInput::attn_heads, LinearInput::mlp_in,
                                          LinearInput::mlp_hidden};
  for (bool r : {false, true}) {
    const ForwardOptions fo = online_hadamards(r, r);
    torch::Tensor x = embed(w, ids);
    std::vector<LinearInput> seen;
    for (const LayerWeights& L : w.layers) {
      // Stopping at each input leaves the layer's output undefined and sees the inputs up to it.
      for (size_t stop = 0; stop < order.size(); ++stop) {
        size_t calls = 0;
        const torch::Tensor none = decoder_layer(c, L, x, fo, [&](LinearInput in, const torch::Tensor&) {
          ++calls;
          return in != order[stop];
        });
        EXPECT_FALSE(none.defined());
        EXPECT_EQ(calls, stop + 1);
      }
      x = decoder_layer(c, L, x, fo, [&](LinearInput in, const torch::Tensor& t) {
        seen.push_back(in);
        const Linear* reader = nullptr;
        for (const Linear& l : layer_linears())
          if (l.input == in) reader = &l;
        EXPECT_EQ(t.size(-1), size_of(c, reader->in));
        return true;
      });
    }
    ASSERT_EQ(seen.size(), 4 * size_t(c.num_hidden_layers));
    for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], order[k % 4]);
    x = x * torch::rsqrt(x.pow(2).mean(-1, true) + c.rms_norm_eps) * w.norm;
    EXPECT_LT((x - forward_hidden(c, w, ids, fo)).abs().max().item<double>(), 1e-10) << "r3/r4 " << r;
  }
}

namespace {

double eval_nll(const std::string& args, const std::filesystem::path& dir, const std::string& tag) {
  const auto out = dir / (tag + ".json");
  const int rc = test::run(test::bin("spin-eval").string() + " --data " + test::asset("data/stories260K-eval.h5").string() +
                               " --rows 16 --seq-len 256 --threads 2 --json " + args + " >" + out.string() + " 2>" +
                               (dir / (tag + ".log")).string());
  EXPECT_EQ(rc, 0) << tag;
  std::ifstream in(out);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() && j.contains("nll") ? j["nll"].get<double>() : NAN;
}

}  // namespace

TEST(GptqModel, EndToEndBeatsRtnOnStories260K) {
  const auto dir = test::scratch("gptq_e2e");
  const std::string model = test::asset("models/stories260K").string();
  const std::string base = test::bin("spin-gptq").string() + " --model " + model + " --calib " +
                           test::asset("data/stories260K-calib.h5").string() +
                           " --wbits 4 --groupsize 0 --sym --nsamples 16 --seq-len 256 --threads 2 --quiet" +
                           " --pad-intermediate";  // intermediate_size 172 -> 192 (both formats, so they compare)
  ASSERT_EQ(test::run(base + " --out " + (dir / "packed").string(), dir / "packed.log"), 0);
  ASSERT_EQ(test::run(base + " --format fake --out " + (dir / "fake").string(), dir / "fake.log"), 0);

  // The packed checkpoint: GPTQ quantization_config, and exactly the fake checkpoint's linear weights.
  ASSERT_TRUE(is_gptq_checkpoint(dir / "packed"));
  EXPECT_FALSE(is_gptq_checkpoint(dir / "fake"));
  Checkpoint packed = load_gptq_checkpoint(dir / "packed");
  Checkpoint fake = load_checkpoint(dir / "fake");
  EXPECT_EQ(packed.config.json["quantization_config"]["group_size"], -1);
  EXPECT_EQ(packed.config.json["quantization_config"]["sym"], true);
  auto pn = named_tensors(packed.config, packed.weights), fn = named_tensors(fake.config, fake.weights);
  ASSERT_EQ(pn.size(), fn.size());
  for (size_t k = 0; k < pn.size(); ++k) {
    ASSERT_EQ(pn[k].first, fn[k].first);
    if (find_linear(pn[k].first)) {
      EXPECT_TRUE(torch::equal(pn[k].second, fn[k].second)) << pn[k].first;
      // 4-bit sym per row: at most 16 distinct values per row.
      EXPECT_LE(std::get<0>(torch::_unique(pn[k].second[0])).numel(), 16) << pn[k].first;
    } else {
      EXPECT_TRUE(torch::equal(pn[k].second, fn[k].second.to(torch::kHalf).to(torch::kFloat32))) << pn[k].first;
    }
  }

  const double rtn = eval_nll("--model " + model + " --wbits 4", dir, "rtn");
  const double gptq_fake = eval_nll("--model " + (dir / "fake").string(), dir, "fake");
  const double gptq_packed = eval_nll("--model " + (dir / "packed").string(), dir, "packed");
  std::cerr << "nll rtn W4 " << rtn << "  gptq fake " << gptq_fake << "  gptq packed "
            << gptq_packed << std::endl;
  ASSERT_TRUE(std::isfinite(gptq_packed) && std::isfinite(gptq_fake) && std::isfinite(rtn));
  EXPECT_LT(gptq_fake, rtn);
  EXPECT_LT(gptq_packed, rtn);
  EXPECT_NEAR(gptq_packed, gptq_fake, 2e-3);  // float16 embeddings and norms in the packed checkpoint
}
