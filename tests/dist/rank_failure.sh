#!/usr/bin/env bash
# A rank that dies (SIGKILL) or hangs makes the whole run stop with an error in bounded time, and
# the checkpoint rank 0 wrote last still loads (tests/dist/fault_worker.cpp does the training).
#   rank_failure.sh MPIRUN BUILD_DIR
set -u
mpirun=${1:-}
build=${2:?build dir}
if [ -z "$mpirun" ] || ! command -v "$mpirun" >/dev/null; then
  echo "SKIPPED: no mpirun in this build"
  exit 77
fi
worker=$build/tests/test_dist_fault_worker
fail() { echo "FAILED: $*"; exit 1; }
for mode in kill hang; do
  dir=$(mktemp -d "${TMPDIR:-/tmp}/dl-rank-failure-$$-XXXX")
  start=$(date +%s)
  # DL_DIST_TIMEOUT=5: the hung peer is given up after 5 s; `timeout 120` only guards this script
  DL_DIST_TIMEOUT=5 OMP_NUM_THREADS=1 timeout 120 "$mpirun" --oversubscribe --allow-run-as-root --bind-to none \
    -np 2 "$worker" "$mode" "$dir" >"$dir/out.txt" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  echo "== $mode: mpirun exit $rc after ${elapsed}s; its output:"
  sed 's/^/   /' "$dir/out.txt" | tail -25
  [ "$rc" -ne 124 ] || fail "$mode: the run hung (killed by the test's own 120 s timeout)"
  [ "$rc" -ne 0 ] || fail "$mode: mpirun reported success although a rank failed"
  [ "$elapsed" -le 60 ] || fail "$mode: the run took ${elapsed}s to stop (expected well under 60 s)"
  if [ "$mode" = kill ]; then
    grep -q "rank 1 .*exited on signal 9\|rank 1 .*Killed\|exited on signal 9" "$dir/out.txt" ||
      fail "kill: no message naming the killed rank"
  else
    grep -q "\[rank 0/2\] error: MPI_Iallreduce .* did not complete within 5 s" "$dir/out.txt" ||
      fail "hang: rank 0 did not report the timed-out all-reduce"
  fi
  "$worker" check "$dir" || fail "$mode: the last checkpoint does not load"
  rm -rf "$dir"
done
echo "both failures ended the run with an error in bounded time; the last checkpoint loads"
