#!/usr/bin/env bash
# judgeqd under load: starts a daemon on a socket in a temporary directory
# and runs `judgeq bench --socket ... --clients 64 --duration 60` against
# it (the Load part of issue 8: zero errors, no growth of the daemon's RSS
# or open descriptors between the first and the last 10 s).
#
#   bench/load.sh [MODEL [SOFT]]
#
# MODEL: default a random-weight model made here with gen-model (embd 256,
# 4 layers, 8 heads / 4 KV heads, ff 768, vocab 4096, ctx 1024: ~22 MB F32)
# and soft tokens for it made with soft-init, so that the mix holds every
# policy including judgeq. SOFT: the daemon's --soft for a given MODEL
# (without it judgeq is left out of the mix).
# Environment: CLIENTS (64), DURATION (60), THREADS (daemon threads, 2),
# BENCH_ARGS (more `judgeq bench` flags, e.g. "--prompt-len 256 --gen 64"),
# JUDGEQ_BUILD (default build/).
#
# Prints the bench JSON on stdout and a summary on stderr; the exit status
# is bench's (1 when any request failed). The machine this project runs on
# is shared: throughput and latency vary with its load (see `uptime`).
set -eu
build=${JUDGEQ_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
jq_bin=$build/bin/judgeq jqd=$build/bin/judgeqd
clients=${CLIENTS:-64} duration=${DURATION:-60} threads=${THREADS:-2}
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

model=${1:-} soft=${2:-}
if [ -z "$model" ]; then
  model=$tmp/load-model.gguf soft=$tmp/load-soft.gguf
  "$jq_bin" gen-model -o "$model" --n-embd 256 --n-layer 4 --n-head 8 \
    --n-head-kv 4 --n-ff 768 --n-vocab 4096 --ctx 1024 >/dev/null
  "$jq_bin" soft-init -m "$model" -o "$soft" >/dev/null
fi
sock=$tmp/judgeqd.sock
"$jqd" --model "$model" ${soft:+--soft "$soft"} --socket "$sock" \
  --threads "$threads" --log-level warning >"$tmp/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  "$jq_bin" --socket "$sock" ping --count 1 >/dev/null 2>&1 && break
  sleep 0.05
done
"$jq_bin" --socket "$sock" ping --count 1 >/dev/null 2>&1 ||
  { echo "judgeqd did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }

echo "load: $clients clients for $duration s on $(basename "$model"), daemon threads $threads, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rc=0
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
"$jq_bin" bench --socket "$sock" --clients "$clients" --duration "$duration" \
  ${BENCH_ARGS:-} >"$tmp/load.json" || rc=$?
cat "$tmp/load.json"
if [ -s "$tmp/load.json" ] && command -v python3 >/dev/null; then
  python3 - "$tmp/load.json" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("requests %d (%.0f/s), errors %d, generated %.0f tok/s, prompt %.0f tok/s"
      % (r["requests"]["total"], r["requests"]["per_s"], r["errors"]["total"],
         r["tokens"]["generated_per_s"], r["tokens"]["prompt_per_s"]))
for name, t in r["by_type"].items():
    l = t["latency_ms"]
    if l:
        print("  %-8s %7d  %8.1f/s  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms"
              % (name, t["requests"], t["per_s"], l["p50"], l["p99"], l["max"]))
d = r["daemon"]
for k in ("rss_bytes", "open_fds"):
    print("  %-9s before %s, first %gs max %s, last %gs max %s, growth %s, after %s"
          % (k, d["before"][k], d["window_s"], d["first"][k]["max"], d["window_s"],
             d["last"][k]["max"], d["growth"][k], d["after"][k]))
PY
fi
if [ "$rc" -ne 0 ]; then
  echo "bench exited $rc; daemon log:" >&2
  tail -20 "$tmp/daemon.log" >&2
fi
exit "$rc"
