#!/usr/bin/env bash
# Counts the op checks that test programs execute, per kind, so a change to the op tests can show
# that none were lost: run it on a build before and after.
#   tests/op_cases/count_checks.sh BUILD_DIR PROGRAM...     (programs relative to BUILD_DIR/tests)
# For each program it runs doctest with --success (every passing assertion printed) and counts
#   gradcheck calls      CHECK_GRADCHECK assertions  (printed as "dl_gc_.ok")
#   tensor comparisons   CHECK_CLOSE / CHECK_GPU_CLOSE assertions ("dl_close_.ok")
#   bad-argument checks  CHECK_THROWS* assertions, plus the op-case error driver's cases
#                        ("op_error_message_ok": one per error case of the table)
# and the doctest cases run. A program whose cases skip (no GPU) counts what it executed: nothing;
# to count the cuda suites without a GPU, use a build configured with -DDL_TEST_FAKE_GPU=ON.
# Reference programs need DL_FIXTURES_DIR (default BUILD_DIR/fixtures, written by ctest's
# make_torch_fixtures).
set -uo pipefail
build=${1:?usage: count_checks.sh BUILD_DIR PROGRAM...}
shift
export DL_FIXTURES_DIR=${DL_FIXTURES_DIR:-$build/fixtures}
printf '%-42s %8s %10s %10s %10s\n' program cases gradcheck compare throws
for p in "$@"; do
  log=$(mktemp)
  "$build/tests/$p" --success --no-colors --no-version >"$log" 2>&1
  cases=$(grep -Eo 'test cases: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | head -1)
  gc=$(grep -c 'dl_gc_\.ok' "$log")
  cmp=$(grep -c 'dl_close_\.ok' "$log")
  thr=$(grep -cE 'CHECK_THROWS|REQUIRE_THROWS|op_error_message_ok' "$log")
  printf '%-42s %8s %10s %10s %10s\n' "$p" "${cases:-?}" "$gc" "$cmp" "$thr"
  rm -f "$log"
done
