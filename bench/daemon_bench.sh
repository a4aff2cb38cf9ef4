#!/usr/bin/env bash
# judgeqd benchmark: ping round trip, generate through the daemon vs
# offline `judgeq run`, N concurrent clients' aggregate tokens/s, and the
# daemon's RSS with the model loaded vs the model file size.
#
#   bench/daemon_bench.sh MODEL PROMPT_FILE [N_GEN] [CLIENTS] [THREADS]
#
# Uses build/bin/judgeq and build/bin/judgeqd (JUDGEQ_BUILD to override).
# Prints one JSON object. Numbers on a shared machine are noisy: run it
# several times and compare medians.
set -eu
model=$1 prompt=$2 n=${3:-64} clients=${4:-16} threads=${5:-2}
build=${JUDGEQ_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
jq_bin=$build/bin/judgeq jqd=$build/bin/judgeqd
tmp=$(mktemp -d)
sock=$tmp/judgeqd.sock
"$jqd" --model "$model" --socket "$sock" --threads "$threads" --log-level warning \
  >"$tmp/daemon.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "judgeqd did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }

"$jq_bin" --socket "$sock" ping --count 2000 >"$tmp/ping.txt"
"$jq_bin" run -m "$model" -f "$prompt" -n "$n" --temp 0 --ignore-eos \
  --threads "$threads" --json >"$tmp/offline.json"
"$jq_bin" --socket "$sock" generate -f "$prompt" -n "$n" --temp 0 \
  --ignore-eos --json >"$tmp/online.json"
start=$(date +%s.%N)
for i in $(seq "$clients"); do
  "$jq_bin" --socket "$sock" generate -f "$prompt" -n "$n" --temp 0 \
    --ignore-eos --json >"$tmp/c$i.json" &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
end=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
python3 - "$tmp" "$clients" "$start" "$end" "$rss_kb" "$model" <<'PY'
import json, os, re, sys
tmp, clients, start, end, rss_kb, model = sys.argv[1:]
ping = open(os.path.join(tmp, "ping.txt")).read()
p50 = float(re.search(r"p50 ([0-9.]+) us", ping).group(1))
p99 = float(re.search(r"p99 ([0-9.]+) us", ping).group(1))
off = json.load(open(os.path.join(tmp, "offline.json")))
on = json.load(open(os.path.join(tmp, "online.json")))
tokens = 0
for i in range(1, int(clients) + 1):
    tokens += len(json.load(open(os.path.join(tmp, "c%d.json" % i)))["tokens"])
wall = float(end) - float(start)
print(json.dumps({
    "ping_p50_us": p50, "ping_p99_us": p99,
    "offline_decode_tokens_per_s": off["decode_tokens_per_s"],
    "online_decode_tokens_per_s": on["decode_tokens_per_s"],
    "online_vs_offline": on["decode_tokens_per_s"] / off["decode_tokens_per_s"],
    "clients": int(clients), "aggregate_tokens_per_s": tokens / wall,
    "daemon_rss_bytes": int(rss_kb) * 1024, "model_file_bytes": os.path.getsize(model),
}))
PY
