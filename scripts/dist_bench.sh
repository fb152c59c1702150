#!/usr/bin/env bash
# Scaling of data-parallel training on this machine: the study's CNN (global batch 64, Adam),
# one process x 2 threads against 2 MPI ranks x 1 thread, with and without overlapping the
# gradient all-reduce with backward, next to PyTorch DDP (gloo) on the same workload, interleaved
# in one run. Writes bench_records/<utc>-<host>-dist/{bench.jsonl,table.md,meta.json}.
#
#   scripts/dist_bench.sh [--runs 3] [--steps 20] [--build build]
# Run it on an otherwise idle machine: two ranks on two cores leave nothing for anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3 steps=20 build=build
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift ;;
    --steps) steps=$2; shift ;;
    --build) build=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
bin=$build/bin/dist_bench
[ -x "$bin" ] || { echo "error: $bin is missing; build it with: cmake --build $build --target dist_bench" >&2; exit 1; }
py=/usr/bin/python3
mpirun=(mpiexec --oversubscribe --allow-run-as-root --bind-to none -np 2)
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out=bench_records/$stamp-$(hostname)-dist
mkdir -p "$out"
common=(--steps "$steps" --warmup 3 --batch 64)
configs=(
  "dl single 2x1|$bin --mode single --threads 2 ${common[*]}"
  "dl local 2x1|MPI $bin --mode local --threads 1 ${common[*]}"
  "dl ddp no-overlap 25MiB|MPI $bin --mode ddp --threads 1 --no-overlap --bucket-mb 25 ${common[*]}"
  "dl ddp overlap 25MiB|MPI $bin --mode ddp --threads 1 --bucket-mb 25 ${common[*]}"
  "dl ddp overlap 1MiB|MPI $bin --mode ddp --threads 1 --bucket-mb 1 ${common[*]}"
  "dl ddp overlap 0.25MiB|MPI $bin --mode ddp --threads 1 --bucket-mb 0.25 ${common[*]}"
  "torch single 2x1|$py tools/dist_bench_torch.py --mode single --threads 2 ${common[*]}"
  "torch ddp gloo 25MiB|MPI $py tools/dist_bench_torch.py --mode ddp --threads 1 --bucket-mb 25 ${common[*]}"
  "torch ddp gloo 1MiB|MPI $py tools/dist_bench_torch.py --mode ddp --threads 1 --bucket-mb 1 ${common[*]}"
)
{
  echo "{\"date_utc\": \"$stamp\", \"host\": \"$(hostname)\", \"cpu_model\": \"$(lscpu | sed -n 's/^Model name: *//p')\","
  echo " \"cpus\": $(nproc), \"runs\": $runs, \"steps\": $steps, \"git_commit\": \"$(git rev-parse HEAD)\","
  echo " \"git_dirty\": $([ -z "$(git status --porcelain)" ] && echo false || echo true),"
  echo " \"mpirun\": \"$(mpiexec --version | head -1)\", \"torch\": \"$($py -c 'import torch; print(torch.__version__)')\","
  echo " \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} >"$out/meta.json"
for r in $(seq 1 "$runs"); do
  for c in "${configs[@]}"; do
    name=${c%%|*} cmd=${c#*|}
    echo "run $r/$runs: $name" >&2
    if [[ $cmd == MPI* ]]; then
      line=$(OMP_NUM_THREADS=1 timeout 300 "${mpirun[@]}" ${cmd#MPI })
    else
      line=$(timeout 300 $cmd)
    fi
    echo "{\"config\": \"$name\", \"run\": $r, \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >>"$out/bench.jsonl"
  done
done
$py tools/dist_bench_table.py "$out"
echo "wrote $out" >&2
