// Calibration token rows from an HDF5 token file (dataset `input_ids` [N, T]): validation against
// the vocabulary, first-n rows, cut or pack to a sequence length, seeded shuffle, rank sharding.
//
// load_calib applies, in this order:
//   1. read all ids [N, T]; every id must be in [0, vocab_size)
//   2. rows of length S = seq_len (-1: S = T):
//        pack = false: each stored row cut to its first S tokens (S <= T)       -> [N, S]
//        pack = true:  all rows concatenated (row-major) and cut into rows of S,
//                      the last N*T mod S tokens dropped                          -> [N*T/S, S]
//   3. shuffle = true: rows permuted by seeded_permutation(rows, seed)
//   4. the first `rows` rows kept (-1: all); `rows` counts over all ranks together
//   5. sharding: rank r of world_size W keeps rows r, r+W, r+2W, ... of step 4's result,
//      so the W shards partition the selection and every rank computes the same permutation.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace spin::data {

struct CalibOptions {
  int64_t rows = -1;        // rows taken in total over all ranks; -1: all
  int64_t seq_len = -1;     // tokens per row; -1: T as stored
  bool pack = false;        // concatenate the stored rows, then cut into seq_len rows
  bool shuffle = false;     // permute the rows (seeded) before taking `rows`
  uint64_t seed = 0;        // shuffle seed; the same on every rank
  int64_t rank = 0;         // this process's shard, 0 <= rank < world_size
  int64_t world_size = 1;   // number of shards
};

// Loads dataset `input_ids` (int32 or int64, [N, T]) of `path` and applies `opts` (see the file
// comment). Returns int64 [n, S] on CPU, contiguous. Any bad input or option is a spin::Error
// naming the file and the dataset or option.
torch::Tensor load_calib(const std::string& path, int64_t vocab_size, const CalibOptions& opts);

// Steps 3-5 above on rows [R, S] (opts.seq_len and opts.pack are not used here): seeded shuffle,
// the first opts.rows rows, the opts.rank shard. `source` starts every error message (a file name).
// Returns [n, S], contiguous, on rows' device.
torch::Tensor select_rows(const torch::Tensor& rows, const CalibOptions& opts, const std::string& source);

// A permutation of 0..n-1: Fisher-Yates driven by std::mt19937_64(seed) with rejection sampling,
// hence identical on every platform, compiler and rank.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

}  // namespace spin::data
