// bench/llamacpp_speed.mjs — llama.cpp's prefill and decode speed on this
// machine, for side-by-side figures with `judgeq bench` (docs/PERFORMANCE.md),
// through node-llama-cpp's prebuilt llama.cpp (npm; not a judgeq dependency).
//
//   NODE_LLAMA_CPP=DIR node bench/llamacpp_speed.mjs MODEL [PROMPT_LEN] [GEN] [THREADS] [REPS]
//
// Like `llama-bench -p PROMPT_LEN -n GEN -t THREADS`: random token ids, a
// PROMPT_LEN-token prompt in one batch, then GEN tokens decoded one at a time
// (greedy), each rep in a fresh sequence. Prints one JSON object with the
// median, min and max tokens/s of each and the llama.cpp build it used.
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const [,, modelPath, pl = "512", gen = "128", threads = "2", reps = "3"] = process.argv;
if (!process.env.NODE_LLAMA_CPP || !modelPath) {
  console.error("usage: NODE_LLAMA_CPP=DIR node llamacpp_speed.mjs MODEL [PROMPT_LEN] [GEN] [THREADS] [REPS]");
  process.exit(2);
}
const lib = join(process.env.NODE_LLAMA_CPP, "node_modules/node-llama-cpp/dist/index.js");
const {getLlama} = await import(pathToFileURL(lib).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, useMmap: true});
const ctx = await model.createContext({contextSize: +pl + +gen + 16,
                                       batchSize: +pl, threads: +threads});
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
let seed = 12345;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const stats = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return {median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1]};
};
const pre = [], dec = [];
for (let r = 0; r < +reps; r++) {
  const seq = ctx.getSequence();
  const toks = Array.from({length: +pl}, () => 3 + Math.floor(rand() * Math.min(vocab - 3, 30000)));
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(toks);
  pre.push(+pl / ((performance.now() - t0) / 1000));
  let n = 0;
  t0 = performance.now();
  for await (const t of seq.evaluate([toks[0]], {temperature: 0})) {
    void t;
    if (++n >= +gen) break;
  }
  dec.push(n / ((performance.now() - t0) / 1000));
  seq.dispose();
}
console.log(JSON.stringify({model: modelPath, prompt_len: +pl, gen: +gen,
  threads: +threads, reps: +reps, prefill_tokens_per_s: stats(pre),
  decode_tokens_per_s: stats(dec), llama_cpp: llama.buildType + " " + (llama.cpuMathCores ?? "") }));
process.exit(0);
