#!/usr/bin/env bash
# tools/llamacpp_compare.sh — does llama.cpp load a model judgeq wrote, and
# generate what judgeq generates? Greedy continuations of the prompts of a
# JSONL file ({"prompt": ...} per line, e.g. from `judgeq recall-data`) by
# judgeq and by llama.cpp (node-llama-cpp's prebuilt build, from npm: not a
# judgeq dependency, so this is a developer check, not part of make test).
#
#   NODE_LLAMA_CPP=DIR tools/llamacpp_compare.sh MODEL PROMPTS.jsonl [N]
#
# DIR is where `npm install node-llama-cpp` ran. Prints one line per prompt
# (same / DIFFERENT, both texts) and a count; exit 1 if any differs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
judgeq=${JUDGEQ:-$here/build/bin/judgeq}
if [ $# -lt 2 ] || [ -z "${NODE_LLAMA_CPP:-}" ]; then
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
model=$1 prompts=$2 n=${3:-16}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node "$here/tools/llamacpp_greedy.mjs" "$model" "$prompts" "$n" >"$tmp/llama.jsonl"
same=0 total=0
while IFS= read -r line && IFS= read -r ref <&3; do
    jq -r .prompt <<<"$line" >"$tmp/p"
    printf '%s' "$(cat "$tmp/p")" >"$tmp/prompt" # no trailing newline
    eos=$(jq .eos <<<"$ref")
    # judgeq reports the EOS it stopped at; llama.cpp's loop does not
    ours=$("$judgeq" run -m "$model" -f "$tmp/prompt" -n "$n" --temp 0 \
        --threads 2 --json 2>/dev/null |
        jq -c --argjson eos "$eos" '.tokens | if last == $eos then .[:-1] else . end')
    theirs=$(jq -c .tokens <<<"$ref")
    total=$((total + 1))
    if [ "$ours" = "$theirs" ]; then
        same=$((same + 1))
        echo "same       $(jq -r .text <<<"$ref")"
    else
        echo "DIFFERENT  judgeq $ours  llama.cpp $theirs"
    fi
done <"$prompts" 3<"$tmp/llama.jsonl"
echo "$same of $total continuations identical (judgeq vs llama.cpp, greedy, $n tokens)"
[ "$same" = "$total" ]
