// spin-calib: documents -> calibration HDF5 (dataset input_ids int32 [rows, seq_len]), tokenized by a
// tokenizer.json, a tokenizer.model or a model directory (data/tokenizer.h), plus --decode to print
// the text of a token file back.
//
// Inputs (data/text_input.h): a plain text file is one document, a JSON lines file one document per
// line (its --jsonl-field). Each document is encoded in one piece, BOS is put in front of it (by
// default when the tokenizer says so, data::Tokenizer::use_bos) and EOS after it (--eos); empty
// documents are skipped and counted. The documents are concatenated in command-line order and cut
// into rows of --seq-len tokens; the tokens after the last full row are dropped (and reported).
// --shuffle permutes the rows with --seed (data::seeded_permutation); --rows keeps the first N.
// --out is guarded (src/io/output_guard.h): it replaces only spin-calib's own output, or with
// --overwrite any file that is not an input.
#include <filesystem>
#include <iostream>

#include "data/calib_dataset.h"
#include "data/hdf5_file.h"
#include "data/text_input.h"
#include "data/tokenizer.h"
#include "src/base/check.h"
#include "src/cli/main.h"
#include "src/io/output_guard.h"

using namespace spin;
using cli::Type;
namespace fs = std::filesystem;

namespace {

// Prints the text of the first `rows` rows of `path` (all: -1) as one stream; BOS/EOS vanish.
int decode(const data::Tokenizer& tok, const std::string& path, int64_t rows) {
  data::CalibOptions o;
  o.rows = rows;
  const torch::Tensor ids = data::load_calib(path, tok.vocab_size(), o).flatten();  // [rows * T]
  std::cout << tok.decode(std::vector<int>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel()))
            << std::flush;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const cli::Program program{
      "spin-calib", "Tokenize documents into a calibration HDF5 file (dataset input_ids [rows, seq_len])",
      std::vector<cli::Option>{
          {"tokenizer", Type::text, "", "io", "tokenizer.json, tokenizer.model or a model directory"},
          {"out", Type::text, "", "io", "output HDF5 file (written atomically)"},
          {"input-format", Type::text, "", "io",
           "text (a file is one document) or jsonl (a line is one document); default: jsonl for .jsonl and "
           ".json files, text otherwise"},
          {"jsonl-field", Type::text, "text", "io", "the string field of a JSON lines line that holds the text"},
          {"seq-len", Type::integer, "512", "io", "tokens per row"},
          {"rows", Type::integer, "-1", "io", "keep the first N rows (-1: all)"},
          {"eos", Type::boolean, "false", "tokens", "put EOS after each document's tokens"},
          {"shuffle", Type::boolean, "false", "io", "permute the rows with --seed before keeping --rows"},
          {"seed", Type::integer, "0", "io", "shuffle seed"},
          {"decode", Type::text, "", "io", "print the text of the first --rows rows of this HDF5 file instead"},
          {"files", Type::list, "", "io", "text or JSON lines files"},
      } + cli::bos_options() + cli::output_options()};
  return cli::tool_main(argc, argv, program, [](const cli::Values& v) {
    SPIN_CHECK(!v.text("tokenizer").empty(), "spin-calib: --tokenizer is required (see --help)");
    const int64_t rows = v.integer("rows");
    SPIN_CHECK(rows == -1 || rows > 0, "spin-calib: --rows must be -1 or positive, got ", rows);
    const std::string out_flag = v.text("out");
    const auto files = v.list("files");
    if (!v.text("decode").empty()) {
      SPIN_CHECK(out_flag.empty() && files.empty(), "spin-calib: --decode takes no --out and no text files");
      return decode(*data::open_tokenizer(v.text("tokenizer")), v.text("decode"), rows);
    }

    // ------------------------------------------------------------------ options
    SPIN_CHECK(!out_flag.empty(), "spin-calib: --out is required (see --help)");
    SPIN_CHECK(!files.empty(), "spin-calib: no text files given (see --help)");
    const int64_t seq_len = v.integer("seq-len");
    SPIN_CHECK(seq_len > 0, "spin-calib: --seq-len must be positive, got ", seq_len);
    const std::string field = v.text("jsonl-field");
    SPIN_CHECK(!field.empty(), "spin-calib: --jsonl-field must not be empty");
    std::vector<data::InputFormat> formats;
    for (const std::string& file : files)
      formats.push_back(v.given("input-format") ? data::parse_input_format(v.text("input-format"), "--input-format")
                                                : data::input_format_of(file));
    const bool eos = v.flag("eos"), shuffle = v.flag("shuffle");
    const uint64_t seed = uint64_t(v.integer("seed"));

    OutputGuard guard("spin-calib");
    guard.add_input(v.text("tokenizer"), "--tokenizer");
    for (const std::string& file : files) guard.add_input(file, "text file");
    const std::string out = guard.add_output(out_flag, OutputKind::calib_file, "--out").string();
    guard.check(v.flag("overwrite"));

    const std::unique_ptr<data::Tokenizer> tok = data::open_tokenizer(v.text("tokenizer"));
    const bool bos = tok->use_bos(cli::bos_flag(v));
    SPIN_CHECK(!eos || tok->eos_id() >= 0, tok->path(), ": the tokenizer has no EOS (", tok->bos_eos().eos_source,
               "); drop --eos");
    std::cerr << "spin-calib: " << tok->describe() << "; BOS " << (bos ? "put" : "not put") << " in front of each document"
              << std::endl;

    // ------------------------------------------------------------------ tokenize
    std::vector<int64_t> stream;  // all documents back to back
    int64_t documents = 0, empty = 0;
    for (size_t f = 0; f < files.size(); ++f) {
      const size_t tokens_before = stream.size();
      int64_t file_empty = 0;
      const int64_t n = data::for_each_document(files[f], formats[f], field, [&](const data::Document& doc) {
        std::vector<int> ids;
        try {
          ids = tok->encode(doc.text);
        } catch (const Error& e) {
          fail(doc.where, ": ", e.what());
        }
        if (ids.empty()) {
          ++file_empty;
          return;
        }
        if (bos) stream.push_back(tok->bos_id());
        stream.insert(stream.end(), ids.begin(), ids.end());
        if (eos) stream.push_back(tok->eos_id());
      });
      documents += n;
      empty += file_empty;
      std::cerr << "spin-calib: " << files[f] << " (" << data::to_string(formats[f]) << "): " << n << " document(s), "
                << file_empty << " empty (skipped) -> " << stream.size() - tokens_before << " tokens" << std::endl;
    }
    SPIN_CHECK(documents > empty, "spin-calib: no text: all ", documents, " document(s) of the inputs are empty");

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
    std::vector<std::string> format_names;
    for (data::InputFormat f : formats) format_names.push_back(data::to_string(f));
    const std::map<std::string, std::string> attributes = {
        {"created_by", "spin-calib"},
        {"tokenizer", tok->path()},
        {"tokenizer_bytes", std::to_string(fs::file_size(tok->path()))},
        {"tokenizer_describe", tok->describe()},
        {"source", nlohmann::json(files).dump()},
        {"input_format", nlohmann::json(format_names).dump()},
        {"jsonl_field", field},
        {"documents", std::to_string(documents)},
        {"empty_documents", std::to_string(empty)},
        {"source_tokens", std::to_string(total)},
        {"dropped_tokens", std::to_string(dropped)},
        {"vocab_size", std::to_string(tok->vocab_size())},
        {"seq_len", std::to_string(seq_len)},
        {"bos", bos ? "true" : "false"},
        {"eos", eos ? "true" : "false"},
        {"shuffle", shuffle ? "true" : "false"},
        {"seed", std::to_string(seed)},
    };
    data::write_token_ids(out, ids, attributes, output_marker_json(OutputKind::calib_file, "spin-calib"));
    std::cout << "spin-calib: wrote " << out_flag << ": input_ids [" << keep << ", " << seq_len << "] int32, vocab_size "
              << tok->vocab_size() << ", from " << files.size() << " file(s), " << documents - empty << " document(s) ("
              << empty << " empty skipped), " << total << " tokens, " << (available - keep) * seq_len
              << " unused by --rows, " << dropped << " dropped after the last full row" << std::endl;
    return 0;
  });
}
