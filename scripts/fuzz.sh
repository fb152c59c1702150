#!/usr/bin/env bash
# scripts/fuzz.sh [--seconds N] [--keep-going] [--no-build] [TARGET...]
#
# Builds the libFuzzer targets in fuzz/ with clang (+ ASan + UBSan) into build-fuzz/, then runs
# each target (all of them by default: checkpoint idx image pickle pth safetensors zip) for N
# seconds (default 300), one after the other, and prints executions, time and result per target.
# Seeds come from fuzz/corpus/<target>/ (read only); what a run learns goes to
# build-fuzz/corpus/<target>/, so later runs start from there. Crashing inputs (crash-*, leak-*,
# timeout-*, oom-*) land in fuzz/crashes/<target>-*. Exit status: non-zero when any target found a
# crash, a leak, a timeout (-timeout=10 s per input) or an allocation/RSS above 2048 MB.
#
#   --seconds N    time per target
#   --keep-going   libFuzzer's fork mode: keep fuzzing after a finding, collecting every crash in
#                  the time given (still exits non-zero when anything was found)
#   --no-build     run what build-fuzz/ already holds
# Replay one input:  build-fuzz/bin/fuzz_<target> FILE
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=300
keep_going=0
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift ;;
    --seconds=*) seconds=${1#--seconds=} ;;
    --keep-going) keep_going=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds wants a whole number, got '$seconds'" >&2; exit 2 ;; esac
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do t=$(basename "$f" .cpp); targets+=("${t#fuzz_}"); done
fi
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_$t.cpp" ] || { echo "fuzz.sh: no target '$t' (no fuzz/fuzz_$t.cpp)" >&2; exit 2; }
done

bdir=build-fuzz
if [ "$build" = 1 ]; then
  command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found; install clang (Debian: apt-get install clang libclang-rt-dev)" >&2; exit 1; }
  probe=$(mktemp -d)
  printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' > "$probe/p.cpp"
  if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>"$probe/err"; then
    cat "$probe/err" >&2
    echo "fuzz.sh: clang++ cannot link -fsanitize=fuzzer; install libFuzzer's runtime (Debian: apt-get install libclang-rt-dev)" >&2
    rm -rf "$probe"; exit 1
  fi
  rm -rf "$probe"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  if [ ! -f "$bdir/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$bdir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER=clang++ \
      -DDL_FUZZ=ON -DDL_CUDA=OFF -DDL_BUILD_TESTS=OFF -DDL_SANITIZE=OFF >/dev/null
  fi
  cmake --build "$bdir" -j "${DL_JOBS:-$(nproc)}" --target $(printf 'fuzz_%s ' "${targets[@]}")
fi

mkdir -p fuzz/crashes
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
summary=()
for t in "${targets[@]}"; do
  exe="$bdir/bin/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz.sh: $exe is missing (build first, or drop --no-build)" >&2; exit 1; }
  work="$bdir/corpus/$t"
  log="$bdir/logs/$t.log"
  mkdir -p "$work" "$bdir/logs"
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
  opts=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="fuzz/crashes/$t-")
  case "$t" in
    pickle) dict=fuzz/dict/pickle.dict ;;
    safetensors|checkpoint) dict=fuzz/dict/json.dict ;;
    zip|pth) dict=fuzz/dict/zip.dict ;;
    *) dict= ;;
  esac
  [ -n "$dict" ] && opts+=(-dict="$dict")
  [ "$keep_going" = 1 ] && opts+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  before=$(ls fuzz/crashes | grep "^$t-" | sort || true)
  echo "== fuzz_$t: ${seconds}s (log: $log)"
  start=$(date +%s)
  rc=0
  "$exe" "${opts[@]}" "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  elapsed=$(( $(date +%s) - start ))
  after=$(ls fuzz/crashes | grep "^$t-" | sort || true)
  new=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d' || true)

  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ -z "$execs" ]; then  # fork mode, or killed before the final stats: the last status line
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  result=ok
  if [ "$rc" != 0 ] || [ -n "$new" ]; then
    failed=1
    if [ "$keep_going" = 1 ]; then
      # every finding of the run: files per kind, then each distinct error with its count
      result="findings: $(printf '%s\n' "$new" | sed '/^$/d' | sed "s/^$t-\([a-z-]*\)-[0-9a-f]*$/\1/" | sort | uniq -c |
                          awk '{printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2}') (fuzz/crashes/$t-*)"
      # (numbers in a message are dropped so that one bug counts once)
      grep -h 'runtime error:\|SUMMARY: \|ERROR: libFuzzer: \|terminate called' "$log" |
        sed -E 's/0x[0-9a-f]+//g; :a; s/(runtime error: [^0-9]*)[0-9]+/\1N/; ta' |
        sort | uniq -c | sort -rn | head -15 | sed 's/^/    /' || true
    else
      if grep -q 'ERROR: libFuzzer: timeout' "$log"; then result=timeout
      elif grep -q 'ERROR: libFuzzer: out-of-memory\|malloc(.*) exceeds limit' "$log"; then result=out-of-memory
      elif grep -q 'ERROR: LeakSanitizer' "$log"; then result=leak
      elif grep -q 'runtime error:' "$log"; then result="crash (UBSan)"
      elif grep -q 'ERROR: AddressSanitizer' "$log"; then result="crash (ASan)"
      else result="crash (exit $rc)"; fi
      result="$result: $(echo $new | tr '\n' ' ')"
      grep -m1 -B2 -A25 'ERROR: \|runtime error:\|terminate called' "$log" | sed 's/^/    /' | head -40 || true
    fi
  fi
  line=$(printf '%-12s %12s execs %6ss  %s' "fuzz_$t" "${execs:-?}" "$elapsed" "$result")
  echo "$line"
  summary+=("$line")
done

echo
echo "== summary (${seconds}s per target; crashes in fuzz/crashes/)"
printf '%s\n' "${summary[@]}"
exit $failed
