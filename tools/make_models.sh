#!/usr/bin/env bash
# tools/make_models.sh — what `make models` runs: rebuilds judgeq's own
# recall model and its Judge Q soft tokens from scratch, with judgeq alone.
#
#   1. judgeq pretrain     the model, from random initialisation, on the
#                          recall language's curriculum, in stages (each
#                          from the weights of the one before)
#   2. judgeq recall-data  the soft tokens' training split (small seeds;
#                          the demo and `judgeq eval` use seed 1000 and up)
#   3. judgeq train        the Judge Q soft tokens of that model on it
#   4. copies models/judgeq-recall.gguf and models/judgeq-recall.soft.gguf
#      and prints what models/README.md records (commands, wall time, sizes,
#      hashes, versions; also in WORK/summary.txt)
#
# The recipe is the variables below; models/README.md quotes the commands
# they make (`tools/make_models.sh --dry-run` prints them). Every step works
# in WORK (default build/models-work) and is resumable: rerunning after an
# interruption (Ctrl-C, a reboot) continues pretraining and soft-token
# training from their checkpoints, and skips finished steps. A step whose
# commands changed (a new recipe) starts again, and so do the steps after it.
set -euo pipefail
export LC_ALL=C

# ------------------------------------------------------------ the recipe

# `judgeq pretrain --help` explains each flag. Pretraining runs in stages,
# each a `judgeq pretrain` that starts from the weights of the stage
# before (--init-from): stage 1 learns to bind keys to values on short
# examples, where that is learnt fastest, stage 2 takes the skill to the
# long contexts. The results do not depend on --threads (the gradient
# slots fix the summation order), so it is not part of the recipe.
MODEL_SHAPE="--n-embd 256 --n-layer 4 --n-head 8 --n-head-kv 4 --n-ff 768"
PRETRAIN_STAGES=(
  "--ctx 128 --steps 800 --batch 32 --lr 2e-3 --warmup 50 --seed 1
  --curriculum 0:48,0.1:96,0.3:128 --difficulty 0:0,0.5:1
  --tasks niah/0.1:niah:2,multikey:1,mqar:1,vt:1 --question-first 0.5
  --save-every 50 --eval-every 100"
  "--ctx 1088 --steps 600 --batch 16 --lr 1e-3 --warmup 30 --seed 2
  --curriculum 0:256,0.25:512,0.5:1088 --difficulty 0:1
  --tasks niah:3,multikey:1,mqar:1,vt:1,cwe:1 --question-first 0.5
  --save-every 25 --eval-every 50"
)

# The soft tokens' training split: LENGTH:COUNT:SEED per recall-data run,
# every task in turn, half of them asking first. The model's context
# (1088) leaves room for the 32 soft tokens after a 1024-token prompt.
SOFT_DATA="256:300:1 512:300:2 1024:300:3"

# `judgeq train --help`. The targets are the attention of the data's
# correct answers (--use-dataset-responses): where the model looks when it
# reads the right value, which is what eviction must keep.
SOFT_TRAIN_FLAGS="--n 32 --epochs 3 --batch 16 --lr 5e-3 --seed 1
  --use-dataset-responses --budget 64 --window 32 --eval-every 25"

MAX_FILE_BYTES=$((16 * 1024 * 1024)) # models/ keeps files of at most 16 MiB

# ---------------------------------------------------------------- options

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
judgeq=$here/build/bin/judgeq
work=$here/build/models-work
out=$here/models
dry_run=0

usage() {
    cat <<EOF
usage: tools/make_models.sh [--judgeq FILE] [--work DIR] [--out DIR] [--dry-run]

Rebuilds judgeq-recall.gguf and judgeq-recall.soft.gguf from scratch
(about 25 minutes on two cores), resuming from WORK's checkpoints.

  --judgeq FILE   the judgeq binary (default build/bin/judgeq)
  --work DIR      work directory (default build/models-work)
  --out DIR       where the two files go (default models)
  --dry-run       print the commands, run nothing
  -h, --help      this help
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --judgeq) judgeq=$2; shift ;;
    --work) work=$2; shift ;;
    --out) out=$2; shift ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo "make_models: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

die() {
    echo "make_models: $*" >&2
    exit 1
}

# The commands run in WORK on these relative names, so that they read the
# same in models/README.md as here.
model="judgeq-recall.gguf"
soft="judgeq-recall.soft.gguf"
data="soft-train.jsonl"

