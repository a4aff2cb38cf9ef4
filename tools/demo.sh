#!/usr/bin/env bash
# tools/demo.sh — what `make demo` runs: judgeq's main job in one go.
#
# Starts judgeqd with judgeq's own recall model and its Judge Q soft tokens
# on a socket in a temporary directory, makes one long needle-in-a-haystack
# prompt of the recall language (`judgeq recall-data`, a held-out seed),
# sends it through the client with Judge Q eviction at a small budget
# (greedy), and prints the question, the expected and the model's answer,
# the KV memory kept against the full cache, and the speed. The daemon is
# stopped at the end, and also on Ctrl-C or any failure (trap).
#
# Needs only bash, coreutils, sed and awk besides judgeq's binaries: no
# network, no python, no jq (the client's JSON is one compact line whose
# few fields are picked out with sed).
set -euo pipefail
export LC_ALL=C # decimal points in printf and awk, whatever the locale

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
judgeq=$here/build/bin/judgeq
judgeqd=$here/build/bin/judgeqd
model=$here/models/judgeq-recall.gguf
soft=$here/models/judgeq-recall.soft.gguf
budget=64      # K/V entries kept per layer and KV head
length=960     # tokens of the example; the prompt, then either the 32 soft
               # tokens or the 16 generated ones, fit the context of 1024
n_predict=16   # room for the answer and the end of sequence
seed=1000      # held out: training data uses small seeds (recall-data -h)
question_first=0
start_timeout=30 # seconds for judgeqd to answer a Ping

usage() {
    cat <<EOF
usage: tools/demo.sh [options]   (make demo [DEMO_MODEL=F] [DEMO_SOFT=F] [DEMO_ARGS=...])

Runs judgeqd with a recall-language model and its Judge Q soft tokens,
asks it one long needle-retrieval question with Judge Q eviction, and
prints the answer, the KV memory kept and the speed.

  --model FILE       model (default models/judgeq-recall.gguf)
  --soft FILE        its soft tokens (default models/judgeq-recall.soft.gguf)
  --budget B         K/V entries kept per layer and KV head, more than the
                     32 recent ones judgeq always keeps (default $budget)
  --length L         prompt length in tokens, answer included (default $length)
  --seed S           recall-data seed of the example (default $seed)
  --question-first   put the question before the context
  --judgeq FILE      the judgeq binary (default build/bin/judgeq)
  --judgeqd FILE     the judgeqd binary (default build/bin/judgeqd)
  -h, --help         this help
EOF
}

die() {
    echo "demo: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --model) model=$2; shift ;;
    --soft) soft=$2; shift ;;
    --budget) budget=$2; shift ;;
    --length) length=$2; shift ;;
    --seed) seed=$2; shift ;;
    --question-first) question_first=1 ;;
    --judgeq) judgeq=$2; shift ;;
    --judgeqd) judgeqd=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo "demo: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

