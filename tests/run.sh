#!/usr/bin/env bash
# Runs every cmocka test binary given, twice: once with the ISA the CPU
# offers (JUDGEQ_ISA unset) and once with JUDGEQ_ISA=scalar. Counts the
# tests cmocka reports and ends with one line "N passed, N failed". A binary
# that dies without a summary counts as one failure. Exit status is 0 only
# when nothing failed.
set -u
root=${JUDGEQ_ROOT:-$(pwd)}
export JUDGEQ_ROOT=$root
export JUDGEQ_BUILD=${JUDGEQ_BUILD:-$root/build}
export JUDGEQ_BIN=${JUDGEQ_BIN:-$JUDGEQ_BUILD/bin/judgeq}
export JUDGEQ_TEST_MODELS=${JUDGEQ_TEST_MODELS:-$root/../shared/models}
export JUDGEQ_TEST_REFERENCE=${JUDGEQ_TEST_REFERENCE:-$root/../shared/reference}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp

passed=0 failed=0
failures=()
for bin in "$@"; do
  name=$(basename "$bin")
  for isa in native scalar; do
    log="$tmp/$name.$isa.log"
    if [ "$isa" = scalar ]; then
      JUDGEQ_ISA=scalar "$bin" >"$log" 2>&1; rc=$?
    else
      env -u JUDGEQ_ISA "$bin" >"$log" 2>&1; rc=$?
    fi
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-28s %-7s %3d passed, %d failed\n' "$name" "$isa" "$p" "$f"
    if [ "$f" -ne 0 ]; then
      failures+=("$name ($isa)")
      sed 's/^/    | /' "$log" | grep -v '^    | \[ \(RUN\|       OK\) ' | tail -40
    fi
  done
done
if [ ${#failures[@]} -ne 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