# The commands, as words (the flags above split on white space). Stage
# N writes stageN.gguf (F32, the next stage's start); the last stage
# writes the model (F16).
read -r -d '' -a shape_flags <<<"$MODEL_SHAPE" || true
read -r -d '' -a train_flags <<<"$SOFT_TRAIN_FLAGS" || true
n_stages=${#PRETRAIN_STAGES[@]}
stage_out() { # the file stage $1 writes
    if [ "$1" -eq "$n_stages" ]; then echo "$model"; else echo "stage$1.gguf"; fi
}
stage_cmd() { # the pretrain command of stage $1 (1-based), in cmd=()
    local flags
    read -r -d '' -a flags <<<"${PRETRAIN_STAGES[$1 - 1]}" || true
    cmd=(judgeq pretrain --out "$(stage_out "$1")")
    [ "$1" -eq "$n_stages" ] || cmd+=(--out-type f32)
    [ "$1" -eq 1 ] || cmd+=(--init-from "$(stage_out $(($1 - 1)))")
    cmd+=("${shape_flags[@]}" "${flags[@]}")
}
train_cmd=(judgeq train -m "$model" -o "$soft" --data "$data" "${train_flags[@]}")
data_parts=() # soft-train.jsonl.LENGTH, concatenated into soft-train.jsonl
for spec in $SOFT_DATA; do
    data_parts+=("$data.${spec%%:*}")
done
data_cmd() { # the recall-data command of one SOFT_DATA entry, in cmd=()
    local len count seed
    IFS=: read -r len count seed <<<"$1"
    cmd=(judgeq recall-data -o "$data.$len" --length "$len" --count "$count"
        --seed "$seed")
}
show() { # a command as a shell reads it (plain words left bare)
    local w sep=
    for w in "$@"; do
        if [[ $w =~ ^[][A-Za-z0-9_./:,=+@%-]+$ ]]; then
            printf '%s%s' "$sep" "$w"
        else
            printf '%s%q' "$sep" "$w"
        fi
        sep=' '
    done
    echo
}
show_all() { # every command, in order
    local i
    for ((i = 1; i <= n_stages; i++)); do
        stage_cmd $i
        show "${cmd[@]}"
    done
    for spec in $SOFT_DATA; do
        data_cmd "$spec"
        show "${cmd[@]}"
    done
    echo "cat ${data_parts[*]} > $data"
    show "${train_cmd[@]}"
}
if [ $dry_run = 1 ]; then
    show_all
    exit 0
fi
[ -x "$judgeq" ] || die "$judgeq is not built (run make first)"
judgeq=$(cd "$(dirname "$judgeq")" && pwd)/$(basename "$judgeq")
judgeq() { "$judgeq" "$@"; } # the commands' `judgeq`: this build's
mkdir -p "$work" "$out"
out=$(cd "$out" && pwd)
cd "$work"
work=$(pwd)

judgeq pretrain --help >/dev/null 2>&1 ||
    die "$judgeq has no pretrain command (it comes with issue 9's pretrainer)"

# ------------------------------------------------------------ the steps
#
# A step's key is its commands plus the keys of the steps before it.
# WORK/NAME.key is written when the step starts, WORK/NAME.done when it
# has finished: a step whose .done holds the current key (and whose output
# is there) is skipped; one whose .key does and whose checkpoint is there
# (an interrupted run) resumes from it; any other starts afresh.

key_of() { printf '%s\n' "$@" | sha256sum | cut -d' ' -f1; }

step_state() { # NAME KEY OUTPUT CHECKPOINT-FILES...: fresh | resume | done
    local name=$1 key=$2 output=$3 f
    shift 3
    if [ "$(cat "$name.done" 2>/dev/null)" = "$key" ] && [ -f "$output" ]; then
        echo "done"
        return
    fi
    if [ "$(cat "$name.key" 2>/dev/null)" = "$key" ]; then
        for f in "$@"; do
            [ -f "$f" ] || { echo fresh; return; }
        done
        echo resume
        return
    fi
    echo fresh
}

# Runs a long command with its progress on the terminal and in NAME.log,
# its JSON summary in NAME.json, and adds its wall time to NAME.seconds
# (one line per run, so that resumed runs add up). Ctrl-C reaches the
# command, which saves its checkpoint and exits 130; tee ignores it, so
# the command's last words are not cut off.
run_logged() {
    local name=$1 start=$SECONDS rc=0
    shift
    echo "+ $(show "$@")" | tee -a "$name.log" >&2
    "$@" >"$name.json.part" 2> >(trap '' INT; tee -a "$name.log" >&2) || rc=$?
    echo $((SECONDS - start)) >>"$name.seconds"
    if [ $rc = 130 ]; then
        echo "make_models: $name interrupted; its checkpoint is saved: rerun make models to continue" >&2
        exit 130
    elif [ $rc != 0 ]; then
        die "$name failed (exit $rc); log: $work/$name.log"
    fi
    mv "$name.json.part" "$name.json"
}

# 1. pretraining, stage by stage
pretrain_key=
for ((i = 1; i <= n_stages; i++)); do
    stage_cmd $i
    name=pretrain$i
    output=$(stage_out $i)
    pretrain_key=$(key_of "$pretrain_key" "${cmd[@]}")
    case $(step_state $name "$pretrain_key" "$output" "$output.ckpt") in
    done) echo "make_models: pretraining stage $i done ($work/$output)" ;;
    resume)
        run_logged $name "${cmd[@]}" --resume
        echo "$pretrain_key" >$name.done ;;
    fresh)
        rm -f "$output" "$output.ckpt" $name.*
        echo "$pretrain_key" >$name.key
        run_logged $name "${cmd[@]}"
        echo "$pretrain_key" >$name.done ;;
    esac
