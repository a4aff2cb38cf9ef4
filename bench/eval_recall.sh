#!/usr/bin/env bash
# bench/eval_recall.sh — the evaluation of docs/EVAL.md's "judgeq-recall"
# section: task accuracy of every eviction policy against the budget, on
# held-out prompts of the recall language, with the question at the end and
# with the question first, for judgeq's own model and soft tokens.
#
#   bench/eval_recall.sh [--model M] [--soft S] [--out DIR] [--samples N]
#                        [--length L] [--tasks LIST] [--budgets LIST]
#                        [--threads N] [--seed S]
#
# One `judgeq eval` per (task, question position) into DIR/TASK-POS/
# (results.csv, per_prompt.csv, run.json, results.png with gnuplot), then
# DIR/accuracy.md: accuracy (%) per policy and budget, one table per run,
# and DIR/accuracy.csv, all runs in one file. Long: a few minutes per
# (task, position) on two cores; not part of `make test`.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
judgeq=$here/build/bin/judgeq
model=$here/models/judgeq-recall.gguf
soft=$here/models/judgeq-recall.soft.gguf
out=$here/build/eval-recall
samples=40
length=1024
tasks=recall-niah,recall-multikey,recall-vt
budgets=48,96,160,256,512
policies=full,streaming,h2o,snapkv,pyramidkv,adakv,judgeq,oracle
threads=$(nproc)
seed=1000

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF
defaults: --model models/judgeq-recall.gguf --soft models/judgeq-recall.soft.gguf
  --out build/eval-recall --samples $samples --length $length
  --tasks $tasks --budgets $budgets --seed $seed (held out: training uses 1-3)
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --judgeq) judgeq=$2; shift ;;
    --model) model=$2; shift ;;
    --soft) soft=$2; shift ;;
    --out) out=$2; shift ;;
    --samples) samples=$2; shift ;;
    --length) length=$2; shift ;;
    --tasks) tasks=$2; shift ;;
    --budgets) budgets=$2; shift ;;
    --threads) threads=$2; shift ;;
    --seed) seed=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo "eval_recall: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
for f in "$judgeq" "$model" "$soft"; do
    [ -e "$f" ] || { echo "eval_recall: $f is missing" >&2; exit 1; }
done
mkdir -p "$out"

echo "task,position,policy,budget,prompts,accuracy,accuracy_ci,hit_rate,mass_recall,kv_bytes" >"$out/accuracy.csv"
: >"$out/accuracy.md"
IFS=, read -r -a task_list <<<"$tasks"
for task in "${task_list[@]}"; do
    for pos in last first; do
        dir=$out/$task-$pos
        extra=()
        [ $pos = first ] && extra=(--question-first)
        echo "+ judgeq eval --task $task --length $length --samples $samples --seed $seed ${extra[*]}" >&2
        "$judgeq" eval -m "$model" --soft "$soft" --task "$task" \
            --length "$length" --samples "$samples" --seed "$seed" \
            --policies "$policies" --budgets "$budgets" --threads "$threads" \
            --out "$dir" "${extra[@]}" >"$dir.table" 2>"$dir.log"
        # results.csv: policy,budget,prompts,accuracy,accuracy_ci,hit_rate,
        # hit_rate_ci,mass_recall,mass_recall_ci,...,kv_bytes,prefill_ms
        awk -F, -v t="$task" -v p="$pos" 'NR > 1 {
            print t "," p "," $1 "," $2 "," $3 "," $4 "," $5 "," $6 "," $8 "," $15 }' \
            "$dir/results.csv" >>"$out/accuracy.csv"
        {
            echo "#### $task, question $pos ($samples prompts of $length tokens, seed $seed)"
            echo
            awk -F, -v b="$budgets" '
            NR == 1 { next }
            { acc[$1 "," $2] = $4; ci[$1 "," $2] = $5
              if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
            END {
                nb = split(b, B, ",")
                h = "| policy |"; s = "|---|"
                for (i = 1; i <= nb; i++) { h = h " B=" B[i] " |"; s = s "---:|" }
                print h; print s
                for (k = 1; k <= n; k++) {
                    line = "| " order[k] " |"
                    for (i = 1; i <= nb; i++)
                        line = line sprintf(" %.0f ± %.0f |", acc[order[k] "," B[i]], ci[order[k] "," B[i]])
                    print line
                }
            }' "$dir/results.csv"
            echo
        } >>"$out/accuracy.md"
    done
done
cat "$out/accuracy.md"
