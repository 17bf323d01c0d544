// Mutation fuzzing of every input parser, in-process and seeded.
//
// Each target takes one valid file (safetensors, HDF5 token file, config.json, index.json), applies
// seeded random mutations (bits flipped, bytes overwritten with boundary values, cut, extended, ranges
// deleted or duplicated; for JSON also structural edits: values replaced by hostile ones, keys
// removed) and loads it through the real loader. Every case must either load or throw a one-line
// spin::Error naming the file or its directory. Anything else fails the test: another exception type
// (std::bad_alloc, c10::Error, nlohmann or filesystem errors), a crash (kills the binary), a hang
// (a per-case alarm aborts with the case's seed), or an absurd allocation (the address space is
// capped, except under AddressSanitizer, which checks allocations itself; peak RSS is checked).
//
// SPIN_FUZZ_SCALE=<k> multiplies every target's case count (soak runs); SPIN_FUZZ_SEED=<s> changes
// the base seed. A failure prints the target, case index and seed, which reproduce it exactly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "src/base/check.h"
#include "src/io/checkpoint.h"
#include "src/rotation/format.h"
#include "src/io/safetensors.h"
#include "tests/corpus/hostile_inputs.h"
#include "tests/test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SPIN_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPIN_FUZZ_ASAN 1
#endif
#endif

using namespace spin;
namespace fs = std::filesystem;
namespace corpus = spin::test::corpus;

namespace {

const fs::path kModel = test::asset("models/stories260K");
const fs::path kData = test::asset("data/stories260K-eval.h5");
constexpr unsigned kCaseTimeoutS = 20;
constexpr long kMaxRssMiB = 3072;

// ---- the running case is printed when it hangs (SIGALRM) or crashes ----
char g_current_case[512];

void print_case(const char* what) {
  (void)!::write(2, what, ::strlen(what));
  (void)!::write(2, g_current_case, ::strnlen(g_current_case, sizeof(g_current_case)));
  (void)!::write(2, "\n", 1);
}

void on_alarm(int) {
  print_case("\nfuzz: case timed out (hang): ");
  ::_exit(3);
}

// Prints the case, then the default action (core dump) runs. Not under ASan, which reports crashes itself.
[[maybe_unused]] void on_crash(int sig) {
  print_case("\nfuzz: case crashed: ");
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  ::sigaction(SIGALRM, &sa, nullptr);
#ifndef SPIN_FUZZ_ASAN
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_crash);
#endif
}

// Caps the address space at the current usage + headroom while alive (not under ASan, whose shadow
// memory needs terabytes of address space), so that an absurd allocation fails instead of succeeding
// lazily; it then surfaces as a non-spin::Error exception and fails the test.
class AddressSpaceCap {
 public:
  AddressSpaceCap() {
#ifndef SPIN_FUZZ_ASAN
    ::getrlimit(RLIMIT_AS, &saved_);
    std::ifstream status("/proc/self/status");
    long vm_kib = 0;
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stol(line.substr(7));
    rlimit cap = saved_;
    cap.rlim_cur = static_cast<rlim_t>(vm_kib) * 1024 + (rlim_t(8) << 30);
    ::setrlimit(RLIMIT_AS, &cap);
#endif
  }
  ~AddressSpaceCap() {
#ifndef SPIN_FUZZ_ASAN
    ::setrlimit(RLIMIT_AS, &saved_);
#endif
  }

 private:
  rlimit saved_{};
};

long max_rss_mib() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::stoll(v) : fallback;
}

// ---- byte-level mutations ----
const uint8_t kBoundaryBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '0', '9', '-', '"', '{', '}', '[', ']', ',', ':', 'e', '.'};
const uint64_t kBoundaryU64[] = {0, 1, 7, 8, 255, 4096, 0x7fffffffull, 0xffffffffull, 1ull << 40,
                                 0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull};

