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
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure -j "$DL_JOBS" "${ctest_args[@]}"