for v in "budget=$budget" "length=$length" "seed=$seed"; do
    [[ ${v#*=} =~ ^[0-9]+$ ]] && continue
    usage >&2
    echo "demo: --${v%%=*} must be a whole number, got '${v#*=}'" >&2
    exit 2
done
for f in "$model" "$soft"; do
    [ -f "$f" ] && continue
    cat >&2 <<EOF
demo: $f is missing.
  judgeq's own recall model and its Judge Q soft tokens are trained by
  judgeq itself, on the CPU. Rebuild both from scratch with

      make models

  (about two hours on two cores; see models/README.md), or run the demo
  with another recall-language model:

      make demo DEMO_MODEL=FILE.gguf DEMO_SOFT=SOFT.gguf
EOF
    exit 1
done
for b in "$judgeq" "$judgeqd"; do
    [ -x "$b" ] || die "$b is not built (run make first)"
done

# --------------------------------------------------------- the daemon

work=$(mktemp -d "${TMPDIR:-/tmp}/judgeq-demo.XXXXXX")
sock=$work/judgeqd.sock
log=$work/judgeqd.log
daemon_pid=

# SIGTERM makes judgeqd drain and exit 0; after 10 s it is killed.
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    local pid=$daemon_pid status=0
    daemon_pid=
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: judgeqd (pid $pid) did not stop within 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}

cleanup() {
    trap '' INT TERM # a second Ctrl-C does not leave the daemon behind
    stop_daemon || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_start=$EPOCHREALTIME
"$judgeqd" --model "$model" --soft "$soft" --socket "$sock" --log-file "$log" \
    --grace-period 5 &
daemon_pid=$!

# Ready when it answers a Ping; a daemon that exits (bad model, bad soft
# tokens) is reported at once with its log.
ready=0
deadline=$((SECONDS + start_timeout))
while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=
        echo "demo: judgeqd exited during start-up; its log:" >&2
        sed 's/^/  | /' "$log" >&2 || true
        exit 1
    fi
    if "$judgeq" --socket "$sock" ping --count 1 --timeout 2000 >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.05 # the socket is not there yet: poll again
done
[ $ready = 1 ] || die "judgeqd did not answer a Ping within $start_timeout s (log: $log)"
t_ready=$EPOCHREALTIME

# -------------------------------------------------------- the question

# recall-data --format tsv: task, prompt, response, answers...
qfs=$question_first # --question-first-share of a single example: 0 or 1
IFS=$'\t' read -r _ prompt expected answers < <(
    "$judgeq" recall-data -o - --format tsv --tasks niah --length "$length" \
        --count 1 --seed "$seed" --question-first-share "$qfs") ||
    die "recall-data gave no example"
question=$(sed -n 's/.*question: \([^?]*?\).*/\1/p' <<<"$prompt")
printf '%s' "$prompt" >"$work/prompt.txt"

if ! out=$("$judgeq" --socket "$sock" generate -f "$work/prompt.txt" \
    -n "$n_predict" --temp 0 --evict judgeq --budget "$budget" \
    --timeout 60000 --json); then
    echo "demo: judgeq generate failed; judgeqd's log:" >&2
    sed 's/^/  | /' "$log" >&2 || true
    exit 1
fi

# ------------------------------------------------------- the results

field() { # a number or array field of the one-line JSON reply
    sed -n "s/.*\"$1\":\(\[[^]]*\]\|[-0-9.eE+]*\).*/\1/p" <<<"$out"
}
count() { # elements of a flat JSON array
    local a=${1#[}
    a=${a%]}
    [ -z "$a" ] && echo 0 || echo $(($(tr -cd , <<<"$a" | wc -c) + 1))
}
answer=$(sed -En 's/.*"text":"(([^"\\]|\\.)*)".*/\1/p' <<<"$out")
answer=$(printf '%b' "$(sed 's/\\"/"/g; s/\\\//\//g' <<<"$answer")")
answer=$(tr '\n\r\t' '   ' <<<"$answer") # one line, whatever it generated
answer=${answer#"${answer%%[![:space:]]*}"} # the space after "answer:"
answer=${answer%"${answer##*[![:space:]]}"}
n_prompt=$(count "$(field prompt_tokens)")
n_gen=$(count "$(field tokens)")
kv_full=$(field kv_bytes_full)
kv_kept=$(field kv_bytes_kept)

# correct as `judgeq eval` scores it: every answer string, any case
verdict=correct
IFS=$'\t' read -r -a want <<<"$answers"
for a in "${want[@]}"; do
    [[ ${answer,,} == *"${a,,}"* ]] || verdict=wrong
done

stop_daemon || die "judgeqd did not stop cleanly; its log: $log"
t_end=$EPOCHREALTIME

# (text goes through the environment: awk -v would expand backslashes)
Q=$question E=$expected A=${answer:-(nothing)} M=$model awk -v v="$verdict" \
    -v np="$n_prompt" -v ng="$n_gen" -v b="$budget" -v full="$kv_full" \
    -v kept="$kv_kept" -v pf="$(field prefill_tokens_per_s)" \
    -v pms="$(field prefill_ms)" -v dc="$(field decode_tokens_per_s)" \
    -v dms="$(field decode_ms)" -v seed="$seed" \
    -v up="$(awk -v a="$t_start" -v b="$t_ready" 'BEGIN { print b - a }')" \
    -v all="$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { print b - a }')" '
function size(x) {
    return x >= 1048576 ? sprintf("%.2f MiB", x / 1048576) : sprintf("%.0f KiB", x / 1024)
}
BEGIN {
    printf "judgeq demo: one needle in a %d-token prompt (recall-data seed %s),\n", np, seed
    printf "Judge Q eviction to %d entries per layer and KV head, model %s\n\n", b, ENVIRON["M"]
    printf "  question:         %s\n", ENVIRON["Q"]
    printf "  expected answer:  %s\n", ENVIRON["E"]
    printf "  model'"'"'s answer:   %s (%s)\n\n", ENVIRON["A"], v
    printf "  memory:  KV cache kept %s of %s (%.1f%% of the full cache, %d of %d bytes)\n",
           size(kept), size(full), 100 * kept / full, kept, full
    printf "  speed:   prefill %d tokens in %.0f ms (%.0f tokens/s), decode %d tokens in %.1f ms (%.0f tokens/s)\n",
           np, pms, pf, ng, dms, dc
    printf "  daemon:  ready in %.2f s, whole demo %.2f s, stopped cleanly\n", up, all
}'
