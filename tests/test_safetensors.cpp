// safetensors: round trip, and rejection of corrupt files with one-line errors naming file and tensor.
#include <gtest/gtest.h>

#include <fstream>

#include "src/base/check.h"
#include "src/io/safetensors.h"
#include "tests/test_util.h"

using namespace spin;
namespace fs = std::filesystem;

namespace {

void write_raw(const fs::path& path, const std::string& header, size_t data_bytes, int64_t declared_len = -1) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = declared_len >= 0 ? uint64_t(declared_len) : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out << std::string(data_bytes, '\0');
}

// Expects SafetensorsFile(path) to throw a one-line spin::Error containing every fragment.
void expect_error(const fs::path& path, std::initializer_list<std::string> fragments) {
  try {
    SafetensorsFile f(path.string());
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  auto dir = test::scratch("st_roundtrip");
  std::vector<std::pair<std::string, torch::Tensor>> ts = {
      {"a", torch::randn({3, 5})},
      {"b", torch::randn({7}).to(torch::kBFloat16)},
      {"c", torch::randn({2, 2, 2}).to(torch::kFloat16)},
      {"d", torch::randn({4, 4}, torch::kFloat64)},
      {"e", torch::arange(6).view({2, 3})},
      {"empty", torch::zeros({0, 3})}};
  save_safetensors((dir / "x.safetensors").string(), ts, {{"format", "pt"}, {"note", "hello"}});
  SafetensorsFile f((dir / "x.safetensors").string());
  EXPECT_EQ(f.metadata().at("note"), "hello");
  ASSERT_EQ(f.tensors().size(), ts.size());
  for (const auto& [name, t] : ts) {
    torch::Tensor got = f.get(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(got, t)) << name;
  }
  EXPECT_FALSE(fs::exists(dir / ("x.safetensors.tmp." + std::to_string(::getpid()))));
}

TEST(Safetensors, RejectsCorruptFiles) {
  auto dir = test::scratch("st_corrupt");
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

  write_raw(dir / "short.safetensors", "", 0, 0);
  { std::ofstream(dir / "tiny.safetensors") << "abc"; }
  expect_error(dir / "tiny.safetensors", {"too short"});

  write_raw(dir / "truncated.safetensors", ok, 8);
  expect_error(dir / "truncated.safetensors", {"'w'", "exceeds the data area"});

  write_raw(dir / "header_past_end.safetensors", ok, 16, 1 << 20);
  expect_error(dir / "header_past_end.safetensors", {"header length", "past the end"});

  write_raw(dir / "huge_header.safetensors", ok, 16, int64_t(100) << 20);
  expect_error(dir / "huge_header.safetensors", {"exceeds the limit"});

  write_raw(dir / "bad_json.safetensors", "{\"w\": [", 16);
  expect_error(dir / "bad_json.safetensors", {"not valid JSON"});

  write_raw(dir / "dtype.safetensors", R"({"w":{"dtype":"Q4","shape":[2,2],"data_offsets":[0,16]}})", 16);
  expect_error(dir / "dtype.safetensors", {"'w'", "unknown dtype 'Q4'"});

  write_raw(dir / "size.safetensors", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16);
  expect_error(dir / "size.safetensors", {"'w'", "need 24"});

  write_raw(dir / "negative.safetensors", R"({"w":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})", 16);
  expect_error(dir / "negative.safetensors", {"'w'", "negative"});

  write_raw(dir / "absurd.safetensors",
            R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})", 16);
  expect_error(dir / "absurd.safetensors", {"'w'", "larger than"});

  write_raw(dir / "overlap.safetensors",
            R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
            16);
  expect_error(dir / "overlap.safetensors", {"overlap"});

  write_raw(dir / "reversed.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 16);
  expect_error(dir / "reversed.safetensors", {"'w'", "reversed"});

  expect_error(dir / "missing.safetensors", {"cannot open"});
}

}  // namespace
