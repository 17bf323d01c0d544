// Calibration data loader (data/calib_dataset.h) and token-file I/O (data/hdf5_file.h): the bundled
// eval set against values computed independently, row options, shuffle and sharding, and corrupt
// inputs, each of which must be a spin::Error naming the file and the field.
//
// Reference values for assets/data/stories260K-eval.h5 come from /usr/bin/python3 + h5py + numpy:
//   a = h5py.File(path)['input_ids'][:].astype(np.int64)
//   a.shape == (64, 512); a.sum() == 10658033; a.max() == 511; (a[:, 0] == 1).all()
//   a[0, :8] == [1, 440, 341, 341, 446, 510, 401, 278]; a[63].sum() == 166846; a[:, :128].sum() == 2644105
//   p = a.flatten()[:32 * 1000].reshape(32, 1000): p.sum() == 10404355, p[1, :4] == [473, 395, 435, 256]
// seeded_permutation reference: Fisher-Yates (i = n-1 .. 1, j = uniform in [0, i] by rejection:
// x >= 2^64 mod (i+1), j = x mod (i+1)) over a pure-Python MT19937-64 whose 10000th output for seed
// 5489 is 9981545732273789042, the value the C++ standard mandates for std::mt19937_64.
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <fstream>
#include <set>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "src/base/check.h"
#include "tests/test_util.h"

using namespace spin;
using spin::data::CalibOptions;
using spin::data::load_calib;

namespace {

const std::string kEval = spin::test::asset("data/stories260K-eval.h5").string();

// Writes dataset `name` of type `type` and shape `dims` (values 0, 1, 2, ...) with the raw HDF5 API,
// to build files the writer refuses to produce.
template <typename T>
void write_raw(const std::string& path, const std::string& name, const H5::PredType& mem, const H5::PredType& file_type,
               std::vector<hsize_t> dims) {
  H5::H5File f(path, H5F_ACC_TRUNC);
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = f.createDataSet(name, file_type, space);
  size_t n = 1;
  for (hsize_t d : dims) n *= d;
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(i % 7);
  if (n > 0) ds.write(v.data(), mem);
}

// Expects fn() to throw a spin::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no spin::Error thrown";
  } catch (const spin::Error& e) {
    const std::string msg = e.what();
    std::cout << "  (expected) " << msg << "\n";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// True when dataset input_ids of `path` is stored as little-endian int32.
bool stored_as_int32(const std::string& path) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  return f.openDataSet("input_ids").getDataType() == H5::PredType::STD_I32LE;
}

std::set<std::vector<int64_t>> row_set(const torch::Tensor& t) {
  std::set<std::vector<int64_t>> s;
  for (int64_t i = 0; i < t.size(0); ++i) {
    torch::Tensor r = t[i].contiguous();
    s.insert(std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()));
  }
  return s;
}

}  // namespace

TEST(CalibLoader, EvalSetMatchesPythonReference) {
  torch::Tensor ids = load_calib(kEval, /*vocab_size=*/512, {});
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({64, 512}));
  EXPECT_EQ(ids.scalar_type(), torch::kInt64);
  EXPECT_TRUE(ids.is_contiguous());
  EXPECT_EQ(ids.sum().item<int64_t>(), 10658033);
  EXPECT_EQ(ids.max().item<int64_t>(), 511);
  EXPECT_TRUE(ids.select(1, 0).eq(1).all().item<bool>()) << "every row starts with BOS=1";
  EXPECT_TRUE(ids[0].narrow(0, 0, 8).equal(torch::tensor({1, 440, 341, 341, 446, 510, 401, 278}, torch::kInt64)));
  EXPECT_EQ(ids[63].sum().item<int64_t>(), 166846);
}

TEST(CalibLoader, RowsAndSeqLenCut) {
  CalibOptions o;
  o.seq_len = 128;
  torch::Tensor cut = load_calib(kEval, 512, o);
  ASSERT_EQ(cut.sizes(), torch::IntArrayRef({64, 128}));
  EXPECT_EQ(cut.sum().item<int64_t>(), 2644105);
  o.rows = 5;
  torch::Tensor few = load_calib(kEval, 512, o);
  ASSERT_EQ(few.sizes(), torch::IntArrayRef({5, 128}));
  EXPECT_TRUE(few.equal(cut.narrow(0, 0, 5)));
}

