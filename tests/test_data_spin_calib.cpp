// spin-calib end to end: ../shared/data/text/tinyshakespeare.txt with the LLaMA-2 tokenizer
// (../shared/tokenizers/llama2/tokenizer.model) -> HDF5, checked against token ids computed
// independently with /usr/bin/python3 + python3-sentencepiece 0.1.97:
//   ids = spm.SentencePieceProcessor(model_file=tok).encode(open(txt).read())
//   len(ids) == 368633; ids[:15] == [3824, 21353, 19642, 29901, 13, 18743, 591, 8469, 738, 4340,
//   29892, 8293, 592, 7726, 29889]; s = [1] + ids: 719 rows of 512, 506 tokens dropped,
//   s[719*512-4 : 719*512] == [18120, 29892, 367, 451], sum(s[:719*512]) == 3358466366;
//   s = ids + [2]: 89 rows of 4096, sum(s[:89*4096]) == 3325268519.
// The tokenizer itself (data/sentencepiece_bpe.h) is checked the same way, plus short strings
// (sp.encode(s) in Python): "Hello world" -> [15043, 3186]; "  two  spaces\tand tab\n" ->
// [259, 1023, 29871, 8162, 12, 392, 4434, 13]; "naïve café – 東京 🤗" -> [1055, 30085, 345, 274,
// 28059, 785, 29871, 30591, 30675, 29871, 243, 162, 167, 154] (the emoji by byte fallback);
// sum(ids) of the whole text == 3363079858.
// Also: --decode of the first rows gives back a prefix of the text; bad input is a one-line error.
// Skipped when ../shared is absent (a user's clone without it).
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <sstream>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "data/sentencepiece_bpe.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using spin::data::load_calib;

namespace {

const fs::path kShared = spin::test::root() / ".." / "shared";
const std::string kTok = (kShared / "tokenizers/llama2/tokenizer.model").string();
const std::string kText = (kShared / "data/text/tinyshakespeare.txt").string();

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs spin-calib with `args`; returns its exit status, output in `log`.
int calib(const std::string& args, const fs::path& log) {
  return spin::test::run(spin::test::bin("spin-calib").string() + " " + args, log);
}

class SpinCalib : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTok) || !fs::exists(kText)) GTEST_SKIP() << "../shared (tokenizer, text) not present";
  }
};

}  // namespace

TEST_F(SpinCalib, TokenizerMatchesSentencePiecePython) {
  const spin::data::SentencePieceBpe sp(kTok);
  EXPECT_EQ(sp.vocab_size(), 32000);
  EXPECT_EQ(sp.bos_id(), 1);
  EXPECT_EQ(sp.eos_id(), 2);
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"Hello world", {15043, 3186}},
      {"  two  spaces\tand tab\n", {259, 1023, 29871, 8162, 12, 392, 4434, 13}},
      {"na\xc3\xafve caf\xc3\xa9 \xe2\x80\x93 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\xa4\x97",
       {1055, 30085, 345, 274, 28059, 785, 29871, 30591, 30675, 29871, 243, 162, 167, 154}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(sp.encode(text), ids) << text;
    EXPECT_EQ(sp.decode(ids), text);
  }
  const std::string text = slurp(kText);
  const std::vector<int> ids = sp.encode(text);
  ASSERT_EQ(ids.size(), 368633u);
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 4), (std::vector<int>{3824, 21353, 19642, 29901}));
  EXPECT_EQ(std::accumulate(ids.begin(), ids.end(), int64_t{0}), 3363079858);
  EXPECT_EQ(sp.decode(ids), text);
}

TEST_F(SpinCalib, TokenizesShakespeareLikeSentencePiecePython) {
  const fs::path dir = spin::test::scratch("spin_calib_basic");
  const std::string out = (dir / "shakes.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTok + " --out " + out + " --seq-len 512 " + kText, dir / "log"), 0)
      << slurp(dir / "log");
  const std::string log = slurp(dir / "log");
  EXPECT_NE(log.find("input_ids [719, 512]"), std::string::npos) << log;
  EXPECT_NE(log.find("506 dropped"), std::string::npos) << log;

  torch::Tensor ids = load_calib(out, /*vocab_size=*/32000, {});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({719, 512}));
  EXPECT_TRUE(ids[0].narrow(0, 0, 16).equal(torch::tensor(
      {1, 3824, 21353, 19642, 29901, 13, 18743, 591, 8469, 738, 4340, 29892, 8293, 592, 7726, 29889}, torch::kInt64)));
  EXPECT_TRUE(ids[718].narrow(0, 508, 4).equal(torch::tensor({18120, 29892, 367, 451}, torch::kInt64)));
  EXPECT_EQ(ids.sum().item<int64_t>(), 3358466366);
  EXPECT_EQ(ids.eq(1).sum().item<int64_t>(), 1) << "one BOS: the file is one document";

  auto attrs = spin::data::read_attributes(out);
  EXPECT_EQ(attrs.at("vocab_size"), "32000");
  EXPECT_EQ(attrs.at("seq_len"), "512");
  EXPECT_EQ(attrs.at("created_by"), "spin-calib");
  EXPECT_EQ(attrs.at("tokenizer"), kTok);
  EXPECT_EQ(attrs.at("tokenizer_bytes"), std::to_string(fs::file_size(kTok)));
  EXPECT_EQ(attrs.at("source"), nlohmann::json({kText}).dump());
  EXPECT_EQ(attrs.at("source_tokens"), "368634");
  EXPECT_EQ(attrs.at("dropped_tokens"), "506");
  EXPECT_EQ(attrs.at("bos"), "true");

  // decode(encode(text)) round trip through the C++ SentencePiece API: a prefix of the file.
  ASSERT_EQ(calib("--tokenizer " + kTok + " --decode " + out + " --rows 2 >" + (dir / "dec.txt").string(), {}), 0);
  const std::string dec = slurp(dir / "dec.txt"), text = slurp(kText);
  EXPECT_GT(dec.size(), 2000u);
  EXPECT_EQ(text.substr(0, dec.size()), dec);
}

