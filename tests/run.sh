#!/usr/bin/env bash
# Runs every cmocka test binary given, twice: once with the ISA the CPU
# offers (JUDGEQ_ISA unset) and once with JUDGEQ_ISA=scalar
# (JUDGEQ_TEST_ISAS="native" runs the first only). Counts the tests cmocka
# reports and ends with one line "N passed, N failed". A binary that dies
# without a summary counts as one failure. Exit status is 0 only when
# nothing failed.
#
# JUDGEQ_SANITIZER_LOGS=1 (ThreadSanitizer runs): every process the tests
# start, the daemons included, writes its reports to files here instead of
# a stderr nobody reads; each report file after a binary is one more
# failure, shown with the binary's results. tests/tsan.supp is used when it
# exists.
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
isas=${JUDGEQ_TEST_ISAS:-native scalar}
if [ "${JUDGEQ_SANITIZER_LOGS:-}" = 1 ]; then
  mkdir -p "$tmp/san"
  chmod 0777 "$tmp/san" "$tmp" # daemons running as nobody report too
  opts="log_path=$tmp/san/report:halt_on_error=0:exitcode=66:second_deadlock_stack=1"
  [ -f "$root/tests/tsan.supp" ] && opts="$opts:suppressions=$root/tests/tsan.supp"
  export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}$opts"
fi

passed=0 failed=0
failures=()
for bin in "$@"; do
  name=$(basename "$bin")
  for isa in $isas; do
    log="$tmp/$name.$isa.log"
    if [ "$isa" = scalar ]; then
      JUDGEQ_ISA=scalar "$bin" >"$log" 2>&1; rc=$?
    else
      env -u JUDGEQ_ISA "$bin" >"$log" 2>&1; rc=$?
    fi
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0}; f=${f:-0}
    # cmocka 1.1 reports a failed group setup/teardown (e.g. a daemon that
    # did not exit 0 after SIGTERM) only as this line, with exit status 0
    g=$(grep -c '^\[  FAILED  \] GROUP \(SETUP\|TEARDOWN\)' "$log")
    f=$((f + g))
    reports=$(ls "$tmp"/san/report.* 2>/dev/null)
    # a sanitizer's exit code alone is one failure; its reports count below
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && [ -z "$reports" ]; then f=1; fi
    if [ -n "$reports" ]; then
      n=$(echo "$reports" | wc -l)
      f=$((f + n))
      for r in $reports; do
        echo "    | sanitizer report $(basename "$r"):" >>"$log"
        sed 's/^/    | /' "$r" | head -60 >>"$log"
        mv "$r" "$tmp/san/seen.$(basename "$r").$name.$isa"
      done
    fi
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
