#!/usr/bin/env bash
# Prefill and decode speed of `judgeq run --json`, median of several runs.
#
#   bench/run_speed.sh MODEL PROMPT_FILE [N_GEN] [REPS] [extra judgeq run flags...]
#
# Prints one line per run and then the medians. Uses build/bin/judgeq
# (JUDGEQ_BIN to override) with --temp 0 --ignore-eos, so every run does
# the same work.
set -eu
model=$1 prompt=$2 n=${3:-64} reps=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
bin=${JUDGEQ_BIN:-$(dirname "$0")/../build/bin/judgeq}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$reps"); do
  "$bin" run -m "$model" -f "$prompt" -n "$n" --temp 0 --ignore-eos --json "$@" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(len(j["prompt_tokens"]), j["prefill_tokens_per_s"], j["decode_tokens_per_s"])' |
    tee -a "$out"
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
print("prompt_tokens %d  prefill_tok_s median %.2f  decode_tok_s median %.2f  (%d runs)" % (
    rows[0][0], statistics.median(r[1] for r in rows), statistics.median(r[2] for r in rows), len(rows)))
PY
