#!/usr/bin/env bash
# `make test`: every stage CI runs, one after another, each announced and
# each counted in the closing line "N passed, N failed":
#   1. the suite (build/)
#   2. the suite under AddressSanitizer + UBSan (build/asan/)
#   3. the daemon tests under ThreadSanitizer (build/tsan/)
#   4. CI_FUZZ_SECONDS (default 30) of libFuzzer per fuzz target
# A stage that stops before its own closing line (a build failure, say)
# counts as one failure; the stages after it still run. Exit status is 0
# only when nothing failed.
set -u
cd "$(dirname "$0")/.."
make=${MAKE:-make}
jobs=${JUDGEQ_JOBS:-$(nproc 2>/dev/null || echo 2)}
fuzz_s=${CI_FUZZ_SECONDS:-30}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
failures=()
stage() { # number, title, make arguments...
  local n=$1 title=$2
  shift 2
  echo "==== stage $n/4: $title"
  local t0=$SECONDS log="$tmp/stage$n.log"
  # the builds in parallel; tests/run.sh runs the binaries one at a time
  $make --no-print-directory -j"$jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -ne 0 ] && failures+=("stage $n ($title)")
  echo "==== stage $n/4: $p passed, $f failed in $((SECONDS - t0)) s"
}

t_all=$SECONDS
stage 1 "the suite" check
stage 2 "the suite under AddressSanitizer + UBSan" SANITIZE=1 check
stage 3 "the daemon tests under ThreadSanitizer" SANITIZE=thread test-daemon
stage 4 "fuzzing, $fuzz_s s per target" fuzz FUZZ_SECONDS="$fuzz_s"
echo "==== all stages in $((SECONDS - t_all)) s"
if [ ${#failures[@]} -ne 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
