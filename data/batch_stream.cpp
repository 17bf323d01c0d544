#include "data/batch_stream.h"

#include "data/calib_dataset.h"

namespace spin::data {

BatchStream::BatchStream(torch::Tensor rows, int64_t batch_size, uint64_t seed)
    : rows_(std::move(rows)), batch_size_(batch_size), seed_(seed) {}

torch::Tensor BatchStream::indices(int64_t j) {
  const int64_t n = rows_.size(0);
  std::vector<int64_t> idx;
  for (int64_t p = j * batch_size_; p < (j + 1) * batch_size_; ++p) {
    const int64_t epoch = p / n;
    if (epoch != epoch_) {
      perm_ = seeded_permutation(n, seed_ + 1000003ull * epoch);
      epoch_ = epoch;
    }
    idx.push_back(perm_[p % n]);
  }
  return torch::tensor(idx);
}

}  // namespace spin::data