done

# 2. the soft tokens' training split (seconds, so always made again: the
# same commands give the same bytes)
data_cmds=()
for spec in $SOFT_DATA; do
    data_cmd "$spec"
    data_cmds+=("$(show "${cmd[@]}")")
    echo "+ ${data_cmds[-1]}" >&2
    "${cmd[@]}"
done
cat "${data_parts[@]}" >"$data"
rm -f "${data_parts[@]}"

# 3. the soft tokens
train_key=$(key_of "$pretrain_key" "${data_cmds[@]}" "${train_cmd[@]}")
case $(step_state train "$train_key" "$soft" "$soft" "$soft.adam") in
done) echo "make_models: soft tokens done ($work/$soft)" ;;
resume)
    run_logged train "${train_cmd[@]}" --resume
    echo "$train_key" >train.done ;;
fresh)
    rm -rf "$soft" "$soft.adam" "$soft.cache" train.*
    echo "$train_key" >train.key
    run_logged train "${train_cmd[@]}"
    echo "$train_key" >train.done ;;
esac

# 4. into models/, and what models/README.md records
for f in "$model" "$soft"; do
    size=$(stat -c %s "$f")
    [ "$size" -le $MAX_FILE_BYTES ] ||
        die "$f has $size bytes, more than the 16 MiB a file in models/ may have; make the recipe's model smaller"
done
for f in "$model" "$soft"; do
    cp "$f" "$out/.$(basename "$f").part"
    mv "$out/.$(basename "$f").part" "$out/$(basename "$f")"
done

total() { awk '{ s += $1 } END { printf "%d min %d s", s / 60, s % 60 }' "$1"; }
{
    echo "judgeq-recall, made by tools/make_models.sh on $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "commands (in the work directory):"
    show_all | sed 's/^/  /'
    echo
    echo "wall time: pretrain $(cat pretrain*.seconds | total /dev/stdin), soft tokens $(total train.seconds)"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "judgeq: $("$judgeq" --version), commit $(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "compiler: $(cc --version | head -1)"
    echo "libraries: $(dpkg-query -W -f '${Package} ${Version}\n' libopenblas0-pthread libjansson4 2>/dev/null | paste -sd, | sed 's/,/, /g')"
    echo
    echo "files:"
    for f in "$out/judgeq-recall.gguf" "$out/judgeq-recall.soft.gguf"; do
        echo "  $(basename "$f")  $(stat -c %s "$f") bytes  sha256 $(sha256sum "$f" | cut -d' ' -f1)"
    done
    echo
    for ((i = 1; i <= n_stages; i++)); do
        echo "pretraining stage $i summary ($work/pretrain$i.json):"
        sed 's/^/  /' pretrain$i.json
    done
    echo "soft-token training summary ($work/train.json):"
    sed 's/^/  /' train.json
} | tee summary.txt
