#include "data/calib_dataset.h"

#include <numeric>
#include <random>

#include "data/hdf5_file.h"
#include "src/base/check.h"

namespace spin::data {
namespace {

// Uniform integer in [0, bound) from g, without modulo bias (bound > 0).
uint64_t uniform_below(std::mt19937_64& g, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t x = g();
    if (x >= threshold) return x % bound;
  }
}

void check_options(const std::string& path, int64_t vocab_size, const CalibOptions& o) {
  SPIN_CHECK(vocab_size > 0, path, ": vocab_size must be positive, got ", vocab_size);
  SPIN_CHECK(o.seq_len == -1 || o.seq_len > 0, path, ": option seq_len must be -1 (as stored) or positive, got ",
             o.seq_len);
}

// Throws naming the first (row-major) id outside [0, vocab_size). ids: [N, T] int64.
void check_vocab(const std::string& path, const torch::Tensor& ids, int64_t vocab_size) {
  const torch::Tensor bad = (ids < 0).logical_or_(ids >= vocab_size).flatten();
  if (!bad.any().item<bool>()) return;
  const int64_t flat = bad.nonzero()[0][0].item<int64_t>();
  const int64_t T = ids.size(1);
  fail(path, ": dataset '", kTokenDataset, "': token id ", ids.flatten()[flat].item<int64_t>(), " at row ",
       flat / T, ", col ", flat % T, " outside [0, ", vocab_size,
       ") HINT: was the file tokenized for a model with a different vocab_size?");
}

}  // namespace

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 g(seed);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(perm[i], perm[uniform_below(g, static_cast<uint64_t>(i) + 1)]);
  return perm;
}

torch::Tensor load_calib(const std::string& path, int64_t vocab_size, const CalibOptions& opts) {
  check_options(path, vocab_size, opts);
  const torch::Tensor stored = read_token_ids(path);  // [N, T]
  check_vocab(path, stored, vocab_size);
  const int64_t N = stored.size(0), T = stored.size(1);
  const int64_t S = opts.seq_len == -1 ? T : opts.seq_len;

  torch::Tensor rows;  // [R, S]
  if (opts.pack) {
    SPIN_CHECK(N * T >= S, path, ": dataset '", kTokenDataset, "' holds ", N * T,
               " tokens, fewer than one packed row of seq_len ", S);
    rows = stored.flatten().narrow(0, 0, (N * T / S) * S).view({-1, S});
  } else {
    SPIN_CHECK(S <= T, path, ": option seq_len ", S, " exceeds the stored row length ", T, " of dataset '",
               kTokenDataset, "' HINT: use pack to concatenate rows");
    rows = stored.narrow(1, 0, S);
  }
  return select_rows(rows, opts, cat(path, ": dataset '", kTokenDataset, "'"));
}

torch::Tensor select_rows(const torch::Tensor& rows, const CalibOptions& opts, const std::string& source) {
  SPIN_CHECK(opts.rows == -1 || opts.rows > 0, source, ": option rows must be -1 (all) or positive, got ",
             opts.rows);
  SPIN_CHECK(opts.world_size >= 1, source, ": option world_size must be >= 1, got ", opts.world_size);
  SPIN_CHECK(opts.rank >= 0 && opts.rank < opts.world_size, source, ": option rank ", opts.rank, " outside [0, ",
             opts.world_size, ")");
  const int64_t R = rows.size(0);
  std::vector<int64_t> order(static_cast<size_t>(R));
  if (opts.shuffle) {
    order = seeded_permutation(R, opts.seed);
  } else {
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  const int64_t take = opts.rows == -1 ? R : opts.rows;
  SPIN_CHECK(take <= R, source, ": option rows ", take, " exceeds the ", R, " rows of length ", rows.size(1),
             " available");

  std::vector<int64_t> shard;
  for (int64_t i = opts.rank; i < take; i += opts.world_size) shard.push_back(order[i]);
  SPIN_CHECK(!shard.empty(), source, ": rank ", opts.rank, " of world_size ", opts.world_size,
             " gets none of the ", take, " rows");
  const torch::Tensor index = torch::tensor(shard, torch::TensorOptions(torch::kInt64).device(rows.device()));
  return rows.index_select(0, index).contiguous();
}

}  // namespace spin::data
