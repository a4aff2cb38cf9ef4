#!/usr/bin/env bash
# bench/side_by_side.sh — judgeq and llama.cpp on the same model files, the
# same cores, in the same minutes: prefill (pp) and decode (tg) tokens/s,
# the two engines alternating rep by rep so that a change in the machine's
# load hits both alike.
#
#   NODE_LLAMA_CPP=DIR bench/side_by_side.sh [--prompt-len N] [--gen N]
#       [--threads N] [--reps N] MODEL...
#
# llama.cpp runs through bench/llamacpp_speed.mjs (node-llama-cpp's prebuilt
# llama.cpp from npm, installed in DIR; not a judgeq dependency). Prints one
# line per model: medians of each engine and their ratio, plus
# `bench/stream_read` before and after.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
judgeq=${JUDGEQ:-$here/build/bin/judgeq}
pl=512 gen=128 threads=2 reps=3
while [ $# -gt 0 ]; do
    case $1 in
    --prompt-len) pl=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "side_by_side: unknown option '$1'" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] && [ -n "${NODE_LLAMA_CPP:-}" ] || {
    echo "usage: NODE_LLAMA_CPP=DIR bench/side_by_side.sh [options] MODEL..." >&2
    exit 2
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
bw() { "$here/build/bench/stream_read" --threads "$threads" 2>/dev/null | tail -1; }
echo "stream_read before: $(bw)"
printf '%-28s %10s %10s %6s %10s %10s %6s\n' model "pp judgeq" "llama.cpp" ratio \
    "tg judgeq" "llama.cpp" ratio
for m in "$@"; do
    jp=() jt=() lp=() lt=()
    for ((r = 0; r < reps; r++)); do
        j=$("$judgeq" bench -m "$m" --prompt-len "$pl" --gen "$gen" \
            --threads "$threads" --reps 1 2>/dev/null)
        jp+=("$(jq '.prefill_tokens_per_s.median' <<<"$j")")
        jt+=("$(jq '.decode_tokens_per_s.median' <<<"$j")")
        l=$(node "$here/bench/llamacpp_speed.mjs" "$m" "$pl" "$gen" "$threads" 1)
        lp+=("$(jq '.prefill_tokens_per_s.median' <<<"$l")")
        lt+=("$(jq '.decode_tokens_per_s.median' <<<"$l")")
    done
    a=$(printf '%s\n' "${jp[@]}" | median) b=$(printf '%s\n' "${lp[@]}" | median)
    c=$(printf '%s\n' "${jt[@]}" | median) d=$(printf '%s\n' "${lt[@]}" | median)
    awk -v m="$(basename "$m")" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
        printf "%-28s %10.1f %10.1f %6.2f %10.2f %10.2f %6.2f\n", m, a, b, a / b, c, d, c / d }'
done
echo "stream_read after: $(bw)"
