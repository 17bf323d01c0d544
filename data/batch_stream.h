// Micro-batches of calibration rows in a seeded order, reshuffled every epoch. Micro-batch j is a pure
// function of (seed, j), so a resumed run sees the same data, and one stream of indices can select the
// same rows from several tensors (token ids, or one layer's float and quantized inputs).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace spin::data {

class BatchStream {
 public:
  // `rows` [N, ...]: what batch() selects from; only its first dimension matters to indices().
  BatchStream(torch::Tensor rows, int64_t batch_size, uint64_t seed);

  int64_t seq_len() const { return rows_.size(1); }
  const torch::Tensor& rows() const { return rows_; }

  // Row numbers of micro-batch j [batch_size] int64.
  torch::Tensor indices(int64_t j);
  // rows[indices(j)] [batch_size, ...].
  torch::Tensor batch(int64_t j) { return rows_.index_select(0, indices(j).to(rows_.device())); }

 private:
  torch::Tensor rows_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace spin::data
