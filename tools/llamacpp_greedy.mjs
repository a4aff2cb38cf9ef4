// tools/llamacpp_greedy.mjs — llama.cpp's greedy continuation of prompts,
// through node-llama-cpp's prebuilt llama.cpp (npm; not a judgeq
// dependency). Used by tools/llamacpp_compare.sh.
//
//   NODE_LLAMA_CPP=DIR node tools/llamacpp_greedy.mjs MODEL PROMPTS.jsonl N
//
// DIR is where `npm install node-llama-cpp` ran. For each {"prompt": ...}
// line prints {"tokens": [...], "text": "..."}: BOS, the prompt tokenized
// as llama.cpp does, then up to N greedy tokens before EOS (node-llama-cpp
// stops at end-of-generation without reporting it); "eos" is its id.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const [,, modelPath, promptsPath, n = "16"] = process.argv;
if (!process.env.NODE_LLAMA_CPP || !promptsPath) {
  console.error("usage: NODE_LLAMA_CPP=DIR node llamacpp_greedy.mjs MODEL PROMPTS.jsonl N");
  process.exit(2);
}
const lib = join(process.env.NODE_LLAMA_CPP, "node_modules/node-llama-cpp/dist/index.js");
const {getLlama} = await import(pathToFileURL(lib).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
const ctx = await model.createContext({contextSize: model.trainContextSize, threads: 2});
for (const line of readFileSync(promptsPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const {prompt} = JSON.parse(line);
  const seq = ctx.getSequence();
  const input = [model.tokens.bos, ...model.tokenize(prompt)];
  const out = [];
  for await (const t of seq.evaluate(input, {temperature: 0})) {
    if (t === model.tokens.eos || out.length >= +n) break;
    out.push(t);
  }
  console.log(JSON.stringify({prompt_tokens: input.length, tokens: out,
                              eos: model.tokens.eos,
                              text: model.detokenize(out)}));
  seq.dispose();
}
process.exit(0);
