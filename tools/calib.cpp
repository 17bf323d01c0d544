// spin-calib: text files -> calibration HDF5 (dataset input_ids int32 [rows, seq_len]) with a
// SentencePiece BPE tokenizer.model (data/sentencepiece_bpe.h), plus --decode to print the text
// of a token file back.
//
// Each text file is one document: its whole contents are encoded in one piece, BOS is put in
// front of it (--bos, the default) and EOS after it (--eos). The documents are concatenated in
// command-line order and cut into rows of --seq-len tokens; the tokens after the last full row are
// dropped (and reported). --shuffle permutes the rows with --seed (data::seeded_permutation);
// --rows keeps the first N of them.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "data/sentencepiece_bpe.h"
#include "src/base/check.h"
#include "src/cli/main.h"

using namespace spin;
using cli::Type;
namespace fs = std::filesystem;

namespace {

data::SentencePieceBpe load_tokenizer(const std::string& path) {
  SPIN_CHECK(fs::is_regular_file(path), "--tokenizer ", path, ": no such file");
  return data::SentencePieceBpe(path);
}

std::string read_text(const std::string& path) {
  SPIN_CHECK(fs::is_regular_file(path), path, ": no such text file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  SPIN_CHECK(in.good() || in.eof(), path, ": read failed");
  return text.str();
}

// Prints the text of the first `rows` rows of `path` (all: -1) as one stream; BOS/EOS vanish.
int decode(const data::SentencePieceBpe& sp, const std::string& path, int64_t rows) {
  data::CalibOptions o;
  o.rows = rows;
  const torch::Tensor ids = data::load_calib(path, sp.vocab_size(), o).flatten();  // [rows * T]
  std::cout << sp.decode(std::vector<int>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel()))
            << std::flush;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-calib", "Tokenize text files into a calibration HDF5 file (dataset input_ids [rows, seq_len])",
      std::vector<cli::Option>{
          {"tokenizer", Type::text, "", "io", "SentencePiece tokenizer.model"},
          {"out", Type::text, "", "io", "output HDF5 file"},
          {"seq-len", Type::integer, "512", "io", "tokens per row"},
          {"rows", Type::integer, "-1", "io", "keep the first N rows (-1: all)"},
          {"bos", Type::boolean, "true", "io", "put BOS before each file's tokens (the default)"},
          {"no-bos", Type::boolean, "false", "io", "no BOS"},
          {"eos", Type::boolean, "false", "io", "put EOS after each file's tokens"},
          {"shuffle", Type::boolean, "false", "io", "permute the rows with --seed before keeping --rows"},
          {"seed", Type::integer, "0", "io", "shuffle seed"},
          {"decode", Type::text, "", "io", "print the text of the first --rows rows of this HDF5 file instead"},
          {"files", Type::list, "", "io", "text files"},
      }};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    SPIN_CHECK(!v.text("tokenizer").empty(), "spin-calib: --tokenizer is required (see --help)");
    const int64_t rows = v.integer("rows");
    SPIN_CHECK(rows == -1 || rows > 0, "spin-calib: --rows must be -1 or positive, got ", rows);
    const std::string tokenizer = v.text("tokenizer");
    const data::SentencePieceBpe sp = load_tokenizer(tokenizer);
    const std::string out = v.text("out");
    const auto files = v.list("files");
    if (!v.text("decode").empty()) {
      SPIN_CHECK(out.empty() && files.empty(), "spin-calib: --decode takes no --out and no text files");
      return decode(sp, v.text("decode"), rows);
    }

    // ------------------------------------------------------------------ options
    SPIN_CHECK(!out.empty(), "spin-calib: --out is required (see --help)");
    SPIN_CHECK(!files.empty(), "spin-calib: no text files given (see --help)");
    SPIN_CHECK(!(v.given("bos") && v.flag("bos") && v.flag("no-bos")), "spin-calib: --bos and --no-bos contradict each other");
    const int64_t seq_len = v.integer("seq-len");
    SPIN_CHECK(seq_len > 0, "spin-calib: --seq-len must be positive, got ", seq_len);
    const bool bos = v.flag("bos") && !v.flag("no-bos"), eos = v.flag("eos"), shuffle = v.flag("shuffle");
    const uint64_t seed = uint64_t(v.integer("seed"));
    SPIN_CHECK(!bos || sp.bos_id() >= 0, "--tokenizer ", tokenizer, ": has no BOS piece; use --no-bos");
    SPIN_CHECK(!eos || sp.eos_id() >= 0, "--tokenizer ", tokenizer, ": has no EOS piece; drop --eos");

    // ------------------------------------------------------------------ tokenize
    std::vector<int64_t> stream;  // all documents back to back
    for (const std::string& file : files) {
      const std::string text = read_text(file);
      SPIN_CHECK(!text.empty(), file, ": empty text");
      const std::vector<int> ids = sp.encode(text);
      SPIN_CHECK(!ids.empty(), file, ": no tokens (whitespace only?)");
      if (bos) stream.push_back(sp.bos_id());
      stream.insert(stream.end(), ids.begin(), ids.end());
      if (eos) stream.push_back(sp.eos_id());
      std::cerr << "spin-calib: " << file << ": " << text.size() << " bytes -> " << ids.size() << " tokens" << std::endl;
    }

    // ------------------------------------------------------------------ pack, shuffle, select
    const int64_t total = static_cast<int64_t>(stream.size());
    const int64_t available = total / seq_len;
    SPIN_CHECK(available > 0, "spin-calib: the text gives ", total, " tokens, fewer than one row of --seq-len ",
               seq_len);
    data::CalibOptions select;
    select.rows = rows;
    select.shuffle = shuffle;
    select.seed = seed;
    const torch::Tensor packed =
        torch::from_blob(stream.data(), {available, seq_len}, torch::kInt64);  // [available, seq_len]
    const torch::Tensor ids = data::select_rows(packed, select, "spin-calib: text");  // [keep, seq_len]
    const int64_t keep = ids.size(0);

    // ------------------------------------------------------------------ write
    const int64_t dropped = total - available * seq_len;
    const std::map<std::string, std::string> attributes = {
        {"created_by", "spin-calib"},
        {"tokenizer", tokenizer},
        {"tokenizer_bytes", std::to_string(fs::file_size(tokenizer))},
        {"source", nlohmann::json(files).dump()},
        {"source_tokens", std::to_string(total)},
        {"dropped_tokens", std::to_string(dropped)},
        {"vocab_size", std::to_string(sp.vocab_size())},
        {"seq_len", std::to_string(seq_len)},
        {"bos", bos ? "true" : "false"},
        {"eos", eos ? "true" : "false"},
        {"shuffle", shuffle ? "true" : "false"},
        {"seed", std::to_string(seed)},
    };
    data::write_token_ids(out, ids, attributes);
    std::cout << "spin-calib: wrote " << out << ": input_ids [" << keep << ", " << seq_len << "] int32, vocab_size "
              << sp.vocab_size() << ", from " << files.size() << " file(s), " << total << " tokens, "
              << (available - keep) * seq_len << " unused by --rows, " << dropped << " dropped after the last full row"
              << std::endl;
    return 0;
  });
}