TEST(CalibLoader, PackConcatenatesRowsAndDropsRemainder) {
  CalibOptions o;
  o.pack = true;
  o.seq_len = 1000;
  torch::Tensor p = load_calib(kEval, 512, o);
  ASSERT_EQ(p.sizes(), torch::IntArrayRef({32, 1000}));  // 64 * 512 = 32768 tokens -> 32 rows, 768 dropped
  EXPECT_EQ(p.sum().item<int64_t>(), 10404355);
  EXPECT_TRUE(p[1].narrow(0, 0, 4).equal(torch::tensor({473, 395, 435, 256}, torch::kInt64)));
  o.seq_len = 64 * 512 + 1;
  expect_error([&] { load_calib(kEval, 512, o); }, {"stories260K-eval.h5", "input_ids", "seq_len"});
}

TEST(CalibLoader, SeqLenBeyondStoredRowsNeedsPack) {
  CalibOptions o;
  o.seq_len = 513;
  expect_error([&] { load_calib(kEval, 512, o); }, {"stories260K-eval.h5", "input_ids", "seq_len 513"});
  o.rows = 65;
  o.seq_len = -1;
  expect_error([&] { load_calib(kEval, 512, o); }, {"stories260K-eval.h5", "input_ids", "rows 65"});
}

TEST(CalibLoader, SeededPermutationMatchesPythonReference) {
  EXPECT_EQ(data::seeded_permutation(10, 0), (std::vector<int64_t>{7, 2, 0, 8, 3, 9, 6, 1, 5, 4}));
  EXPECT_EQ(data::seeded_permutation(10, 42), (std::vector<int64_t>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6}));
  std::vector<int64_t> p = data::seeded_permutation(64, 7);
  EXPECT_EQ(std::vector<int64_t>(p.begin(), p.begin() + 8), (std::vector<int64_t>{11, 56, 46, 8, 37, 44, 54, 43}));
}

TEST(CalibLoader, ShuffleIsASeededPermutationOfRows) {
  torch::Tensor plain = load_calib(kEval, 512, {});
  CalibOptions o;
  o.shuffle = true;
  o.seed = 7;
  torch::Tensor a = load_calib(kEval, 512, o);
  torch::Tensor b = load_calib(kEval, 512, o);
  EXPECT_TRUE(a.equal(b)) << "same seed, same order";
  EXPECT_FALSE(a.equal(plain));
  EXPECT_EQ(row_set(a), row_set(plain)) << "a permutation: same rows";
  EXPECT_TRUE(a[0].equal(plain[11])) << "row 0 is stored row perm(64, 7)[0] = 11";
  o.seed = 8;
  EXPECT_FALSE(load_calib(kEval, 512, o).equal(a)) << "another seed, another order";
  o.seed = 7;
  o.rows = 8;  // the first 8 rows after the shuffle
  EXPECT_TRUE(load_calib(kEval, 512, o).equal(a.narrow(0, 0, 8)));
}

TEST(CalibLoader, ShardsPartitionTheSelectedRows) {
  CalibOptions o;
  o.shuffle = true;
  o.seed = 3;
  o.rows = 30;
  torch::Tensor all = load_calib(kEval, 512, o);  // [30, 512]
  o.world_size = 4;
  std::vector<torch::Tensor> shards;
  for (int64_t r = 0; r < 4; ++r) {
    o.rank = r;
    shards.push_back(load_calib(kEval, 512, o));
    // rank r takes rows r, r+4, r+8, ... of the unsharded selection
    EXPECT_TRUE(shards.back().equal(all.index_select(0, torch::arange(r, 30, 4))));
  }
  EXPECT_EQ(shards[0].size(0) + shards[1].size(0) + shards[2].size(0) + shards[3].size(0), 30);
  EXPECT_EQ(row_set(torch::cat(shards)), row_set(all));
  o.rank = 4;
  expect_error([&] { load_calib(kEval, 512, o); }, {"stories260K-eval.h5", "rank 4"});
  o.rank = 0;
  o.rows = 3;
  o.rank = 3;
  expect_error([&] { load_calib(kEval, 512, o); }, {"stories260K-eval.h5", "rank 3", "none"});
}

TEST(TokenFile, WriteReadRoundTripWithAttributes) {
  auto dir = spin::test::scratch("data_roundtrip");
  const std::string path = (dir / "sub" / "t.h5").string();
  torch::Tensor ids = torch::randint(0, 32000, {3, 17}, torch::kInt64);
  data::write_token_ids(path, ids, {{"source", "unit test"}, {"vocab_size", "32000"}});
  EXPECT_TRUE(stored_as_int32(path));
  EXPECT_TRUE(load_calib(path, 32000, {}).equal(ids));
  auto attrs = data::read_attributes(path);
  EXPECT_EQ(attrs.at("source"), "unit test");
  EXPECT_EQ(attrs.at("vocab_size"), "32000");
  for (const auto& e : std::filesystem::directory_iterator(dir / "sub"))
    EXPECT_EQ(e.path().filename(), "t.h5") << "temporary left behind";
  expect_error([&] { data::write_token_ids(path, torch::full({2, 2}, int64_t{1} << 40), {}); },
               {"t.h5", "input_ids", "int32"});
  EXPECT_TRUE(load_calib(path, 32000, {}).equal(ids)) << "a failed write leaves the old file";
}

