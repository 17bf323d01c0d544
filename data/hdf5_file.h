// Token-id HDF5 files: read and write the 2-D integer dataset `input_ids` [N, T] and its string
// attributes (provenance: tokenizer, source, seed, vocab_size, ...).
//
// Every HDF5 failure (missing file, not HDF5, truncated, missing dataset, wrong rank or dtype) is
// turned into a one-line spin::Error naming the file and the dataset; HDF5's own error-stack
// printing to stderr is switched off.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

namespace spin::data {

// The dataset name every token file uses.
inline const std::string kTokenDataset = "input_ids";

// Reads dataset `dataset` of the HDF5 file `path`: any integer dtype (int32 and int64 in
// practice), rank 2, non-empty. Returns int64 [N, T] on CPU. Float ids are rejected.
torch::Tensor read_token_ids(const std::string& path, const std::string& dataset = kTokenDataset);

// The size of the user block that holds an output marker (the smallest HDF5 allows).
constexpr size_t kOutputMarkerBytes = 512;

// Writes `ids` (integer tensor [N, T], N, T > 0, every value in int32 range) as dataset
// `input_ids` (int32, little endian) of a new HDF5 file `path`, with `attributes` attached to the
// dataset as variable-length UTF-8 strings. A non-empty `output_marker` (text without NUL, at most
// 400 bytes; see src/io/output_guard.h) is stored with the file's size in its HDF5 user block, the
// kOutputMarkerBytes before the superblock that HDF5 readers skip. Atomic: written to
// "<path>.tmp.<pid>", fsync'ed and renamed over `path`; on failure the temporary is removed and
// `path` is untouched.
void write_token_ids(const std::string& path, const torch::Tensor& ids,
                     const std::map<std::string, std::string>& attributes, const std::string& output_marker = "");

// The output marker of `path` when the file starts with a kOutputMarkerBytes user block written by
// write_token_ids, followed by the HDF5 signature, and still has the size recorded there (a file
// cut short or extended in place since is no longer the writer's); otherwise "". Plain
// file reads, no libhdf5, never throws: the guard reads it from whatever file lies at an output
// path, and libhdf5 1.10.8 reads out of bounds when it decodes the attribute messages of a
// corrupt file (H5Aexists; found under ASan while fuzzing an attribute that held the marker).
std::string read_output_marker(const std::string& path);

// The attributes of dataset `input_ids` of `path`. String attributes are returned as stored;
// numeric ones (as h5py writes them) are formatted as decimal text, arrays joined with ','.
// For trusted files only: libhdf5 1.10.8 segfaults in H5HG_read on a corrupted variable-length
// string (found by tests/test_reliability_fuzz.cpp) and overflows a heap buffer decoding corrupt
// attribute messages (H5Aexists); no tool calls this on user input.
std::map<std::string, std::string> read_attributes(const std::string& path);

}  // namespace spin::data
