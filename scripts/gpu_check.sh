#!/usr/bin/env bash
# The one check of the CUDA backend on a machine with a GPU (docs/cuda.md, "Running the GPU check").
#
#   scripts/gpu_check.sh                      everything lands in ./gpu_check_out (or $OUT)
#   OUT=/some/dir BUILD=build-gpu scripts/gpu_check.sh
#
# Steps, in order; each runs under `timeout` with the budget below (seconds, override by
# environment), a failed or timed-out step is recorded and the next one runs anyway:
#   configure  cmake -DDL_CUDA=ON -DDL_BUILD_TESTS=ON into $BUILD
#   build      only what is run below: test_cuda_* (tests/cuda/*.cpp), sgemm_lab, bench_cuda, -j $(nproc)
#   probe      is a GPU really used? (otherwise every CUDA test skips, and the script fails)
#   ctest      ctest -L cuda with DL_CUDA_SYNC=1 (a fault names its kernel), JUnit to ctest-cuda.xml
#   memcheck   compute-sanitizer --tool memcheck over every CUDA suite (minus $SANITIZE_EXCLUDE)
#   racecheck  compute-sanitizer --tool racecheck over $RACECHECK_SUITES (the shared-memory kernels)
#   sgemm_lab  the SGEMM kernel lab against cuBLAS
#   bench      bench_cuda (--quick unless FULL_BENCH=1)
#   study      ./study.sh --quick --device cuda with the built programs, when Fashion-MNIST is found
#              ($DL_DATA_DIR, ./gpu_data/fashion-mnist: copy the four .gz files there and carry that
#              folder to a machine without the Debian package; /usr/share/datasets/fashion-mnist)
# The sanitizer steps run only where compute-sanitizer is found (PATH, $CUDA_HOME/bin,
# /usr/local/cuda/bin); otherwise they are listed as NOT RUN.
#
# Budgets: sized for an H200 machine with 16 cores, about 8 minutes in all (the build is most of
# it). B_TOTAL caps the whole script: a step never gets more than what is left of it, so the script
# ends within B_TOTAL plus a few seconds even when every step runs to its budget.
B_CONFIGURE=${B_CONFIGURE:-45}
B_BUILD=${B_BUILD:-240}
B_PROBE=${B_PROBE:-20}
B_CTEST=${B_CTEST:-75}
B_MEMCHECK=${B_MEMCHECK:-60}
B_RACECHECK=${B_RACECHECK:-45}
B_SGEMM_LAB=${B_SGEMM_LAB:-20}
B_BENCH=${B_BENCH:-45}
B_STUDY=${B_STUDY:-90}
B_TOTAL=${B_TOTAL:-540}
SANITIZE_EXCLUDE=${SANITIZE_EXCLUDE:-'*2^31*,*not reused early*'}  # too slow under a sanitizer
RACECHECK_SUITES=${RACECHECK_SUITES:-"reduce_test nn_test"}
#
# Output under $OUT: summary.txt (the table printed at the end), env.txt, one <step>.log per step,
# ctest-cuda.xml (JUnit), memcheck/<suite>.log, racecheck/<suite>.log, sgemm_lab.txt, bench_cuda.txt.
# Statuses: PASS; FAIL; TIMEOUT (killed at its budget); SKIPPED (ran, but without a GPU it checked
# nothing: a CUDA case that cannot run exits 77 and ctest counts it as skipped); NOT RUN.
# Exit status: 0 only when a GPU was used and no step failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BUILD:-build-gpu}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
JOBS=$(nproc 2>/dev/null || echo 8)
T0=$(date +%s)