// One to three mutations; positions fall in [0, hot) with probability 0.8 (the metadata the parser
// reads), anywhere otherwise. `what` describes the mutations for failure messages.
std::string mutate_bytes(std::string s, size_t hot, std::mt19937_64& g, std::string& what) {
  auto pick = [&](uint64_t n) { return n == 0 ? uint64_t(0) : g() % n; };
  auto pos = [&]() -> size_t {
    if (s.empty()) return 0;
    const size_t range = (pick(5) < 4 && hot > 0) ? std::min(hot, s.size()) : s.size();
    return pick(range);
  };
  const int n = 1 + int(pick(3));
  for (int k = 0; k < n; ++k) {
    const size_t p = pos();
    switch (pick(7)) {
      case 0:  // flip 1-4 bits
        for (int b = 0, nb = 1 + int(pick(4)); b < nb && !s.empty(); ++b) s[pos()] ^= char(1u << pick(8));
        what += cat(" flip@", p);
        break;
      case 1:  // boundary bytes
        for (size_t i = p, e = std::min(s.size(), p + 1 + pick(4)); i < e; ++i)
          s[i] = char(kBoundaryBytes[pick(sizeof(kBoundaryBytes))]);
        what += cat(" bytes@", p);
        break;
      case 2: {  // a boundary 64-bit little-endian integer (lengths, offsets, HDF5 addresses and sizes)
        const std::string v = corpus::le64(kBoundaryU64[pick(std::size(kBoundaryU64))]);
        for (size_t i = 0; i < 8 && p + i < s.size(); ++i) s[p + i] = v[i];
        what += cat(" u64@", p);
        break;
      }
      case 3:  // cut
        s.resize(p);
        what += cat(" cut@", p);
        break;
      case 4: {  // extend with random bytes
        const size_t len = 1 + pick(4096);
        for (size_t i = 0; i < len; ++i) s.push_back(char(g()));
        what += cat(" extend+", len);
        break;
      }
      case 5: {  // delete a range
        const size_t len = std::min(s.size() - std::min(p, s.size()), size_t(1 + pick(64)));
        s.erase(std::min(p, s.size()), len);
        what += cat(" delete@", p, "+", len);
        break;
      }
      default: {  // duplicate a range
        const size_t len = std::min(s.size() - std::min(p, s.size()), size_t(1 + pick(64)));
        s.insert(std::min(p, s.size()), s.substr(std::min(p, s.size()), len));
        what += cat(" dup@", p, "+", len);
        break;
      }
    }
  }
  return s;
}

// ---- structural JSON mutations ----
nlohmann::json hostile_value(std::mt19937_64& g) {
  switch (g() % 18) {
    case 0: return 0;
    case 1: return -1;
    case 2: return 1;
    case 3: return 3;
    case 4: return 7;
    case 5: return int64_t(1) << 31;
    case 6: return int64_t(1) << 40;
    case 7: return int64_t(1) << 62;
    case 8: return ~uint64_t(0);
    case 9: return 1e308;
    case 10: return -0.5;
    case 11: return "";
    case 12: return "r3";
    case 13: return nullptr;
    case 14: return true;
    case 15: return nlohmann::json::array();
    case 16: return nlohmann::json::object();
    default: return nlohmann::json::array({nlohmann::json::object({{"name", "r4"}, {"size", -8}})});
  }
}

// Replaces a random node (or removes a key) 1-3 times.
std::string mutate_json(const nlohmann::json& original, std::mt19937_64& g, std::string& what) {
  nlohmann::json j = original;
  const int n = 1 + int(g() % 3);
  for (int k = 0; k < n; ++k) {
    const nlohmann::json flat = j.flatten();  // "/a/b/0" -> leaf
    if (flat.empty() || !flat.is_object()) break;
    auto it = flat.begin();
    std::advance(it, g() % flat.size());
    nlohmann::json::json_pointer ptr(it.key());
    if (g() % 3 == 0) ptr = ptr.parent_pointer();  // whole arrays and objects too
    if (ptr.empty()) continue;
    if (g() % 4 == 0 && j[ptr.parent_pointer()].is_object()) {
      j[ptr.parent_pointer()].erase(ptr.back());
      what += " erase " + ptr.to_string();
    } else {
      j[ptr] = hostile_value(g);
      what += " set " + ptr.to_string() + "=" + j[ptr].dump();
    }
  }
  return j.dump();
}

