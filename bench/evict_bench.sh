#!/usr/bin/env bash
# Eviction benchmark: for each policy, `judgeq run --json` on one prompt and
# one budget; prints prefill ms, score/evict ms, decode tok/s and resident
# KV bytes, with the median of REPS runs per policy.
#
#   bench/evict_bench.sh MODEL PROMPT_FILE BUDGET SOFT_FILE [REPS] [N_GEN] [POLICIES] [extra flags]
set -eu
model=$1 prompt=$2 budget=$3 soft=$4 reps=${5:-3} n=${6:-32}
policies=${7:-full,judgeq,snapkv,streaming,h2o,pyramidkv,adakv}
shift $(( $# < 7 ? $# : 7 ))
bin=${JUDGEQ_BIN:-$(dirname "$0")/../build/bin/judgeq}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for p in ${policies//,/ }; do
  for i in $(seq "$reps"); do
    extra=""
    [ "$p" = judgeq ] && extra="--soft $soft"
    [ "$p" = full ] || extra="$extra --evict $p --budget $budget"
    # shellcheck disable=SC2086
    "$bin" run -m "$model" -f "$prompt" -n "$n" --temp 0 --ignore-eos --json $extra "$@" |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["policy"], len(j["prompt_tokens"]), j["prefill_ms"], j["score_ms"], j["evict_ms"], j["decode_tokens_per_s"], j["kv_bytes_full"], j["kv_bytes_kept"])' >>"$tmp"
  done
done
python3 - "$tmp" <<'PY'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
print("%-10s %6s %11s %9s %9s %10s %14s %14s" % ("policy", "L", "prefill_ms", "score_ms", "evict_ms", "decode_t/s", "kv_full", "kv_kept"))
for p, rs in rows.items():
    med = lambda i: statistics.median(r[i] for r in rs)
    print("%-10s %6d %11.1f %9.2f %9.2f %10.2f %14d %14d" % (p, rs[0][0], med(1), med(2), med(3), med(4), rs[0][5], rs[0][6]))
PY
