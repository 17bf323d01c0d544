#include "data/text_input.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/base/json_input.h"
#include "src/base/names.h"

namespace spin::data {
namespace {

namespace fs = std::filesystem;

const std::pair<const char*, InputFormat> kInputFormats[] = {{"text", InputFormat::text},
                                                             {"jsonl", InputFormat::jsonl}};

std::ifstream open_input(const std::string& path) {
  SPIN_CHECK(fs::is_regular_file(path), path, ": no such text file");
  std::ifstream in(path, std::ios::binary);
  SPIN_CHECK(in, path, ": cannot open");
  return in;
}

bool blank(const std::string& line) { return line.find_first_not_of(" \t\r") == std::string::npos; }

// The text of one JSON lines line; `where` is "FILE:LINE".
std::string jsonl_text(const std::string& line, const std::string& field, const std::string& where) {
  const nlohmann::json doc = parse_untrusted_json(line.begin(), line.end(), where);
  SPIN_CHECK(doc.is_object(), where, ": a JSON lines line must be an object with a string field ", json_quoted(field),
             ", not ", doc.type_name());
  const auto it = doc.find(field);
  SPIN_CHECK(it != doc.end(), where, ": no field ", json_quoted(field), " (--jsonl-field)");
  SPIN_CHECK(it->is_string(), where, ": field ", json_quoted(field), " must be a string, not ", it->type_name());
  return it->get<std::string>();
}

}  // namespace

const char* to_string(InputFormat format) { return name_of(kInputFormats, format); }

InputFormat parse_input_format(const std::string& name, const std::string& what) {
  return from_name(kInputFormats, name, what, "input format");
}

InputFormat input_format_of(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".json" ? InputFormat::jsonl : InputFormat::text;
}

int64_t for_each_document(const std::string& path, InputFormat format, const std::string& field,
                          const std::function<void(const Document&)>& each) {
  std::ifstream in = open_input(path);
  if (format == InputFormat::text) {
    std::ostringstream text;
    text << in.rdbuf();
    SPIN_CHECK(!in.bad(), path, ": read failed");
    each({text.str(), path});
    return 1;
  }
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    const std::string where = cat(path, ":", ++line_no);
    each({blank(line) ? std::string() : jsonl_text(line, field, where), where});
  }
  SPIN_CHECK(!in.bad(), path, ": read failed after line ", line_no);
  return line_no;
}

}  // namespace spin::data