steps=() statuses=() seconds=() notes=()
record() {  # name status secs note
  steps+=("$1") statuses+=("$2") seconds+=("$3") notes+=("$4")
  printf '[%4ds] %-10s %-8s %s\n' "$(($(date +%s) - T0))" "$1" "$2" "$4"
}
# The budget a step may use: its own, but never past B_TOTAL (minus 5 s to write the summary).
budget() {
  local left=$((B_TOTAL - ($(date +%s) - T0) - 5))
  ((left < 1)) && left=1  # `timeout 0` would mean no limit at all
  ((left < $1)) && echo "$left" || echo "$1"
}
status_of_rc() {  # rc -> PASS / TIMEOUT / FAIL
  case $1 in 0) echo PASS ;; 124 | 137) echo TIMEOUT ;; *) echo FAIL ;; esac
}
# A step that succeeded without a GPU checked nothing on one: SKIPPED, not PASS.
gpu_status() {  # status -> status
  if [ "$1" = PASS ] && [ "$gpu_used" != 1 ]; then echo SKIPPED; else echo "$1"; fi
}

# ---- environment ------------------------------------------------------------------------------------
{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown) $(git status --porcelain 2>/dev/null | grep -q . && echo '(with local changes)')"
  echo "host: $(hostname) cores: $JOBS date: $(date -u +%FT%TZ)"
  echo "budgets: configure $B_CONFIGURE build $B_BUILD probe $B_PROBE ctest $B_CTEST memcheck $B_MEMCHECK racecheck $B_RACECHECK sgemm_lab $B_SGEMM_LAB bench $B_BENCH study $B_STUDY total $B_TOTAL"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -2
} >"$OUT/env.txt" 2>&1

# ---- configure ----------------------------------------------------------------------------------------
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
[ -f "$BUILD/CMakeCache.txt" ] && gen=()  # keep the generator an existing build dir was made with
s=$(date +%s)
timeout -k 5 "$(budget "$B_CONFIGURE")" cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DDL_CUDA=ON -DDL_BUILD_TESTS=ON >"$OUT/configure.log" 2>&1
rc=$?
record configure "$(status_of_rc $rc)" $(($(date +%s) - s)) "$(grep -Eo 'dl: (CUDA backend|cuDNN).*' "$OUT/configure.log" | paste -sd';' -)"