// ---- the driver ----
struct Target {
  std::string name;
  fs::path file;                // mutated in place
  std::string original;         // its valid bytes
  size_t hot = 0;               // byte mutations favour [0, hot)
  bool json = false;            // also structural JSON mutations (every other case)
  int64_t cases = 0;
  fs::path names;               // a spin::Error must contain this path
  std::function<void()> load;
};

struct Tally {
  int64_t loaded = 0, rejected = 0;
};

Tally run_target(const Target& t) {
  const uint64_t base = static_cast<uint64_t>(env_int("SPIN_FUZZ_SEED", 20240601));
  const int64_t n = t.cases * env_int("SPIN_FUZZ_SCALE", 1);
  const nlohmann::json parsed = t.json ? nlohmann::json::parse(t.original) : nlohmann::json();
  install_handlers();
  AddressSpaceCap cap;
  Tally tally;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t seed = base ^ (std::hash<std::string>{}(t.name) + uint64_t(i) * 0x9e3779b97f4a7c15ull);
    std::mt19937_64 g(seed);
    std::string what;
    const std::string bytes = (t.json && i % 2 == 1) ? mutate_json(parsed, g, what) : mutate_bytes(t.original, t.hot, g, what);
    const std::string label = cat(t.name, " case ", i, " seed ", seed, ":", what);
    std::snprintf(g_current_case, sizeof(g_current_case), "%s", label.c_str());
    corpus::write_bytes(t.file, bytes);
    ::alarm(kCaseTimeoutS);
    try {
      t.load();
      ++tally.loaded;
    } catch (const Error& e) {
      ++tally.rejected;
      const std::string msg = e.what();
      if (msg.find('\n') != std::string::npos || msg.find(t.names.string()) == std::string::npos)
        ADD_FAILURE() << label << "\n  error is not one line naming " << t.names << ": " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << label << "\n  threw a non-spin::Error: " << e.what();
    }
    ::alarm(0);
  }
  corpus::write_bytes(t.file, t.original);
  EXPECT_NO_THROW(t.load()) << t.name << ": the unmutated input must load";
  EXPECT_LT(max_rss_mib(), kMaxRssMiB) << t.name;
  std::printf("[fuzz] %-24s %6lld cases: %6lld loaded, %6lld rejected with spin::Error\n", t.name.c_str(),
              (long long)n, (long long)tally.loaded, (long long)tally.rejected);
  return tally;
}

size_t safetensors_header_end(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return 8 + n;
}

// Both outcomes must occur: mutations that every loader rejects (or none does) test nothing.
void expect_mixed(const Tally& t, const std::string& name) {
  EXPECT_GT(t.loaded, 0) << name;
  EXPECT_GT(t.rejected, 0) << name;
}

TEST(Fuzz, SafetensorsReader) {
  const fs::path dir = test::scratch("fuzz_safetensors");
  const fs::path path = dir / "small.safetensors";
  save_safetensors(path.string(),
                   {{"f32", torch::randn({3, 5})},
                    {"bf16", torch::randn({7}).to(torch::kBFloat16)},
                    {"f16", torch::randn({2, 2, 2}).to(torch::kFloat16)},
                    {"f64", torch::randn({4}, torch::kFloat64)},
                    {"i64", torch::arange(6).view({2, 3})},
                    {"u8", torch::ones({5}, torch::kUInt8)},
                    {"scalar", torch::tensor(3.0f)},
                    {"empty", torch::zeros({0, 3})}},
                   {{"format", "pt"}});
  Target t{"safetensors-small", path, corpus::read_bytes(path), 0, false, 4000, path, {}};
  t.hot = safetensors_header_end(t.original);
  t.load = [&] {
    SafetensorsFile f(path.string());
    for (const auto& info : f.tensors()) f.get(info.name);
  };
  expect_mixed(run_target(t), t.name);
}