TEST(TokenFile, ReadsNumericAttributesWrittenByH5py) {
  auto attrs = data::read_attributes(kEval);
  EXPECT_EQ(attrs.at("vocab_size"), "512");
  EXPECT_EQ(attrs.at("seed"), "2");
  EXPECT_NE(attrs.at("source").find("stories260K"), std::string::npos);
}

TEST(CalibCorrupt, MissingAndNonHdf5Files) {
  auto dir = spin::test::scratch("data_corrupt_files");
  expect_error([&] { load_calib((dir / "absent.h5").string(), 512, {}); }, {"absent.h5", "no such file"});
  const std::string text = (dir / "text.h5").string();
  std::ofstream(text) << "not hdf5 at all\n";
  expect_error([&] { load_calib(text, 512, {}); }, {"text.h5", "not an HDF5 file"});
  // the first 2 KiB of a real file: a valid signature, a truncated body
  const std::string cut = (dir / "truncated.h5").string();
  {
    std::ifstream in(kEval, std::ios::binary);
    std::vector<char> head(2048);
    in.read(head.data(), head.size());
    std::ofstream(cut, std::ios::binary).write(head.data(), head.size());
  }
  expect_error([&] { load_calib(cut, 512, {}); }, {"truncated.h5"});
}

TEST(CalibCorrupt, WrongDatasetRankTypeOrEmpty) {
  auto dir = spin::test::scratch("data_corrupt_datasets");
  auto p = [&](const char* name) { return (dir / name).string(); };
  write_raw<int32_t>(p("missing.h5"), "tokens", H5::PredType::NATIVE_INT32, H5::PredType::STD_I32LE, {4, 8});
  expect_error([&] { load_calib(p("missing.h5"), 512, {}); }, {"missing.h5", "input_ids", "not found"});
  write_raw<int32_t>(p("rank1.h5"), "input_ids", H5::PredType::NATIVE_INT32, H5::PredType::STD_I32LE, {32});
  expect_error([&] { load_calib(p("rank1.h5"), 512, {}); }, {"rank1.h5", "input_ids", "rank 1"});
  write_raw<int32_t>(p("rank3.h5"), "input_ids", H5::PredType::NATIVE_INT32, H5::PredType::STD_I32LE, {2, 4, 8});
  expect_error([&] { load_calib(p("rank3.h5"), 512, {}); }, {"rank3.h5", "input_ids", "rank 3"});
  write_raw<float>(p("float.h5"), "input_ids", H5::PredType::NATIVE_FLOAT, H5::PredType::IEEE_F32LE, {4, 8});
  expect_error([&] { load_calib(p("float.h5"), 512, {}); }, {"float.h5", "input_ids", "integers", "float"});
  write_raw<int32_t>(p("empty.h5"), "input_ids", H5::PredType::NATIVE_INT32, H5::PredType::STD_I32LE, {0, 512});
  expect_error([&] { load_calib(p("empty.h5"), 512, {}); }, {"empty.h5", "input_ids", "empty"});
  // int64 on disk is accepted just like int32
  write_raw<int64_t>(p("int64.h5"), "input_ids", H5::PredType::NATIVE_INT64, H5::PredType::STD_I64LE, {4, 8});
  torch::Tensor ids = load_calib(p("int64.h5"), 512, {});
  EXPECT_TRUE(ids.equal(torch::arange(32, torch::kInt64).remainder(7).view({4, 8})));
}

TEST(CalibCorrupt, IdsOutsideVocabNameRowColAndValue) {
  auto dir = spin::test::scratch("data_corrupt_ids");
  torch::Tensor ids = torch::ones({3, 10}, torch::kInt64);
  ids[2][7] = 512;
  ids[2][9] = 900;
  const std::string big = (dir / "big.h5").string();
  data::write_token_ids(big, ids, {});
  expect_error([&] { load_calib(big, 512, {}); },
               {"big.h5", "input_ids", "token id 512", "row 2, col 7", "[0, 512)"});
  EXPECT_EQ(load_calib(big, 901, {}).sum().item<int64_t>(), 28 + 512 + 900);
  ids = torch::ones({3, 10}, torch::kInt64);
  ids[1][3] = -5;
  const std::string neg = (dir / "neg.h5").string();
  data::write_token_ids(neg, ids, {});
  expect_error([&] { load_calib(neg, 512, {}); }, {"neg.h5", "input_ids", "token id -5", "row 1, col 3"});
}