# ---- build: only the targets run below ------------------------------------------------------------
suites=()
for f in tests/cuda/*.cpp; do suites+=("$(basename "$f" .cpp)"); done
targets=(sgemm_lab bench_cuda eda scratch_cnn baseline_transfer lr_tuning error_analysis compare)
for s_ in "${suites[@]}"; do targets+=("test_cuda_$s_"); done
s=$(date +%s)
if [ "${statuses[0]}" = PASS ]; then
  timeout -k 5 "$(budget "$B_BUILD")" cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS" >"$OUT/build.log" 2>&1
  rc=$?
  record build "$(status_of_rc $rc)" $(($(date +%s) - s)) "${#targets[@]} targets, -j $JOBS$( ((rc != 0 && rc != 124)) && echo "; first error: $(grep -m1 -E 'error' "$OUT/build.log" | cut -c1-120)")"
else
  record build "NOT RUN" 0 "configure failed"
fi

# ---- probe: without a usable GPU every CUDA case skips, which must not read as a pass -------------------
# DL_CUDA_SYNC=1 (a sync after every launch, so a fault names its kernel) for the checks only:
# the benchmark and the study steps below run without it, or their timings would include it.
backend_test=$BUILD/tests/test_cuda_backend_test
gpu_used=0
s=$(date +%s)
if [ -x "$backend_test" ]; then
  DL_CUDA_SYNC=1 timeout -k 5 "$(budget "$B_PROBE")" "$backend_test" -tc='*without a GPU*' -s >"$OUT/probe.log" 2>&1
  rc=$?
  if grep -q "using GPU: " "$OUT/probe.log"; then
    gpu_used=1
    record probe "$(status_of_rc $rc)" $(($(date +%s) - s)) "$(grep -m1 -o 'using GPU: .*' "$OUT/probe.log")"
  else
    record probe FAIL $(($(date +%s) - s)) "NO USABLE GPU: $(grep -m1 -o 'no GPU: .*' "$OUT/probe.log" | cut -c1-150)"
  fi
else
  record probe "NOT RUN" 0 "test_cuda_backend_test not built"
fi

# ---- ctest -L cuda -----------------------------------------------------------------------------------
s=$(date +%s)
if compgen -G "$BUILD/tests/test_cuda_*" >/dev/null; then
  b=$(budget "$B_CTEST")
  # --stop-time ends the run (with the JUnit file written) before the outer timeout would kill it;
  # -FA '.*' leaves out fixture set-ups (the PyTorch fixtures), which no CUDA test needs
  DL_CUDA_SYNC=1 timeout -k 5 "$b" ctest --test-dir "$BUILD" -L cuda -FA '.*' -j 4 --output-on-failure \
    --stop-time "$(date -d "+$((b > 10 ? b - 5 : b)) seconds" +%H:%M:%S)" \
    --output-junit "$OUT/ctest-cuda.xml" >"$OUT/ctest.log" 2>&1
  rc=$?
  passed=$(grep -cE 'Test +#[0-9]+: .* Passed' "$OUT/ctest.log")
  skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$OUT/ctest.log")
  failed=$(grep -cE 'Test +#[0-9]+: .*\*\*\*(Failed|Exception|Timeout)|\*\*\*Not Run' "$OUT/ctest.log")
  st=$(gpu_status "$(status_of_rc $rc)")
  [ "$st" = PASS ] && ((passed == 0 && skipped > 0)) && st=SKIPPED
  record ctest "$st" $(($(date +%s) - s)) "$passed passed, $failed failed, $skipped skipped (ctest-cuda.xml)"
else
  record ctest "NOT RUN" 0 "no test_cuda_* built"
fi

# ---- compute-sanitizer: memcheck over every suite, racecheck over the shared-memory ones -------------
sanitizer=$(command -v compute-sanitizer || true)
for d in "${CUDA_HOME:-/usr/local/cuda}/bin" /usr/local/cuda/bin; do
  [ -z "$sanitizer" ] && [ -x "$d/compute-sanitizer" ] && sanitizer=$d/compute-sanitizer
done
# run_sanitizer tool budget suites...: every suite at once (one process each, the GPU is shared),
# each killed at the step's budget; the step passes when every suite exits 0 with no report.
run_sanitizer() {
  local tool=$1 b=$2
  shift 2
  local dir=$OUT/$tool s_ pids=() n_pass=0 n_skip=0 n_fail=0 n_time=0 n_err=0 bad=""
  mkdir -p "$dir"
  for s_ in "$@"; do
    local exe=$BUILD/tests/test_cuda_$s_
    [ -x "$exe" ] || { echo "not built" >"$dir/$s_.log"; echo 1 >"$dir/$s_.rc"; continue; }
    (
      DL_CUDA_SYNC=1 timeout -k 5 "$b" "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 50 \
        "$exe" --test-case-exclude="$SANITIZE_EXCLUDE" >"$dir/$s_.log" 2>&1
      echo $? >"$dir/$s_.rc"
    ) &
    pids+=($!)
  done
  [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
  for s_ in "$@"; do
    local r
    r=$(cat "$dir/$s_.rc" 2>/dev/null || echo 1)
    case $r in
      0) n_pass=$((n_pass + 1)) ;;
      77) n_skip=$((n_skip + 1)) ;;
      124 | 137) n_time=$((n_time + 1)) bad+=" $s_(timeout)" ;;
      86) n_err=$((n_err + 1)) bad+=" $s_(errors)" ;;
      *) n_fail=$((n_fail + 1)) bad+=" $s_(exit $r)" ;;
    esac
  done
  local st=PASS
  ((n_time > 0)) && st=TIMEOUT
  ((n_fail + n_err > 0)) && st=FAIL
  [ "$st" = PASS ] && ((n_pass == 0 && n_skip > 0)) && st=SKIPPED
  SAN_STATUS=$(gpu_status "$st")
  SAN_NOTE="$# suites: $n_pass clean, $n_skip skipped, $n_err with reports, $n_fail failed, $n_time timed out${bad:+:$bad}"
}
for tool in memcheck racecheck; do
  s=$(date +%s)
  if [ -z "$sanitizer" ]; then
    record "$tool" "NOT RUN" 0 "compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)"
    continue
  fi
  if ! compgen -G "$BUILD/tests/test_cuda_*" >/dev/null; then
    record "$tool" "NOT RUN" 0 "no test_cuda_* built"
    continue
  fi
  if [ "$tool" = memcheck ]; then
    run_sanitizer memcheck "$(budget "$B_MEMCHECK")" "${suites[@]}"
  else
    # shellcheck disable=SC2086
    run_sanitizer racecheck "$(budget "$B_RACECHECK")" $RACECHECK_SUITES
  fi
  record "$tool" "$SAN_STATUS" $(($(date +%s) - s)) "$SAN_NOTE ($tool/)"
done

# ---- the SGEMM lab and the benchmark -----------------------------------------------------------------
# program_step NAME BUDGET LOG PROGRAM ARGS...: runs a built program into $OUT/LOG; on failure, or
# without a GPU, the note quotes the log's last line.
program_step() {
  local name=$1 b=$2 log=$3 prog=$4 s rc
  shift 4
  if [ ! -x "$prog" ]; then
    record "$name" "NOT RUN" 0 "not built"
    return
  fi
  s=$(date +%s)
  timeout -k 5 "$(budget "$b")" "$prog" "$@" >"$OUT/$log" 2>&1
  rc=$?
  record "$name" "$(gpu_status "$(status_of_rc $rc)")" $(($(date +%s) - s)) \
    "$(basename "$prog") $* -> $log$( ((rc != 0)) || [ "$gpu_used" != 1 ] && echo ": $(tail -1 "$OUT/$log" | cut -c1-120)")"
}
program_step sgemm_lab "$B_SGEMM_LAB" sgemm_lab.txt "$BUILD/bin/sgemm_lab" 1024 4096 8192
bench_args=(--quick)
[ "${FULL_BENCH:-0}" = 1 ] && bench_args=()
program_step bench "$B_BENCH" bench_cuda.txt "$BUILD/bin/bench_cuda" "${bench_args[@]}"

# ---- the study's programs on the GPU (--quick) ------------------------------------------------------
s=$(date +%s)
data=""
for d in "${DL_DATA_DIR:-}" "$ROOT/gpu_data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
  [ -n "$d" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ] && { data=$d; break; }
done
if [ -z "$data" ]; then
  record study "NOT RUN" 0 "Fashion-MNIST not found (DL_DATA_DIR, gpu_data/fashion-mnist, /usr/share/datasets/fashion-mnist)"
elif [ ! -x "$BUILD/bin/scratch_cnn" ]; then
  record study "NOT RUN" 0 "the study's programs were not built"
else
  # the programs read the data folder from DL_DATA_DIR (data/fashion_mnist.h); without ImageNet
  # weights study.sh skips the transfer steps and says so
  DL_DATA_DIR=$data timeout -k 5 "$(budget "$B_STUDY")" "$ROOT/study.sh" --quick --device cuda --bin "$BUILD/bin" \
    --out "$OUT/study_quick" >"$OUT/study.log" 2>&1
  rc=$?
  record study "$(gpu_status "$(status_of_rc $rc)")" $(($(date +%s) - s)) \
    "study.sh --quick --device cuda -> study_quick/ ($(grep -m1 -o 'study finished in [0-9]* s' "$OUT/study.log" || tail -1 "$OUT/study.log" | cut -c1-100))"
fi

# ---- summary ----------------------------------------------------------------------------------------
overall=0
[ "$gpu_used" = 1 ] || overall=1
{
  printf '%-10s %-8s %7s  %s\n' step status seconds note
  for i in "${!steps[@]}"; do
    printf '%-10s %-8s %7s  %s\n' "${steps[$i]}" "${statuses[$i]}" "${seconds[$i]}" "${notes[$i]}"
    case ${statuses[$i]} in FAIL | TIMEOUT) overall=1 ;; esac
  done
  printf '%-10s %-8s %7s  %s\n' total "$([ $overall = 0 ] && echo PASS || echo FAIL)" $(($(date +%s) - T0)) \
    "$([ "$gpu_used" = 1 ] && echo "output in $OUT" || echo "no GPU was used: nothing above ran on a GPU; output in $OUT")"
} | tee "$OUT/summary.txt"
exit $overall
