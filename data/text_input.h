// Documents to tokenize, read from plain text files and JSON lines files (spin-calib's inputs).
//
//   text:  the whole file is one document, as its bytes.
//   jsonl: every line is one document: a JSON object whose string field `field` is the text, e.g.
//          {"text": "Once upon a time...", "id": 7}. Lines end at '\n' (a '\r' before it belongs to
//          the JSON's trailing whitespace); a blank line is an empty document. A line that is not
//          JSON, not an object, lacks the field or holds a non-string there is a spin::Error naming
//          "FILE:LINE" and the field.
// Documents are handed over one at a time, so a large JSON lines file is never held in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace spin::data {

enum class InputFormat { text, jsonl };

// "text" / "jsonl", and back (an unknown name is a spin::Error naming `what`, e.g. "--input-format").
const char* to_string(InputFormat format);
InputFormat parse_input_format(const std::string& name, const std::string& what);

// The format a file's name suggests: jsonl for ".jsonl" and ".json", text otherwise.
InputFormat input_format_of(const std::string& path);

struct Document {
  std::string text;
  std::string where;  // "FILE" (text) or "FILE:LINE" (jsonl, lines counted from 1): for messages
};

// Calls `each` with every document of `path` in file order; `field` is the JSON lines field.
// Returns the number of documents. A missing or unreadable file is a spin::Error naming it.
int64_t for_each_document(const std::string& path, InputFormat format, const std::string& field,
                          const std::function<void(const Document&)>& each);

}  // namespace spin::data
