#!/usr/bin/env bash
# One-shot check of the CUDA backend on a machine with a GPU (docs/cuda.md), in about 8 minutes
# on an H200: configure with -DDL_CUDA=ON, build what the check needs, run every `cuda`-labelled
# test, the SGEMM kernel lab and bench_cuda. Everything is logged under $OUT/gpu_check (or
# <build>/gpu_check when OUT is unset); summary.txt says what passed.
#
#   scripts/gpu_check.sh            build into build-gpu/
#   BUILD=dir scripts/gpu_check.sh  another build directory
#   QUICK=1 scripts/gpu_check.sh    bench_cuda --quick (smaller batches, fewer repetitions)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-gpu}
LOG=${OUT:-$ROOT/$BUILD}/gpu_check
mkdir -p "$LOG"
JOBS=$(nproc 2>/dev/null || echo 8)
SUMMARY=$LOG/summary.txt
: >"$SUMMARY"
start=$(date +%s)
note() { echo "[$(($(date +%s) - start))s] $*" | tee -a "$SUMMARY"; }

note "gpu_check: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) in $ROOT, $JOBS cores"
(nvidia-smi || echo "nvidia-smi failed") >"$LOG/nvidia-smi.txt" 2>&1
note "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo none)"

# ---- configure and build (only the targets the check runs) ----------------------------------------
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if ! timeout 300 cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDL_CUDA=ON \
    >"$LOG/configure.log" 2>&1; then
  note "FAILED: configure (see configure.log)"
  tail -30 "$LOG/configure.log"
  exit 1
fi
grep -E "dl: (CUDA|cuDNN)" "$LOG/configure.log" | tee -a "$SUMMARY"
targets=(sgemm_lab bench_cuda)
for f in tests/cuda/*.cpp; do targets+=("test_cuda_$(basename "$f" .cpp)"); done
if ! timeout 420 cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >"$LOG/build.log" 2>&1; then
  note "FAILED: build (see build.log)"
  grep -E "error|Error" "$LOG/build.log" | head -40
  exit 1
fi
note "built: ${targets[*]}"

# ---- tests: DL_CUDA_SYNC=1 synchronises after every kernel, so a fault names its kernel --------------
status=0
if DL_CUDA_SYNC=1 timeout 300 ctest --test-dir "$BUILD" -L cuda -FA '.*' -j 4 --output-on-failure \
    --output-junit "$LOG/ctest-cuda.xml" >"$LOG/ctest-cuda.log" 2>&1; then
  note "ctest -L cuda: all passed"
else
  status=1
  note "ctest -L cuda: FAILURES (see ctest-cuda.log)"
fi
grep -E "tests passed|tests failed|\*\*\*Failed|Timeout|Not Run" "$LOG/ctest-cuda.log" | tee -a "$SUMMARY"
# without a usable GPU every case passes as skipped: say so loudly
"$BUILD/tests/test_cuda_backend_test" -tc='*without a GPU*' -s >"$LOG/probe.txt" 2>&1
if grep -q "using GPU: " "$LOG/probe.txt"; then
  note "probe: $(grep -m1 -o 'using GPU: .*' "$LOG/probe.txt")"
else
  status=1
  note "NO USABLE GPU, the cuda tests were skipped: $(grep -m1 -o 'no GPU: .*' "$LOG/probe.txt")"
fi

# ---- the SGEMM lab and the benchmark ------------------------------------------------------------------
if timeout 150 "$BUILD/bin/sgemm_lab" 1024 4096 8192 >"$LOG/sgemm_lab.txt" 2>&1; then
  note "sgemm_lab: all kernel versions agree with cuBLAS"
else
  status=1
  note "sgemm_lab: FAILED or timed out (see sgemm_lab.txt)"
fi
bench_args=()
[ "${QUICK:-0}" = 1 ] && bench_args=(--quick)
if timeout 240 "$BUILD/bin/bench_cuda" "${bench_args[@]}" >"$LOG/bench_cuda.txt" 2>&1; then
  note "bench_cuda: done (bench_cuda.txt)"
else
  status=1
  note "bench_cuda: FAILED or timed out (see bench_cuda.txt)"
fi
cat "$LOG/sgemm_lab.txt" "$LOG/bench_cuda.txt" >>"$SUMMARY" 2>/dev/null
note "gpu_check finished with status $status; logs in $LOG"
exit $status
