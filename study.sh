#!/usr/bin/env bash
# ./study.sh            the whole study on the real data: eda, scratch_cnn, then (when the ImageNet
#                       weights are present) baseline_transfer and lr_tuning, then error_analysis
#                       and compare, into results/<date-time>/; prints where the report is.
# ./study.sh --quick    the same on a small subset with few epochs, in a few minutes.
# Options: --weights PATH (default weights/resnet18-f37072fd.pth), --stand-in-weights (the weights
#          are a random stand-in, said so in the report), --image-size N (ResNet input, default 224;
#          --quick uses 32), --device cpu|cuda, --out DIR, --bin DIR (use built programs from DIR
#          and skip the set-up and build).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/common.sh

quick=0
weights=weights/resnet18-f37072fd.pth
stand_in=()
image_size=""
device=cpu
out=""
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --weights) weights=$2; shift ;;
    --stand-in-weights) stand_in=(--stand-in-weights) ;;
    --image-size) image_size=$2; shift ;;
    --device) device=$2; shift ;;
    --out) out=$2; shift ;;
    --bin) bin=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "study.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$bin" ]; then
  dl_ensure_packages
  dl_build build
  bin=build/bin
fi
results=${out:-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
results=$(cd "$results" && pwd)

common=(--device "$device")
scratch=()
transfer=()
lrs=()
if [ "$quick" = 1 ]; then
  common+=(--train-limit 2000 --val-limit 500 --test-limit 1000)
  scratch+=(--epochs 2)
  transfer+=(--epochs 3)
  lrs+=(--lrs 1e-3,1e-2)
  image_size=${image_size:-32}
fi
image_size=${image_size:-224}

echo "step,seconds,status" > "$results/timings.csv"
step() {  # step NAME COMMAND...: runs, times and records one program
  local name=$1
  shift
  echo
  echo "== $name =="
  local t0=$SECONDS status=ok
  "$@" || status="failed ($?)"
  echo "$name,$((SECONDS - t0)),$status" >> "$results/timings.csv"
  [ "$status" = ok ] || { echo "study.sh: $name $status; see $results/$name/log.txt" >&2; return 1; }
}

start=$SECONDS
step eda "$bin/eda" --out "$results/eda"
step scratch_cnn "$bin/scratch_cnn" --out "$results/scratch_cnn" "${common[@]}" "${scratch[@]}"
if [ -f "$weights" ]; then
  step baseline_transfer "$bin/baseline_transfer" --out "$results/baseline_transfer" --weights "$weights" \
    --image-size "$image_size" --cache-dir "$results/feature_cache" "${stand_in[@]}" "${common[@]}" "${transfer[@]}"
  step lr_tuning "$bin/lr_tuning" --out "$results/lr_tuning" --weights "$weights" --image-size "$image_size" \
    --cache-dir "$results/feature_cache" "${stand_in[@]}" "${common[@]}" "${transfer[@]}" "${lrs[@]}"
else
  msg=$("$bin/baseline_transfer" --weights "$weights" 2>&1 || true)
  echo
  echo "== baseline_transfer and lr_tuning: skipped =="
  echo "$msg"
  for m in baseline_transfer lr_tuning; do
    mkdir -p "$results/$m"
    printf 'skipped by study.sh: %s\n' "$msg" > "$results/$m/not_run.txt"
    echo "$m,0,skipped (no weights)" >> "$results/timings.csv"
  done
fi
step error_analysis "$bin/error_analysis" --results "$results"
step compare "$bin/compare" --results "$results"
echo
echo "study finished in $((SECONDS - start)) s; timings in $results/timings.csv"
echo "report: $results/report/report.md"
