// Tokenizers.js speed on one file, for the benchmark in tests/test_data_tokenizer_json.cpp
// (TokenizerJsonBenchmark.DISABLED_SpeedAgainstTokenizersJs, see docs/BENCHMARKS.md):
//   node bench.mjs TOKENIZER.json TEXT_FILE REPS
// prints {"tokens": N, "load_s": s, "cold_s": s, "warm_s": s}: seconds to build the Tokenizer from
// the parsed-on-load file, to encode the text once (first call: empty BPE cache), and the mean of
// REPS further encodes (warm cache).
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [path, textPath, repsArg] = process.argv.slice(2);
const reps = Number(repsArg ?? 5);
const text = readFileSync(textPath, "utf8");
const now = () => Number(process.hrtime.bigint()) / 1e9;

let t0 = now();
const tokenizer = new Tokenizer(JSON.parse(readFileSync(path, "utf8")), {});
const load_s = now() - t0;
t0 = now();
const tokens = tokenizer.encode(text, { add_special_tokens: false }).ids.length;
const cold_s = now() - t0;
t0 = now();
for (let i = 0; i < reps; ++i) tokenizer.encode(text, { add_special_tokens: false });
const warm_s = (now() - t0) / reps;
process.stdout.write(JSON.stringify({ tokens, load_s, cold_s, warm_s }) + "\n");