TEST_F(SpinCalib, NoBosEosAndSeqLen) {
  const fs::path dir = spin::test::scratch("spin_calib_eos");
  const std::string out = (dir / "eos.h5").string();
  ASSERT_EQ(calib("--tokenizer " + kTok + " --out " + out + " --seq-len 4096 --no-bos --eos " + kText, dir / "log"), 0)
      << slurp(dir / "log");
  torch::Tensor ids = load_calib(out, 32000, {});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({89, 4096}));
  EXPECT_TRUE(ids[0].narrow(0, 0, 4).equal(torch::tensor({3824, 21353, 19642, 29901}, torch::kInt64)));
  EXPECT_EQ(ids.sum().item<int64_t>(), 3325268519);
  EXPECT_EQ(spin::data::read_attributes(out).at("eos"), "true");
}

TEST_F(SpinCalib, ShuffleAndRowsAreSeededAndSelectPackedRows) {
  const fs::path dir = spin::test::scratch("spin_calib_shuffle");
  const std::string plain = (dir / "plain.h5").string(), a = (dir / "a.h5").string(), b = (dir / "b.h5").string();
  const std::string base = "--tokenizer " + kTok + " --seq-len 256 ";
  ASSERT_EQ(calib(base + "--out " + plain + " " + kText, dir / "log0"), 0) << slurp(dir / "log0");
  ASSERT_EQ(calib(base + "--out " + a + " --shuffle --seed 5 --rows 10 " + kText, dir / "log1"), 0);
  ASSERT_EQ(calib(base + "--out " + b + " --shuffle --seed 5 --rows 10 " + kText, dir / "log2"), 0);
  torch::Tensor all = load_calib(plain, 32000, {}), ta = load_calib(a, 32000, {});
  ASSERT_EQ(ta.sizes(), torch::IntArrayRef({10, 256}));
  EXPECT_TRUE(ta.equal(load_calib(b, 32000, {}))) << "same seed, same rows";
  std::vector<int64_t> perm = spin::data::seeded_permutation(all.size(0), 5);
  for (int64_t i = 0; i < 10; ++i) EXPECT_TRUE(ta[i].equal(all[perm[i]])) << "row " << i;
  EXPECT_EQ(spin::data::read_attributes(a).at("seed"), "5");
}

TEST_F(SpinCalib, BadInputIsAOneLineError) {
  const fs::path dir = spin::test::scratch("spin_calib_errors");
  const std::string out = (dir / "x.h5").string();
  auto expect_fail = [&](const std::string& args, const std::vector<std::string>& parts) {
    const fs::path log = dir / "log";
    EXPECT_NE(calib(args, log), 0) << args;
    const std::string s = slurp(log);
    const size_t at = s.find("error: ");
    ASSERT_NE(at, std::string::npos) << s;
    const std::string line = s.substr(at, s.find('\n', at) - at);
    for (const auto& p : parts) EXPECT_NE(line.find(p), std::string::npos) << "'" << p << "' not in: " << line;
    EXPECT_FALSE(fs::exists(out)) << "no output on failure";
  };
  expect_fail("--tokenizer " + (dir / "nope.model").string() + " --out " + out + " " + kText,
              {"--tokenizer", "nope.model", "no such file"});
  std::ofstream(dir / "empty.txt").close();
  expect_fail("--tokenizer " + kTok + " --out " + out + " " + (dir / "empty.txt").string(), {"empty.txt", "empty text"});
  std::ofstream(dir / "short.txt") << "To be, or not to be, that is the question.\n";
  expect_fail("--tokenizer " + kTok + " --out " + out + " --seq-len 512 " + (dir / "short.txt").string(),
              {"fewer than one row", "--seq-len 512"});
  expect_fail("--tokenizer " + kTok + " --out " + out + " --rows 100000 " + kText, {"rows 100000"});
  std::ofstream(dir / "fake.model") << "not a sentencepiece model";
  expect_fail("--tokenizer " + (dir / "fake.model").string() + " --out " + out + " " + kText, {"fake.model"});
}