TEST(Fuzz, CheckpointWeights) {
  const fs::path dir = test::scratch("fuzz_checkpoint") / "model";
  corpus::copy_model(kModel, dir);
  const fs::path file = dir / "model.safetensors";
  Target t{"checkpoint-safetensors", file, corpus::read_bytes(file), 0, false, 400, dir, [&] { load_checkpoint(dir); }};
  t.hot = safetensors_header_end(t.original);
  expect_mixed(run_target(t), t.name);
}

TEST(Fuzz, TokenFiles) {
  const fs::path dir = test::scratch("fuzz_hdf5");
  const fs::path small = dir / "small.h5";
  data::write_token_ids(small.string(), torch::randint(0, 512, {4, 16}, torch::kInt32),
                        {{"tokenizer", "llama2"}, {"vocab_size", "512"}});
  // What the tools read. Not data::read_attributes: libhdf5 1.10.8 itself segfaults (memcpy in H5HG_read)
  // on a corrupted variable-length string attribute (e.g. this target's case 37), see docs/RELIABILITY.md.
  auto loader = [](const fs::path& p) { return [p] { data::load_calib(p.string(), 512, {}); }; };
  Target s{"hdf5-small", small, corpus::read_bytes(small), 0, false, 1500, small, loader(small)};
  s.hot = s.original.size();
  expect_mixed(run_target(s), s.name);

  const fs::path eval = dir / "eval.h5";
  fs::copy_file(kData, eval);
  fs::permissions(eval, fs::perms::owner_read | fs::perms::owner_write);
  Target e{"hdf5-eval", eval, corpus::read_bytes(eval), 8192, false, 300, eval, loader(eval)};
  expect_mixed(run_target(e), e.name);
}

TEST(Fuzz, ConfigJson) {
  const fs::path dir = test::scratch("fuzz_config") / "model";
  corpus::copy_model(kModel, dir);
  const fs::path file = dir / "config.json";
  Target t{"config-json", file, corpus::read_bytes(file), 0, true, 1200, dir, [&] { load_checkpoint(dir); }};
  t.hot = t.original.size();
  expect_mixed(run_target(t), t.name);
}

// config.json of a rotated checkpoint: its "rotation" section too (src/rotation/format.cpp).
TEST(Fuzz, RotatedConfigJson) {
  const fs::path dir = test::scratch("fuzz_rotated_config") / "model";
  corpus::make_rotated(kModel, dir);
  const fs::path file = dir / "config.json";
  Target t{"rotated-config-json", file, corpus::read_bytes(file), 0, true, 600, dir, [&] { load_model(dir); }};
  t.hot = t.original.size();
  expect_mixed(run_target(t), t.name);
}

TEST(Fuzz, ShardIndexJson) {
  const fs::path dir = test::scratch("fuzz_index") / "model";
  corpus::make_sharded(kModel, dir);
  const fs::path file = dir / "model.safetensors.index.json";
  Target t{"index-json", file, corpus::read_bytes(file), 0, true, 600, dir, [&] { load_checkpoint(dir); }};
  t.hot = t.original.size();
  expect_mixed(run_target(t), t.name);
}

TEST(Fuzz, RotationsFile) {
  const fs::path dir = test::scratch("fuzz_rotations") / "model";
  corpus::make_rotated(kModel, dir);
  const fs::path file = dir / "rotations.safetensors";
  Target t{"rotations-safetensors", file, corpus::read_bytes(file), 0, false, 600, dir, [&] { load_model(dir); }};
  t.hot = safetensors_header_end(t.original);
  expect_mixed(run_target(t), t.name);
}

}  // namespace
