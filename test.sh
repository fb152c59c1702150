#!/usr/bin/env bash
# ./test.sh              install what is missing, build into build/, run the whole ctest suite
# ./test.sh --sanitize   the same with AddressSanitizer + UBSan, into build-sanitize/ (CPU only)
# ./test.sh -- ARGS      extra arguments for ctest (e.g. -- -L gradcheck)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/common.sh

build=build
cmake_args=()
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) build=build-sanitize; cmake_args+=(-DDL_SANITIZE=ON -DDL_CUDA=OFF) ;;
    --) shift; ctest_args+=("$@"); break ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

dl_ensure_packages
dl_build "$build" "${cmake_args[@]}"
dl_ensure_onnxruntime "$build/venv-onnxruntime"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
rc=0
ctest --output-on-failure -j "$DL_JOBS" "${ctest_args[@]}" 2>&1 | tee ctest.log || rc=$?
# ctest's own summary lists skipped tests but leaves them out of its counts: say them, and why.
# (A case that cannot run here calls DL_SKIP, which prints "SKIPPED: <reason>": tests/test_util.h.)
passed=$(grep -cE 'Test +#[0-9]+: .* Passed +[0-9.]+ sec' ctest.log || true)
skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' ctest.log || true)
failed=$(grep -cE 'Test +#[0-9]+: .*(\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception|Not Run)' ctest.log || true)
if [ "$skipped" -gt 0 ]; then
  echo
  echo "skipped tests, and why (count, reason):"
  grep -h '^SKIPPED: ' Testing/Temporary/LastTest*.log 2>/dev/null | sort | uniq -c | sed 's/^/  /' || true
fi
echo
echo "$passed passed, $failed failed, $skipped skipped"
exit "$rc"
