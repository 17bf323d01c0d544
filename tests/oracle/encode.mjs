// Reference token ids for tests/test_data_tokenizer_json.cpp from Hugging Face's own JavaScript
// implementation of tokenizers (@huggingface/tokenizers, "Tokenizers.js", pinned in package-lock.json).
//
//   node encode.mjs REQUEST.json > RESPONSE.json
//
// REQUEST:  {"tokenizer": "path/to/tokenizer.json",
//            "texts": ["...", ...],           strings to encode
//            "files": ["path", ...],          whole files to encode (read as UTF-8)
//            "tokens": ["<|begin_of_text|>"]} token strings to look up
// RESPONSE: {"vocab_size": N,                 max id + 1 over the vocabulary and the added tokens
//            "texts": [{"ids": [...], "decoded": "..."}, ...],
//            "files": [{"ids": [...], "decoded_equal": true|false}, ...],
//            "tokens": {"<|begin_of_text|>": 128000 | null}}
//
// encode() runs without the post-processor (add_special_tokens: false): the C++ tokenizer never adds
// BOS/EOS itself. decode() skips special tokens and does no clean-up of tokenization spaces, which is
// what the C++ decode() does. The Tokenizer gets an empty tokenizer_config: everything that shapes
// the ids is in tokenizer.json.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const tokenizer = new Tokenizer(JSON.parse(readFileSync(request.tokenizer, "utf8")), {});
const encode = (text) => tokenizer.encode(text, { add_special_tokens: false }).ids;
const decode = (ids) =>
  ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });

const response = {
  vocab_size: tokenizer.model.vocab.length,
  texts: (request.texts ?? []).map((text) => {
    const ids = encode(text);
    return { ids, decoded: decode(ids) };
  }),
  files: (request.files ?? []).map((path) => {
    const text = readFileSync(path, "utf8");
    const ids = encode(text);
    return { ids, decoded_equal: decode(ids) === text };
  }),
  tokens: Object.fromEntries((request.tokens ?? []).map((t) => [t, tokenizer.token_to_id(t) ?? null])),
};
process.stdout.write(JSON.stringify(response));
